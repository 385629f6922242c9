"""The seed plan: one neutral, deterministic data set that both emulators load.

``SeedPlan(seed, accounts, now)`` streams frozen dataclasses (see docs/sandbox-schema.md). Every
iterator regenerates its records from ``random.Random`` seeded with the plan seed, so memory stays
flat at 100,000 accounts and two calls give the same records. Companies, deals and notes come
from one pass (a company's deals depend on its ARR, owner and contract), so ``deals()`` and
``notes()`` re-run the company generator; own word lists instead of Faker keep a full pass of
100,000 companies, ~200,000 deals and their notes to a few seconds.

ARR tiers (domain.md 3.2): key >= 100,000 EUR; high 25,000-99,999; low 5,000-24,999; tech < 5,000.
A note's ``body`` holds the placeholder ``{opportunity_id}``; each emulator fills in its own id
with :meth:`SeedNote.body_for`.
"""

from __future__ import annotations

import math
import random
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Literal

__all__ = [
    "DEAL_STAGES",
    "DEAL_TYPES",
    "OPPORTUNITY_PLACEHOLDER",
    "SeedCompany",
    "SeedDeal",
    "SeedNote",
    "SeedPlan",
    "SeedUser",
    "tier_of",
]

OPPORTUNITY_PLACEHOLDER = "{opportunity_id}"
DEFAULT_NOW = datetime(2026, 1, 15, 9, 0, tzinfo=UTC)

Stage = Literal[
    "prospecting", "qualification", "proposal", "negotiation", "closed_won", "closed_lost"
]
DealType = Literal["new_business", "renewal", "expansion"]
Role = Literal["sales", "csm", "admin"]
DEAL_STAGES: tuple[Stage, ...] = (
    "prospecting",
    "qualification",
    "proposal",
    "negotiation",
    "closed_won",
    "closed_lost",
)
DEAL_TYPES: tuple[DealType, ...] = ("new_business", "renewal", "expansion")


@dataclass(frozen=True, slots=True)
class SeedUser:
    key: str
    first_name: str
    last_name: str
    email: str
    role: Role


@dataclass(frozen=True, slots=True)
class SeedCompany:
    key: str
    name: str
    domain: str
    industry: str
    country: str
    currency: str
    arr: int
    employees: int
    seats: int
    plan: str
    owner_key: str
    strategic: bool
    created_at: datetime
    contract_start_on: date
    contract_end_on: date | None


@dataclass(frozen=True, slots=True)
class SeedDeal:
    key: str
    company_key: str
    name: str
    stage: Stage
    amount: int
    close_on: date
    type: DealType
    term_months: int
    owner_key: str
    preassigned_csm_email: str | None
    created_at: datetime


@dataclass(frozen=True, slots=True)
class SeedNote:
    key: str
    company_key: str
    deal_key: str
    title: str
    body: str
    author_key: str
    created_at: datetime

    def body_for(self, opportunity_id: str) -> str:
        """The body with this CRM's id of the deal on the ``Opportunity:`` line."""
        return self.body.replace(OPPORTUNITY_PLACEHOLDER, opportunity_id)


def tier_of(arr: int) -> str:
    """The tier an ARR falls in (domain.md 3.2)."""
    if arr >= 100_000:
        return "key"
    if arr >= 25_000:
        return "high"
    if arr >= 5_000:
        return "low"
    return "tech"


# -- word lists ---------------------------------------------------------------------------------

_NAME_A = (
    "Nord", "Süd", "Blue", "Silver", "Iron", "Alpen", "Rhein", "Baltic", "Atlas", "Orbit",
    "Cedar", "Falcon", "Granite", "Harbor", "Lumen", "Nova", "Polar", "Quantum", "River", "Summit",
    "Vertex", "Zenith", "Amber", "Beacon", "Cobalt", "Delta", "Ember", "Fjord", "Helix", "Indigo",
    "Juniper", "Krone", "Lynx", "Meridian", "Nimbus", "Opal", "Pioneer", "Radiant", "Sable",
    "Tidal",
)  # fmt: skip
_NAME_B = (
    "wind", "stone", "bridge", "field", "light", "works", "point", "gate", "line", "wave",
    "forge", "path", "crest", "vale", "peak", "port", "spark", "core", "leaf", "mark",
    "tech", "soft", "data", "logic", "flow", "grid", "labs", "net", "scale", "trail",
)  # fmt: skip
_NAME_C = (
    "", "Logistics", "Systems", "Health", "Analytics", "Energy", "Retail", "Foods", "Robotics",
    "Finance", "Mobility", "Media", "Pharma", "Insurance", "Solutions", "Manufacturing", "Software",
    "Consulting", "Telecom", "Travel", "Security", "Materials", "Biotech", "Capital", "Studios",
)  # fmt: skip
_LEGAL = {
    "Germany": ("GmbH", "AG", "SE"),
    "Austria": ("GmbH", "AG"),
    "Switzerland": ("AG", "GmbH", "SA"),
    "France": ("SAS", "SA"),
    "Netherlands": ("B.V.", "N.V."),
    "Spain": ("S.L.", "S.A."),
    "Italy": ("S.p.A.", "S.r.l."),
    "United Kingdom": ("Ltd", "plc"),
    "Ireland": ("Ltd", "DAC"),
    "Sweden": ("AB",),
    "Denmark": ("A/S", "ApS"),
    "United States": ("Inc.", "LLC", "Corp."),
}
_COUNTRIES = tuple(_LEGAL)
_COUNTRY_WEIGHTS = (30, 6, 6, 9, 7, 6, 5, 10, 3, 4, 3, 11)
_TLD = {
    "Germany": "de",
    "Austria": "at",
    "Switzerland": "ch",
    "France": "fr",
    "Netherlands": "nl",
    "Spain": "es",
    "Italy": "it",
    "United Kingdom": "co.uk",
    "Ireland": "ie",
    "Sweden": "se",
    "Denmark": "dk",
    "United States": "com",
}
_INDUSTRIES = (
    "Technology", "Manufacturing", "Retail", "Healthcare", "Finance", "Logistics", "Energy",
    "Media", "Education", "Insurance", "Telecommunications", "Consulting", "Hospitality",
)  # fmt: skip
_FIRST = (
    "Anna", "Lukas", "Sophie", "Jonas", "Marie", "Felix", "Emma", "Paul", "Lea", "Maximilian",
    "Laura", "Noah", "Clara", "Elias", "Julia", "David", "Sarah", "Tom", "Nina", "Jan", "Olivia",
    "Liam", "Chloé", "Mateo", "Giulia", "Lars", "Ingrid", "Sean", "Aoife", "Pieter", "Sanne",
)  # fmt: skip
_LAST = (
    "Müller", "Schmidt", "Schneider", "Fischer", "Weber", "Meyer", "Wagner", "Becker", "Hoffmann",
    "Schulz", "Koch", "Richter", "Klein", "Wolf", "Dubois", "Martin", "Rossi", "Bianchi", "García",
    "López", "de Vries", "Jansen", "Smith", "Murphy", "Andersson", "Nielsen", "Novak", "Berg",
)  # fmt: skip
_CONTACT_ROLES = ("Head of Operations", "CTO", "VP Customer Success", "IT Manager", "CFO", "COO")
_WHY = (
    "replace spreadsheets for account health",
    "consolidate three legacy tools",
    "scale onboarding after a funding round",
    "reduce churn in the mid-market segment",
    "give management one view of renewals",
)
_GOALS = (
    "go live within 60 days",
    "train all team leads",
    "automate weekly reporting",
    "cut manual data entry in half",
    "integrate with the ERP",
    "reach 80% weekly active users",
)
_RISKS = (
    "small internal team",
    "competing priority: ERP migration",
    "champion may change roles",
    "data quality in the old system",
    "budget review in Q3",
)
_PLANS = ("Starter", "Team", "Business", "Enterprise")

# Tier mix for new companies: (share, low, high) in EUR; log-uniform inside each band, so a few
# key accounts and many low/tech ones.
_TIER_BANDS = (
    (0.05, 100_000, 1_500_000),
    (0.20, 25_000, 99_999),
    (0.40, 5_000, 24_999),
    (0.35, 600, 4_999),
)
_EXTRA_STAGE_WEIGHTS = (12, 12, 10, 10, 36, 20)  # prospecting .. closed_lost, for renewal/expansion
_FIRST_STAGE_WEIGHTS = (3, 2, 2, 2, 88, 3)  # the original new-business deal: mostly won


def _plan_for(arr: int) -> str:
    if arr >= 100_000:
        return "Enterprise"
    if arr >= 25_000:
        return "Business"
    if arr >= 5_000:
        return "Team"
    return "Starter"


def _add_months(day: date, months: int) -> date:
    month = day.month - 1 + months
    year = day.year + month // 12
    month = month % 12 + 1
    leap = year % 4 == 0 and (year % 100 != 0 or year % 400 == 0)
    days = (31, 29 if leap else 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31)[month - 1]
    return date(year, month, min(day.day, days))


def _slug(text: str) -> str:
    table = str.maketrans({"ü": "ue", "ö": "oe", "ä": "ae", "é": "e", "í": "i", "ó": "o"})
    return "".join(ch for ch in text.lower().translate(table) if ch.isalnum())


class SeedPlan:
    """A deterministic data set of ``accounts`` companies, streamed on demand."""

    def __init__(self, seed: int, accounts: int, now: datetime | None = None) -> None:
        if accounts < 0:
            raise ValueError("accounts must be >= 0")
        self.seed = seed
        self.accounts = accounts
        self.now = (now or DEFAULT_NOW).astimezone(UTC)
        self.user_count = max(6, min(300, accounts // 250 + 6))

    # -- users --------------------------------------------------------------------------------

    def users(self) -> Iterator[SeedUser]:
        """U0001 is the admin; the rest alternate sales and CSM."""
        rng = random.Random(f"users:{self.seed}")
        seen: set[str] = set()
        for i in range(1, self.user_count + 1):
            first, last = rng.choice(_FIRST), rng.choice(_LAST)
            local = f"{_slug(first)}.{_slug(last)}"
            email = f"{local}@crmsync-sandbox.example"
            if email in seen:
                email = f"{local}{i}@crmsync-sandbox.example"
            seen.add(email)
            role: Role = "admin" if i == 1 else ("sales" if i % 2 == 0 else "csm")
            yield SeedUser(f"U{i:04d}", first, last, email, role)

    def _user_pools(self) -> tuple[list[str], list[str]]:
        sales, csm_emails = [], []
        for user in self.users():
            if user.role == "sales":
                sales.append(user.key)
            elif user.role == "csm":
                csm_emails.append(user.email)
        return sales, csm_emails

    # -- companies, deals, notes -------------------------------------------------------------

    def companies(self) -> Iterator[SeedCompany]:
        for company, _deals, _notes in self._rows(with_deals=False, with_notes=False):
            yield company

    def deals(self) -> Iterator[SeedDeal]:
        for _company, deals, _notes in self._rows(with_notes=False):
            yield from deals

    def notes(self) -> Iterator[SeedNote]:
        for _company, _deals, notes in self._rows():
            yield from notes

    def rows(self) -> Iterator[tuple[SeedCompany, list[SeedDeal], list[SeedNote]]]:
        """One pass yielding each company with its deals and notes (cheapest for loaders)."""
        return self._rows()

    def _company_name(self, index: int, rng: random.Random) -> tuple[str, str, str]:
        """Name, domain and country; unique by construction (a permutation of the index)."""
        a, b, c = len(_NAME_A), len(_NAME_B), len(_NAME_C)
        space = a * b * c
        # Multiply by a constant coprime with the space to scatter neighbours, offset by seed.
        mixed = (index * 7919 + self.seed * 104729) % space
        lap = index // space
        word_a, word_b, word_c = (
            _NAME_A[mixed % a],
            _NAME_B[(mixed // a) % b],
            _NAME_C[mixed // (a * b)],
        )
        country = rng.choices(_COUNTRIES, _COUNTRY_WEIGHTS)[0]
        form = rng.choice(_LEGAL[country])
        core = word_a + word_b
        parts = [core, word_c] if word_c else [core]
        if lap:
            parts.append(str(lap + 1))
        name = " ".join([*parts, form])
        domain = "-".join(_slug(p) for p in parts) + "." + _TLD[country]
        return name, domain, country

    def _rows(
        self, *, with_deals: bool = True, with_notes: bool = True
    ) -> Iterator[tuple[SeedCompany, list[SeedDeal], list[SeedNote]]]:
        """Each company draws from its own RNG (seeded by plan seed and index) and notes from a
        second one, so ``companies()`` can skip deals and ``deals()`` can skip note text without
        changing any record: each stream costs only what it yields."""
        sales, csm_emails = self._user_pools()
        today = self.now.date()
        deal_no = 0
        note_no = 0
        shares = [band[0] for band in _TIER_BANDS]
        for i in range(1, self.accounts + 1):
            # hash() of an int tuple is stable across processes (no PYTHONHASHSEED salt).
            rng = random.Random(hash((self.seed, i)))
            name, domain, country = self._company_name(i - 1, rng)
            share_low, low, high = rng.choices(_TIER_BANDS, shares)[0]
            del share_low
            arr = int(math.exp(rng.uniform(math.log(low), math.log(high + 1))))
            arr = max(low, min(high, arr // 10 * 10))
            # A handful: some key accounts, plus every 200th company so small seeds have one too.
            strategic = (arr >= 100_000 and rng.random() < 0.1) or i % 200 == 7
            plan = _plan_for(arr)
            seats = max(3, arr // rng.choice((300, 400, 500, 600)))
            employees = seats * rng.randint(2, 40)
            owner = rng.choice(sales)
            created_at = self.now - timedelta(
                days=rng.randint(60, 1800), seconds=rng.randint(0, 86_399)
            )
            start = (created_at + timedelta(days=rng.randint(14, 60))).date()
            term = rng.choice((12, 12, 12, 24, 36))
            end: date | None = _add_months(start, term)
            while end is not None and end < today - timedelta(days=30):
                end = _add_months(end, 12)  # renewed every year since
            if rng.random() < 0.04:
                end = None  # open-ended contract
            company = SeedCompany(
                key=f"C{i:07d}",
                name=name,
                domain=domain,
                industry=rng.choice(_INDUSTRIES),
                country=country,
                currency="EUR",
                arr=arr,
                employees=employees,
                seats=seats,
                plan=plan,
                owner_key=owner,
                strategic=strategic,
                created_at=created_at,
                contract_start_on=start,
                contract_end_on=end,
            )
            deals: list[SeedDeal] = []
            notes: list[SeedNote] = []
            if not with_deals:
                yield company, deals, notes
                continue
            note_rng = random.Random(hash((self.seed, i, 1))) if with_notes else None
            kinds: list[DealType] = ["new_business"]
            extra = rng.choices((0, 1, 2), (25, 50, 25))[0]
            kinds += [rng.choice(("renewal", "expansion")) for _ in range(extra)]
            for n, kind in enumerate(kinds):
                deal_no += 1
                weights = _FIRST_STAGE_WEIGHTS if n == 0 else _EXTRA_STAGE_WEIGHTS
                stage: Stage = rng.choices(DEAL_STAGES, weights)[0]
                closed = stage in ("closed_won", "closed_lost")
                if n == 0:
                    close_on = (
                        start - timedelta(days=rng.randint(0, 10))
                        if closed
                        else today + timedelta(days=rng.randint(5, 90))
                    )
                    amount = arr
                elif closed:
                    close_on = today - timedelta(days=rng.randint(1, 300))
                    amount = (
                        arr
                        if kind == "renewal"
                        else max(500, arr * rng.randint(10, 50) // 100 // 10 * 10)
                    )
                else:
                    close_on = today + timedelta(days=rng.randint(5, 180))
                    amount = (
                        arr
                        if kind == "renewal"
                        else max(500, arr * rng.randint(10, 50) // 100 // 10 * 10)
                    )
                close_on = max(close_on, created_at.date())
                deal_created = datetime.combine(close_on, created_at.timetz()) - timedelta(
                    days=rng.randint(10, 120)
                )
                deal_created = min(max(deal_created, created_at), self.now)
                label = {
                    "new_business": "New Business",
                    "renewal": "Renewal",
                    "expansion": "Expansion",
                }[kind]
                csm = (
                    rng.choice(csm_emails)
                    if stage == "closed_won" and csm_emails and rng.random() < 0.3
                    else None
                )
                deal = SeedDeal(
                    key=f"D{deal_no:07d}",
                    company_key=company.key,
                    name=f"{name} - {plan} {label} {close_on.year}",
                    stage=stage,
                    amount=amount,
                    close_on=close_on,
                    type=kind,
                    term_months=term if kind != "expansion" else 12,
                    owner_key=owner if rng.random() < 0.8 else rng.choice(sales),
                    preassigned_csm_email=csm,
                    created_at=deal_created,
                )
                deals.append(deal)
                if stage == "closed_won" and kind in ("new_business", "expansion"):
                    note_no += 1
                    if note_rng is not None:
                        notes.append(self._note(note_no, company, deal, note_rng))
            yield company, deals, notes

    def _note(
        self, number: int, company: SeedCompany, deal: SeedDeal, rng: random.Random
    ) -> SeedNote:
        def person() -> str:
            first, last = rng.choice(_FIRST), rng.choice(_LAST)
            email = f"{_slug(first)}.{_slug(last)}@{company.domain}"
            return f"{first} {last}, {rng.choice(_CONTACT_ROLES)}, {email}"

        start = company.contract_start_on.isoformat()
        end = company.contract_end_on.isoformat() if company.contract_end_on else "open-ended"
        primary = person()
        lines = [
            f"Handover: {deal.name}",
            f"Opportunity: {OPPORTUNITY_PLACEHOLDER}",
            f"What was sold: {company.plan}, {company.seats} seats, EUR {deal.amount} ARR",
            f"Term: {start} to {end}, billed yearly, auto-renew yes",
            f"Primary contact: {primary}",
            f"Secondary contacts: {person()}; {person()}",
            f"Champion: {primary.split(',')[0]}",
            f"Decision maker: {person().split(',')[0]}",
            f"Technical contact: {person()}",
            f"Why they bought: {rng.choice(_WHY)}",
            f"Goals: {'; '.join(rng.sample(_GOALS, 2))}",
            f"Success criteria: {'; '.join(rng.sample(_GOALS, 2))}",
            "Special terms: none",
            f"Fit: {rng.choice(('good', 'good', 'good', 'medium', 'poor'))}",
            f"Risks: {'; '.join(rng.sample(_RISKS, 2))}",
            f"Timeline: kickoff within {rng.choice((7, 14, 21))} days of signature",
        ]
        created = datetime.combine(deal.close_on, self.now.timetz()) + timedelta(
            hours=rng.randint(1, 72)
        )
        return SeedNote(
            key=f"N{number:07d}",
            company_key=company.key,
            deal_key=deal.key,
            title=f"Handover: {deal.name}",
            body="\n".join(lines),
            author_key=deal.owner_key,
            created_at=min(created, self.now),
        )

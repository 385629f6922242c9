"""The demo's signal feeds (issue #18 item 9): a product usage feed, a helpdesk, a survey tool,
the CS team's touchpoints and billing, played for the accounts the sandbox seeded.

Pure and deterministic: :func:`generate` takes the accounts (as synced from the sandbox's CRMs)
and a seed, and returns the same rows for the same seed, accounts and day. Each company gets a
**profile** (:func:`assign_profiles`, by domain), so the Salesforce and the HubSpot copy of one
company (two CS accounts until the CRMs are matched) tell the same story. The profiles cover
what health must show (domain.md 4): usage drops and dormant accounts, tickets with escalations, NPS
detractors among decision makers, touchpoints, late invoices, some false-loyalty accounts
(heavy use, unhappy decision maker), and accounts with too little data for a band, so that every
band (green, yellow, red, unknown) is reached.

Rows name their account by ``sf_id`` or ``hs_id`` (a domain names both copies and would be
refused as ambiguous, docs/signals.md). Dates are relative to ``today``.
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

#: Profile -> weight in the draw. Names say what the account's signals look like.
PROFILES: dict[str, int] = {
    "champion": 22,  # heavy use, promoters, regular two-way meetings, paid on time: green
    "steady": 18,  # moderate use, passives: green or yellow
    "usage_drop": 9,  # active users down more than 30 % in a month
    "dormant": 7,  # nobody logged in for weeks
    "escalations": 8,  # an escalated P1 open for 10 days, a ticket spike
    "detractor": 8,  # the decision maker answers NPS 2-4; touches unanswered
    "false_loyalty": 8,  # heavy use but an unhappy decision maker: capped at yellow
    "late_payer": 7,  # an invoice 75 days overdue, so-so use
    "at_risk": 6,  # everything bad at once: red
    "no_data": 7,  # no usage feed, survey or invoice yet: unknown band
}
KINDS_SENT = ("usage", "tickets", "nps", "surveys", "touchpoints", "invoices", "success_criteria")


@dataclass(frozen=True)
class DemoAccount:
    """A CS account as the demo knows it: how signals name it, and what sizes them."""

    ref_field: str  # "sf_id" or "hs_id"
    ref: str
    domain: str
    seats: int | None = None


def assign_profiles(domains: Iterable[str], seed: int) -> dict[str, str]:
    """Each company's profile (by domain, so both CRMs' copies share it), deterministic from
    the seed: the companies in a seeded order, the first ten get one profile each (so a demo of
    ten companies shows every one), the rest follow the weights."""
    ordered = sorted(set(domains), key=lambda d: hashlib.sha256(f"{seed}:{d}".encode()).hexdigest())
    rng = random.Random(seed)
    names = list(PROFILES)
    rest = rng.choices(names, weights=[PROFILES[n] for n in names], k=max(0, len(ordered) - 10))
    sequence = [*names, *rest]
    return {domain: sequence[i] for i, domain in enumerate(ordered)}


def _at(day: date, hour: int = 10, minute: int = 0) -> str:
    return datetime.combine(day, time(hour, minute), tzinfo=UTC).isoformat()


def generate(
    accounts: Sequence[DemoAccount], seed: int, today: date
) -> dict[str, list[dict[str, Any]]]:
    """Rows per kind for every account, deterministic from ``seed`` (and ``today``)."""
    out: dict[str, list[dict[str, Any]]] = {k: [] for k in KINDS_SENT}
    profiles = assign_profiles((a.domain for a in accounts), seed)
    for account in sorted(accounts, key=lambda a: (a.domain, a.ref_field, a.ref)):
        profile = profiles[account.domain]
        # One generator per company (not per copy): both copies get the same numbers.
        rng = random.Random(f"{seed}:{account.domain}:signals")
        for kind, rows in _rows(account, profile, rng, today).items():
            out[kind].extend(rows)
    return out


def _rows(
    account: DemoAccount, profile: str, rng: random.Random, today: date
) -> dict[str, list[dict[str, Any]]]:
    ref = {account.ref_field: account.ref}
    seats = account.seats or rng.choice((10, 20, 40, 80))
    rows: dict[str, list[dict[str, Any]]] = {k: [] for k in KINDS_SENT}
    if profile == "no_data":
        # Only a CS note now and then: usage, sentiment, billing unknown -> coverage < 50.
        rows["touchpoints"].append(
            {**ref, "kind": "note", "occurred_at": _at(today - timedelta(days=rng.randint(5, 60)))}
        )
        return rows

    # --- usage: weekly snapshots over 8 weeks, the latest 0-3 days old -------------------
    heavy = profile in ("champion", "false_loyalty")
    share = {
        "champion": rng.uniform(0.82, 0.95),
        "false_loyalty": rng.uniform(0.80, 0.92),
        "steady": rng.uniform(0.55, 0.75),
        "usage_drop": rng.uniform(0.70, 0.85),
        "dormant": rng.uniform(0.30, 0.50),
        "escalations": rng.uniform(0.50, 0.70),
        "detractor": rng.uniform(0.40, 0.60),
        "late_payer": rng.uniform(0.45, 0.65),
        "at_risk": rng.uniform(0.10, 0.20),
    }[profile]
    latest = today - timedelta(days=rng.randint(0, 3))
    for week in range(8, -1, -1):
        on = latest - timedelta(days=7 * week)
        active = max(1, round(seats * share))
        last_login = on - timedelta(days=rng.randint(0, 1))
        if profile == "usage_drop" and week <= 1:
            active = max(1, round(active * 0.45))  # down 55 % on a month ago
        if profile == "dormant" and week <= 2:
            active, last_login = 0, latest - timedelta(days=rng.randint(18, 30))
        logins = active * (
            rng.randint(10, 16) if heavy else 1 if profile == "at_risk" else rng.randint(3, 8)
        )
        rows["usage"].append(
            {
                **ref,
                "observed_on": on.isoformat(),
                "active_users_30d": active,
                "licensed_seats": seats,
                "logins_30d": logins,
                "key_features_used_30d": 5
                if heavy
                else (1 if profile == "at_risk" else rng.randint(1, 4)),
                "key_features_defined": 6,
                "last_login_at": _at(last_login, 16),
            }
        )

    # --- helpdesk --------------------------------------------------------------------------
    ticket_days = [rng.randint(20, 110) for _ in range(rng.randint(0, 3))]
    if profile in ("escalations", "at_risk"):
        ticket_days += [rng.randint(1, 25) for _ in range(6)]  # a spike in the last 30 days
    for n, ago in enumerate(sorted(ticket_days, reverse=True)):
        opened = today - timedelta(days=ago)
        closed = opened + timedelta(days=rng.randint(0, 4))
        rows["tickets"].append(
            {
                **ref,
                "external_id": f"HD-{account.ref}-{n + 1}",
                "source": "helpdesk",
                "opened_at": _at(opened, 9, n % 60),
                "closed_at": _at(closed, 15) if closed < today else None,
                "priority": rng.choice(("P2", "P3", "P3", "P4")),
                "first_contact_resolved": rng.random() < 0.7,
            }
        )
    if profile in ("escalations", "at_risk"):
        opened = today - timedelta(days=10)
        rows["tickets"].append(
            {
                **ref,
                "external_id": f"HD-{account.ref}-esc",
                "source": "helpdesk",
                "opened_at": _at(opened, 8),
                "priority": "P1",
                "escalated": True,
            }
        )
    rows["tickets"] = [{k: v for k, v in r.items() if v is not None} for r in rows["tickets"]]

    # --- survey tool: NPS (the decision maker and a user), CSAT ----------------------------
    unhappy = profile in ("detractor", "false_loyalty", "at_risk")
    dm_score = (
        rng.randint(2, 4) if unhappy else (rng.randint(9, 10) if heavy else rng.randint(7, 9))
    )
    domain = account.domain
    rows["nps"].append(
        {
            **ref,
            "score": dm_score,
            "responded_on": (today - timedelta(days=rng.randint(10, 60))).isoformat(),
            "contact_email": f"cfo@{domain}",
            "respondent_role": "decision_maker",
            **({"comment": "Not sure we get the value we pay for"} if unhappy else {}),
        }
    )
    rows["nps"].append(
        {
            **ref,
            "score": rng.randint(7, 10) if profile != "at_risk" else rng.randint(3, 6),
            "responded_on": (today - timedelta(days=rng.randint(10, 90))).isoformat(),
            "contact_email": f"ops@{domain}",
            "respondent_role": "user",
        }
    )
    rows["surveys"].append(
        {
            **ref,
            "kind": "csat",
            "topic": "support",
            "score": rng.randint(1, 3) if unhappy else rng.randint(4, 5),
            "scale_min": 1,
            "scale_max": 5,
            "responded_on": (today - timedelta(days=rng.randint(5, 90))).isoformat(),
            "contact_email": f"ops@{domain}",
        }
    )

    # --- touchpoints: meetings and e-mails over 6 months -----------------------------------
    answered = 0.85 if profile in ("champion", "steady", "false_loyalty") else 0.15
    quiet = profile in ("detractor", "at_risk", "dormant")
    first_gap = rng.randint(150, 220) if quiet else rng.randint(3, 20)
    day = first_gap
    while day <= 180:
        on = today - timedelta(days=day)
        rows["touchpoints"].append(
            {
                **ref,
                "kind": "meeting",
                "occurred_at": _at(on, 14),
                "scheduled": True,
                "two_way": not quiet or day > 140,
                "contact_email": f"cfo@{domain}",
            }
        )
        day += rng.randint(21, 45)
    for n in range(rng.randint(3, 6)):
        on = today - timedelta(days=rng.randint(1, 85))
        rows["touchpoints"].append(
            {
                **ref,
                "kind": "email",
                "occurred_at": _at(on, 11, n),
                "direction": "out",
                "two_way": rng.random() < answered,
                "contact_email": f"ops@{domain}",
            }
        )

    # --- billing: the last three monthly invoices ------------------------------------------
    monthly = max(50, seats * 25)
    for n in range(3):
        due = today - timedelta(days=15 + 30 * n)
        paid: date | None = due - timedelta(days=rng.randint(0, 5))
        if profile in ("late_payer", "at_risk") and n == 2:
            due, paid = today - timedelta(days=75), None  # 75 days overdue
        rows["invoices"].append(
            {
                **ref,
                "external_id": f"INV-{account.ref}-{n + 1}",
                "amount": f"{monthly}.00",
                "currency": "EUR",
                "due_on": due.isoformat(),
                **({"paid_on": paid.isoformat()} if paid is not None and paid <= today else {}),
            }
        )

    # --- success criteria --------------------------------------------------------------------
    status = {
        "champion": ("met", "met"),
        "false_loyalty": ("met", "partly_met"),
        "steady": ("met", "partly_met"),
        "detractor": ("not_met", "partly_met"),
        "at_risk": ("not_met", "not_met"),
    }.get(profile, ("partly_met", "unassessed"))
    for text, state in zip(
        ("Weekly reports built in the product", "All teams onboarded"), status, strict=True
    ):
        rows["success_criteria"].append(
            {
                **ref,
                "text": text,
                "status": state,
                **(
                    {"assessed_on": (today - timedelta(days=20)).isoformat()}
                    if state != "unassessed"
                    else {}
                ),
            }
        )
    return rows


__all__ = ["PROFILES", "DemoAccount", "assign_profiles", "generate"]

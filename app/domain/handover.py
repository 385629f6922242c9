"""Handover completeness per tier (domain.md 6.2-6.3), the rep's fix task and the CRM note body.

A handover is what sales said at close: the structured columns of ``handover_notes`` (parsed from
the CRM's note by :mod:`app.mappers.handover`) completed by the opportunity's own fields. Which of
6.2's fields a tier requires is the setting ``scoring.handover.required``; this module says which
are there, which are missing (with the missing parts, so the rep knows what to add), the ratio
and the status, the text of the ``handover_complete`` task, and the note crmsync writes back to
the CRM account.

Why pure: the same check runs on the webhook path, in a backfill and in tests, and must give the
same answer for the same handover; the caller owns the reads and the writes.

Incomplete never blocks onboarding (6.3): the result only feeds task 1 of the plan.
"""

from __future__ import annotations

import html
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date
from decimal import Decimal
from typing import Any, Literal

from app.domain.config import DEFAULT_CONFIG, ScoringConfig
from app.domain.values import Tier
from app.mappers.handover import FITS, NONE_VALUES, render_handover, structured_columns

HandoverStatus = Literal["complete", "partial", "empty"]

#: 6.2's fields in table order, with the label the note and the rep's task use.
FIELD_LABELS: Mapping[str, str] = {
    "sold": "What was sold",
    "term": "Term",
    "services": "Services sold",
    "primary_contact": "Primary contact",
    "secondary_contacts": "Secondary contacts",
    "champion": "Champion",
    "decision_maker": "Decision maker",
    "technical_contact": "Technical contact",
    "executive_sponsor": "Executive sponsor",
    "why_they_bought": "Why they bought",
    "goals": "Goals",
    "success_criteria": "Success criteria",
    "value_expected": "Value expected",
    "special_terms": "Special terms",
    "fit": "Fit",
    "risks": "Risks",
    "timeline": "Timeline",
    "preassigned_csm": "Pre-assigned CSM",
}


@dataclass(frozen=True)
class DealFacts:
    """The opportunity's own fields, used where the note is silent (6.3: the opportunity's
    current state is a source too)."""

    name: str | None = None
    amount: Decimal | None = None
    currency: str | None = None
    term_start_on: date | None = None
    term_months: int | None = None
    auto_renew: bool | None = None
    preassigned_csm_email: str | None = None


@dataclass(frozen=True)
class HandoverFacts:
    """What a handover says, as the structured ``handover_notes`` columns."""

    sold: Mapping[str, Any] = field(default_factory=dict)
    contacts: tuple[Mapping[str, Any], ...] = ()
    goals: tuple[str, ...] = ()
    success_criteria: tuple[str, ...] = ()
    special_terms: str | None = None
    risks: tuple[str, ...] = ()
    fit: str | None = None
    timeline: str | None = None
    preassigned_csm: str | None = None
    value_expected: str | None = None
    deal: DealFacts = field(default_factory=DealFacts)

    @classmethod
    def from_columns(
        cls,
        columns: Mapping[str, Any],
        *,
        deal: DealFacts | None = None,
        preassigned_csm: str | None = None,
    ) -> HandoverFacts:
        """From ``handover_notes`` columns (or ``ParsedHandover.columns()``) and the deal."""
        deal = deal or DealFacts()
        return cls(
            sold=dict(columns.get("sold") or {}),
            contacts=tuple(dict(c) for c in columns.get("contacts") or ()),
            goals=tuple(columns.get("goals") or ()),
            success_criteria=tuple(columns.get("success_criteria") or ()),
            special_terms=columns.get("special_terms"),
            risks=tuple(columns.get("risks") or ()),
            fit=columns.get("fit"),
            timeline=columns.get("timeline"),
            preassigned_csm=preassigned_csm or deal.preassigned_csm_email,
            value_expected=columns.get("value_expected"),
            deal=deal,
        )

    def columns(self) -> dict[str, Any]:
        """The structured columns, as JSON-able values (for ``handover_notes``)."""
        return structured_columns(self)

    @property
    def services(self) -> tuple[str, ...]:
        """The services sold; an explicit "none" answer gives ``()`` (see :func:`_missing`)."""
        items = self.sold.get("services") or ()
        return tuple(str(s) for s in items if not _blank(s))


@dataclass(frozen=True)
class MissingField:
    code: str
    label: str
    parts: tuple[str, ...] = ()  # what is missing inside a field that is partly there

    def text(self) -> str:
        return f"{self.label} ({', '.join(self.parts)})" if self.parts else self.label


@dataclass(frozen=True)
class HandoverCheck:
    """6.3: ``completeness`` = required fields present / required fields for the tier."""

    tier: Tier
    required: tuple[str, ...]
    present: tuple[str, ...]
    missing: tuple[MissingField, ...]
    status: HandoverStatus

    @property
    def ratio(self) -> float:
        return len(self.present) / len(self.required) if self.required else 1.0

    @property
    def completeness(self) -> int:
        """Percent, rounded down, so 100 means every required field is there."""
        return math.floor(self.ratio * 100 + 1e-9)

    @property
    def missing_codes(self) -> tuple[str, ...]:
        return tuple(m.code for m in self.missing)


def _blank(value: Any) -> bool:
    if value is None:
        return True
    if isinstance(value, str):
        return value.strip().strip(".").lower() in NONE_VALUES
    if isinstance(value, Mapping | list | tuple):
        return len(value) == 0
    return False


def _contacts(facts: HandoverFacts, role: str) -> list[Mapping[str, Any]]:
    return [c for c in facts.contacts if c.get("role") == role and not _blank(c.get("name"))]


def _missing_parts(facts: HandoverFacts, code: str) -> tuple[str, ...] | None:
    """None: the field is there; a tuple: missing (the parts that are, or ``()`` for all)."""
    sold, deal = facts.sold, facts.deal
    if code == "sold":
        parts = []
        if _blank(sold.get("plan")) and not sold.get("products") and _blank(sold.get("text")):
            parts.append("products or plan")
        if sold.get("seats") is None:
            parts.append("seats")
        if sold.get("arr") is None and sold.get("mrr") is None and deal.amount is None:
            parts.append("ARR or MRR")
        if len(parts) == 3:
            return ()
        return tuple(parts) or None
    if code == "term":
        has_start = not _blank(sold.get("term_start_on")) or deal.term_start_on is not None
        has_end = not _blank(sold.get("term_end_on")) or (
            deal.term_start_on is not None and deal.term_months is not None
        )
        has_auto = sold.get("auto_renew") is not None or deal.auto_renew is not None
        checks = [
            ("start", has_start),
            ("end", has_end),
            ("billing frequency", not _blank(sold.get("billing"))),
            ("auto-renew", has_auto),
        ]
        parts = [name for name, ok in checks if not ok]
        if len(parts) == len(checks):
            return ()
        return tuple(parts) or None
    if code == "services":
        # An explicit "none" is stored as ["none"]: answered, so present.
        return None if sold.get("services") else ()
    if code == "primary_contact":
        primary = _contacts(facts, "primary")
        if not primary:
            return ()
        first = primary[0]
        parts = [
            name for name, key in (("role", "title"), ("e-mail", "email")) if _blank(first.get(key))
        ]
        return tuple(parts) or None
    if code == "secondary_contacts":
        return None if _contacts(facts, "secondary") else ()
    if code in ("champion", "decision_maker", "executive_sponsor"):
        return None if _contacts(facts, code) else ()
    if code == "technical_contact":
        return None if _contacts(facts, "technical") else ()
    if code == "why_they_bought":
        return None if not _blank(sold.get("why_they_bought")) else ()
    if code in ("goals", "success_criteria", "risks"):
        items = getattr(facts, code)
        return None if any(not _blank(i) for i in items) else ()
    if code == "special_terms":
        # "none" is an answer here (6.2); only an absent or empty line is missing.
        text = facts.special_terms
        return None if text is not None and text.strip() else ()
    if code == "fit":
        return None if facts.fit in FITS else ()
    if code == "timeline":
        return None if not _blank(facts.timeline) else ()
    if code == "preassigned_csm":
        return None if not _blank(facts.preassigned_csm) else ()
    if code == "value_expected":
        return None if not _blank(facts.value_expected) else ()
    raise ValueError(f"unknown handover field {code!r}")


def required_fields(tier: Tier, cfg: ScoringConfig = DEFAULT_CONFIG) -> tuple[str, ...]:
    """6.2: the fields the tier requires, in the table's order."""
    return tuple(code for code, tiers in cfg.handover.required.items() if tier in tiers)


def check_handover(
    facts: HandoverFacts, tier: Tier, cfg: ScoringConfig = DEFAULT_CONFIG
) -> HandoverCheck:
    """6.2-6.3: which required fields are there, which are missing (with parts), the status."""
    required = required_fields(tier, cfg)
    present: list[str] = []
    missing: list[MissingField] = []
    for code in required:
        parts = _missing_parts(facts, code)
        if parts is None:
            present.append(code)
        else:
            missing.append(MissingField(code, FIELD_LABELS[code], parts))
    if not missing:
        status: HandoverStatus = "complete"
    elif not present:
        status = "empty"
    else:
        status = "partial"
    return HandoverCheck(tier, required, tuple(present), tuple(missing), status)


def handover_task_text(check: HandoverCheck, deal_name: str | None = None) -> str | None:
    """6.3: the ``handover_complete`` task's text for the sales rep; None when complete."""
    if not check.missing:
        return None
    deal = f" of {deal_name}" if deal_name else ""
    fields = "; ".join(m.text() for m in check.missing)
    return (
        f"Complete the handover{deal} ({check.tier} tier, {check.completeness} % complete). "
        f"Missing: {fields}."
    )


def handover_note_title(deal_name: str | None) -> str:
    return f"Handover: {deal_name}" if deal_name else "Handover"


def handover_note_body(
    facts: HandoverFacts,
    check: HandoverCheck,
    *,
    deal_name: str | None = None,
    opportunity_crm_id: str | None = None,
    html_output: bool = False,
) -> str:
    """The handover as the CRM note on the account (6.3): the template's ``Label: value`` lines
    (so the next pull parses it back to the same columns) and two closing lines with the
    completeness and the missing fields, which the parser ignores as unknown labels."""
    columns = facts.columns()
    sold = dict(columns["sold"])
    deal = facts.deal
    if sold.get("arr") is None and sold.get("mrr") is None and deal.amount is not None:
        sold["arr"] = _plain_number(deal.amount)
        sold.setdefault("currency", deal.currency or "EUR")
    columns["sold"] = sold
    body = render_handover(
        columns,
        deal_name=deal_name or deal.name,
        opportunity_crm_id=opportunity_crm_id,
        html_output=html_output,
    )
    tail = [f"Handover completeness: {check.completeness} % ({check.status})"]
    if facts.preassigned_csm:
        tail.insert(0, f"Pre-assigned CSM: {facts.preassigned_csm}")
    if check.missing:
        tail.append("Missing: " + "; ".join(m.text() for m in check.missing))
    if html_output:
        return body + "".join(f"<p>{html.escape(line, quote=False)}</p>" for line in tail)
    return "\n".join([body, *tail]) if body else "\n".join(tail)


def _plain_number(value: Decimal) -> int | float:
    return int(value) if value == value.to_integral_value() else float(value)

"""Parse and render the handover note body (docs/sandbox-schema.md, domain.md 6.2).

The CRM holds a handover as a note whose body is one ``Label: value`` line per field::

    Handover: Acme renewal 2025
    Opportunity: 006000000000001AAA
    What was sold: Enterprise, 250 seats, EUR 120000 ARR
    Term: 2025-01-01 to 2025-12-31, billed yearly, auto-renew yes
    Primary contact: Ada Lovelace, VP Operations, ada@acme.test
    Secondary contacts: Bob Stone, IT lead, bob@acme.test; Cy Young, Finance, cy@acme.test
    Champion: ...
    Goals: first goal; second goal
    ...

:func:`parse_handover` turns such a body into the structured columns of ``handover_notes``
(``sold``, ``contacts``, ``goals``, ``success_criteria``, ``special_terms``, ``risks``, ``fit``,
``timeline``) plus the CRM id of the opportunity from the ``Opportunity:`` line. It never raises:

* labels are matched case-insensitively, with or without spaces around the colon; unknown
  labels are ignored (the body keeps them);
* missing lines leave their column empty; list values are split on ``;``;
* a line without a known label right after a known one continues it (wrapped text);
* HubSpot bodies are HTML: ``<p>``, ``<div>``, ``<li>`` and ``<br>`` become line breaks, other
  tags are dropped and entities unescaped; CRLF and CR line ends are accepted.

:func:`render_handover` is the reverse (CS columns -> body text, or HTML for HubSpot), so a
handover written on the CS side can be pushed; ``parse_handover(render_handover(x))`` gives the
same columns back. :func:`compose_body` is the outbound composite of the note body (the
``handover_body`` converter): the body a push sends for a ``handover_notes`` row.

Pure: no I/O, no clock.
"""

from __future__ import annotations

import html
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from functools import lru_cache
from typing import Any, Protocol

FITS = ("good", "stretch", "bad")
NONE_VALUES = frozenset({"", "-", "--", "n/a", "na", "none", "tbd", "unknown", "?"})

# label (lower case, single spaces) -> key
_LABELS: Mapping[str, str] = {
    "handover": "deal_name",
    "opportunity": "opportunity_id",
    "opportunity id": "opportunity_id",
    "deal": "opportunity_id",
    "what was sold": "sold",
    "sold": "sold",
    "term": "term",
    "services sold": "services",
    "services": "services",
    "primary contact": "contact:primary",
    "secondary contacts": "contact:secondary",
    "secondary contact": "contact:secondary",
    "champion": "contact:champion",
    "decision maker": "contact:decision_maker",
    "economic buyer": "contact:decision_maker",
    "technical contact": "contact:technical",
    "admin": "contact:technical",
    "executive sponsor": "contact:executive_sponsor",
    "why they bought": "why_they_bought",
    "use case": "why_they_bought",
    "goals": "goals",
    "success criteria": "success_criteria",
    "special terms": "special_terms",
    "promises": "special_terms",
    "fit": "fit",
    "risks": "risks",
    "timeline": "timeline",
    "pre-assigned csm": "preassigned_csm",
    "preassigned csm": "preassigned_csm",
}

# Keys whose values are ";"-separated lists (a continuation line adds items).
_LIST_KEYS = frozenset(
    {"goals", "success_criteria", "risks", "services"}
    | {k for k in _LABELS.values() if k.startswith("contact:")}
)

CONTACT_ROLES = (
    "primary",
    "secondary",
    "champion",
    "decision_maker",
    "technical",
    "executive_sponsor",
)

_CONTACT_LABELS = {
    "primary": "Primary contact",
    "secondary": "Secondary contacts",
    "champion": "Champion",
    "decision_maker": "Decision maker",
    "technical": "Technical contact",
    "executive_sponsor": "Executive sponsor",
}

_BLOCK_TAG = re.compile(r"<\s*(br|/p|/div|/li|/h[1-6]|/tr)\b[^>]*>", re.IGNORECASE)
_ANY_TAG = re.compile(r"</?[A-Za-z][A-Za-z0-9]*(?:\s[^<>]*)?/?>")  # not <ada@acme.test>
_LINE = re.compile(r"^\s*(?:[-*\u2022]\s*)?([A-Za-z][A-Za-z \-/]{0,40}?)\s*:\s*(.*)$")
_EMAIL = re.compile(r"[^\s,;<>]+@[^\s,;<>]+\.[^\s,;<>]+")
_SEATS = re.compile(r"^(\d[\d,.\s]*)\s*(?:seats?|users?|licen[cs]es?)$", re.IGNORECASE)
_MONEY = re.compile(
    r"^(?P<cur>[A-Z]{3})\s*(?P<amount>\d[\d,]*(?:\.\d+)?)\s*(?P<kind>ARR|MRR)?$", re.IGNORECASE
)
_TERM = re.compile(r"^(?P<start>\S+)\s+(?:to|-|until|through)\s+(?P<end>\S+)$", re.IGNORECASE)
_BILLED = re.compile(r"^billed\s+(?P<freq>[\w-]+)$", re.IGNORECASE)
_AUTO_RENEW = re.compile(r"^auto-?\s*renew(?:al)?\s*:?\s*(?P<flag>\w+)$", re.IGNORECASE)
_PART_SPLIT = re.compile(r",\s+|,(?=\D)")


@dataclass(frozen=True)
class ParsedHandover:
    """What :func:`parse_handover` found. Use :meth:`columns` for the ``handover_notes`` values."""

    deal_name: str | None = None
    opportunity_id: str | None = None
    sold: Mapping[str, Any] = field(default_factory=dict)
    contacts: tuple[Mapping[str, Any], ...] = ()
    goals: tuple[str, ...] = ()
    success_criteria: tuple[str, ...] = ()
    special_terms: str | None = None
    risks: tuple[str, ...] = ()
    fit: str | None = None
    timeline: str | None = None
    preassigned_csm: str | None = None
    unknown_labels: tuple[str, ...] = ()

    @property
    def is_handover(self) -> bool:
        """Whether the body looked like a handover at all (a CRM holds other notes too)."""
        return bool(self.deal_name or self.opportunity_id or self.sold or self.contacts)

    def columns(self) -> dict[str, Any]:
        """The structured ``handover_notes`` columns, as fresh JSON-able values."""
        return structured_columns(self)


class HandoverShape(Protocol):
    """What :func:`structured_columns` reads: a parsed handover or the domain's facts."""

    @property
    def sold(self) -> Mapping[str, Any]: ...
    @property
    def contacts(self) -> Sequence[Mapping[str, Any]]: ...
    @property
    def goals(self) -> Sequence[str]: ...
    @property
    def success_criteria(self) -> Sequence[str]: ...
    @property
    def special_terms(self) -> str | None: ...
    @property
    def risks(self) -> Sequence[str]: ...
    @property
    def fit(self) -> str | None: ...
    @property
    def timeline(self) -> str | None: ...


def structured_columns(handover: HandoverShape) -> dict[str, Any]:
    """The ``handover_notes`` structured columns (:data:`STRUCTURED_COLUMNS`) of a handover, as
    fresh JSON-able values: one definition for what a pull stores from a parsed note
    (:meth:`ParsedHandover.columns`) and what crmsync's own note stores
    (:meth:`app.domain.handover.HandoverFacts.columns`)."""
    return {
        "sold": dict(handover.sold),
        "contacts": [dict(c) for c in handover.contacts],
        "goals": list(handover.goals),
        "success_criteria": list(handover.success_criteria),
        "special_terms": handover.special_terms,
        "risks": list(handover.risks),
        "fit": handover.fit,
        "timeline": handover.timeline,
    }


def html_to_text(body: str) -> str:
    """Turn a HubSpot HTML note body into plain lines (no-op on plain text)."""
    text = body.replace("\r\n", "\n").replace("\r", "\n")
    if "<" in text and ">" in text:
        text = _BLOCK_TAG.sub("\n", text)
        text = _ANY_TAG.sub("", text)
    return html.unescape(text).replace("\xa0", " ")


def parse_handover(body: str | None) -> ParsedHandover:
    """Parse a handover note body; never raises (see the module docstring for the rules)."""
    if not body:
        return ParsedHandover()
    return _parse_cached(body)


@lru_cache(maxsize=512)
def _parse_cached(body: str) -> ParsedHandover:
    # One note is mapped to several columns (one converter each); the cache parses it once.
    # ParsedHandover is frozen and columns() copies, so sharing the result is safe.
    raw: dict[str, list[str]] = {}
    unknown: list[str] = []
    current: str | None = None
    for line in html_to_text(body).split("\n"):
        stripped = line.strip()
        if not stripped:
            current = None
            continue
        match = _LINE.match(stripped)
        key = _LABELS.get(_norm_label(match.group(1))) if match else None
        if match and key is not None:
            current = key
            raw.setdefault(key, []).append(match.group(2).strip())
        elif match and match.group(1).lower() not in {"http", "https", "mailto"}:
            # An unknown label ends the field above it: its text belongs to no column.
            unknown.append(match.group(1).strip())
            current = None
        elif current is not None:
            raw[current].append(stripped.lstrip("-*\u2022 ").strip())
    return _build(raw, tuple(unknown))


def _norm_label(label: str) -> str:
    return " ".join(label.lower().split())


def _is_none(value: str) -> bool:
    return value.strip().strip(".").lower() in NONE_VALUES


def _text(parts: Sequence[str] | None, *, keep_none: bool = False) -> str | None:
    if not parts:
        return None
    text = " ".join(p for p in parts if p).strip()
    if not text or (not keep_none and _is_none(text)):
        return None
    return text


def _items(parts: Sequence[str] | None) -> list[str]:
    items: list[str] = []
    for part in parts or ():
        for item in part.split(";"):
            item = item.strip()
            if item and not _is_none(item):
                items.append(item)
    return items


def _build(raw: Mapping[str, list[str]], unknown: tuple[str, ...]) -> ParsedHandover:
    sold = _parse_sold(_text(raw.get("sold")))
    sold.update(_parse_term(_text(raw.get("term"))))
    services = _items(raw.get("services"))
    if not services and _text(raw.get("services"), keep_none=True) is not None:
        # "Services sold: none" is an answer (nothing was sold, domain.md 6.2), not a gap.
        services = ["none"]
    if services:
        sold["services"] = services
    why = _text(raw.get("why_they_bought"))
    if why:
        sold["why_they_bought"] = why
    contacts: list[dict[str, Any]] = []
    for role in CONTACT_ROLES:
        for item in _items(raw.get(f"contact:{role}")):
            contacts.append(_parse_contact(role, item))
    opportunity = _text(raw.get("opportunity_id"))
    return ParsedHandover(
        deal_name=_text(raw.get("deal_name")),
        opportunity_id=opportunity.split()[0] if opportunity else None,
        sold=sold,
        contacts=tuple(contacts),
        goals=tuple(_items(raw.get("goals"))),
        success_criteria=tuple(_items(raw.get("success_criteria"))),
        # "none" is an answer for special terms (domain.md 6.2), so it is kept.
        special_terms=_text(raw.get("special_terms"), keep_none=True),
        risks=tuple(_items(raw.get("risks"))),
        fit=_parse_fit(_text(raw.get("fit"))),
        timeline=_text(raw.get("timeline")),
        preassigned_csm=_text(raw.get("preassigned_csm")),
        unknown_labels=unknown,
    )


def _number(text: str) -> int | float | None:
    try:
        value = Decimal(text.replace(",", "").replace(" ", ""))
    except InvalidOperation:
        return None
    if not value.is_finite():
        return None
    return int(value) if value == value.to_integral_value() else float(value)


def _parse_sold(text: str | None) -> dict[str, Any]:
    if text is None:
        return {}
    sold: dict[str, Any] = {"text": text}
    products: list[str] = []
    for part in (p.strip() for p in _PART_SPLIT.split(text)):
        if not part:
            continue
        seats = _SEATS.match(part)
        money = _MONEY.match(part)
        if seats and "seats" not in sold:
            number = _number(seats.group(1))
            if number is not None:
                sold["seats"] = int(number)
                continue
        if money and "amount" not in sold:
            number = _number(money.group("amount"))
            if number is not None:
                sold["currency"] = money.group("cur").upper()
                kind = (money.group("kind") or "ARR").upper()
                sold[kind.lower()] = number
                sold["amount"] = number
                continue
        products.append(part)
    sold.pop("amount", None)
    if products:
        sold["plan"] = products[0]
        if len(products) > 1:
            sold["products"] = products[1:]
    return sold


def _parse_term(text: str | None) -> dict[str, Any]:
    if text is None:
        return {}
    term: dict[str, Any] = {"term_text": text}
    for part in (p.strip() for p in re.split(r",\s*", text)):
        if match := _TERM.match(part):
            term["term_start_on"] = match.group("start")
            term["term_end_on"] = match.group("end")
        elif match := _BILLED.match(part):
            term["billing"] = match.group("freq").lower()
        elif match := _AUTO_RENEW.match(part):
            flag = match.group("flag").lower()
            if flag in {"yes", "true", "y", "on"}:
                term["auto_renew"] = True
            elif flag in {"no", "false", "n", "off"}:
                term["auto_renew"] = False
    return term


def _parse_contact(role: str, text: str) -> dict[str, Any]:
    email_match = _EMAIL.search(text)
    email = email_match.group(0).strip("<>()").lower() if email_match else None
    rest = _EMAIL.sub("", text) if email_match else text
    parts = [p.strip(" <>()") for p in rest.split(",")]
    parts = [p for p in parts if p]
    contact: dict[str, Any] = {
        "role": role,
        "name": parts[0] if parts else None,
        "email": email,
    }
    if len(parts) > 1:
        contact["title"] = ", ".join(parts[1:])
    return contact


def _parse_fit(text: str | None) -> str | None:
    if text is None:
        return None
    word = re.split(r"[\s,.;:(/-]+", text.lower(), maxsplit=1)[0]
    return word if word in FITS else None


# --------------------------------------------------------------------------------------------
# Rendering (CS -> CRM)
# --------------------------------------------------------------------------------------------


def _render_sold(sold: Mapping[str, Any]) -> str | None:
    parts: list[str] = []
    if sold.get("plan"):
        parts.append(str(sold["plan"]))
    parts.extend(str(p) for p in sold.get("products") or ())
    if sold.get("seats") is not None:
        parts.append(f"{sold['seats']} seats")
    for kind in ("arr", "mrr"):
        if sold.get(kind) is not None:
            parts.append(f"{sold.get('currency') or 'EUR'} {sold[kind]} {kind.upper()}")
    if parts:
        return ", ".join(parts)
    text = sold.get("text")
    return str(text) if text else None


def _render_term(sold: Mapping[str, Any]) -> str | None:
    parts: list[str] = []
    if sold.get("term_start_on") or sold.get("term_end_on"):
        parts.append(f"{sold.get('term_start_on') or '?'} to {sold.get('term_end_on') or '?'}")
    if sold.get("billing"):
        parts.append(f"billed {sold['billing']}")
    if sold.get("auto_renew") is not None:
        parts.append(f"auto-renew {'yes' if sold['auto_renew'] else 'no'}")
    if parts:
        return ", ".join(parts)
    text = sold.get("term_text")
    return str(text) if text else None


def _render_contact(contact: Mapping[str, Any]) -> str:
    parts = [str(contact.get(k)) for k in ("name", "title", "email") if contact.get(k)]
    return ", ".join(parts)


def render_handover(
    note: Mapping[str, Any],
    *,
    deal_name: str | None = None,
    opportunity_crm_id: str | None = None,
    html_output: bool = False,
) -> str:
    """Render ``handover_notes`` columns (``sold``, ``contacts``, ...) as a note body.

    Lines follow the template order; empty fields are left out. ``html_output`` wraps each line
    in ``<p>`` (HubSpot note bodies are HTML) with the values HTML-escaped.
    """
    sold: Mapping[str, Any] = note.get("sold") or {}
    contacts: Sequence[Mapping[str, Any]] = note.get("contacts") or ()
    lines: list[tuple[str, str | None]] = [
        ("Handover", deal_name or note.get("title")),
        ("Opportunity", opportunity_crm_id),
        ("What was sold", _render_sold(sold)),
        ("Term", _render_term(sold)),
    ]
    if sold.get("services"):
        lines.append(("Services sold", "; ".join(str(s) for s in sold["services"])))
    for role in CONTACT_ROLES:
        rendered = [_render_contact(c) for c in contacts if c.get("role") == role]
        rendered = [r for r in rendered if r]
        if rendered:
            lines.append((_CONTACT_LABELS[role], "; ".join(rendered)))
    lines += [
        ("Why they bought", sold.get("why_they_bought")),
        ("Goals", "; ".join(note.get("goals") or ()) or None),
        ("Success criteria", "; ".join(note.get("success_criteria") or ()) or None),
        ("Special terms", note.get("special_terms")),
        ("Fit", note.get("fit")),
        ("Risks", "; ".join(note.get("risks") or ()) or None),
        ("Timeline", note.get("timeline")),
    ]
    rendered_lines = [f"{label}: {value}" for label, value in lines if value]
    if html_output:
        return "".join(f"<p>{html.escape(line, quote=False)}</p>" for line in rendered_lines)
    return "\n".join(rendered_lines)


# --------------------------------------------------------------------------------------------
# The outbound composite (CS row -> the note body a push sends)
# --------------------------------------------------------------------------------------------

#: The ``handover_notes`` columns parsed from the body (inbound) and rendered into it (outbound).
STRUCTURED_COLUMNS = (
    "sold",
    "contacts",
    "goals",
    "success_criteria",
    "special_terms",
    "risks",
    "fit",
    "timeline",
)


def _plain(value: Any) -> Any:
    """A JSON-like value with empties folded (None, "", [], {}) and tuples as lists."""
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    if isinstance(value, Mapping):
        folded = {str(k): _plain(v) for k, v in value.items()}
        return {k: v for k, v in folded.items() if v is not None} or None
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value] or None
    return value


def _stamp(value: Any) -> datetime | None:
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=UTC)
    if not isinstance(value, str):
        return None
    try:
        parsed = datetime.fromisoformat(value.strip())
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def body_matches_columns(body: str | None, row: Mapping[str, Any]) -> bool:
    """Whether ``body`` parses to the structured columns of ``row`` (empties compare equal)."""
    parsed = parse_handover(body).columns()
    return all(_plain(parsed[c]) == _plain(row.get(c)) for c in STRUCTURED_COLUMNS)


def compose_body(
    row: Mapping[str, Any], *, html_output: bool = False, opportunity_crm_id: str | None = None
) -> str | None:
    """The note body a push sends for the ``handover_notes`` row ``row``.

    * the stored ``body`` when its parse gives the row's structured columns (a pulled note, or
      one whose columns were set from its body), or when the row has no structured values: the
      text the CRM holds is sent back unchanged, never re-formatted;
    * otherwise the structured columns changed on the CS side since the body was written: the
      columns rendered with :func:`render_handover` (HTML for HubSpot) and the row's ``title``
      as the ``Handover:`` line; except when ``field_stamps`` say the ``body`` itself changed
      after every structured column (then the body is what the CS side wrote last);
    * None when there is neither a body nor a structured value.
    """
    body = row.get("body")
    has_body = isinstance(body, str) and bool(body.strip())
    has_columns = any(_plain(row.get(c)) is not None for c in STRUCTURED_COLUMNS)
    if has_body and (not has_columns or body_matches_columns(body, row)):
        return str(body)
    if has_body:
        stamps = row.get("field_stamps") or {}
        body_at = _stamp(stamps.get("body"))
        column_stamps = [_stamp(stamps.get(c)) for c in STRUCTURED_COLUMNS]
        newest_column = max((s for s in column_stamps if s is not None), default=None)
        if body_at is not None and (newest_column is None or body_at >= newest_column):
            return str(body)
    if not has_columns:
        return None
    return render_handover(row, opportunity_crm_id=opportunity_crm_id, html_output=html_output)

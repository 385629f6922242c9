"""Converters between CRM wire values and CS column values, looked up by name.

A field mapping names its converter (``convert = "decimal"``); :func:`get_converter` returns a
:class:`Converter` with two pure functions:

* ``to_cs(value)``: a wire value (REST JSON, Bulk CSV string, HubSpot string) -> the CS value;
* ``to_crm(value, ctx)``: a CS value -> the wire value for ``ctx.crm``. Salesforce takes JSON
  types (numbers, booleans, ``null`` clears a field); HubSpot takes strings only (``""`` clears).

Shared rules: ``None`` and ``""`` (Bulk CSV's null; whitespace-only counts too) become ``None``.
NUL characters (``\u0000``, valid in JSON) are dropped from ``string`` and ``text`` values:
PostgreSQL text cannot hold them, and one such record would fail its whole page. A
value that cannot be converted raises :class:`~app.mappers.errors.ConversionError`, which
:func:`~app.mappers.record.map_record` turns into a field issue (the column stored empty), or a
``MappingError`` for an id, a stamp or a ``required`` field.

=======================  ==========================================================================
name                     rule
=======================  ==========================================================================
``string``               str, surrounding whitespace stripped; numbers accepted (``123`` -> "123").
                         Too long for the CS column: cut (ellipsis) by ``map_record``, which
                         reports it as a field issue (docs/mapping.md, "Invalid values").
``text``, ``text:N``     str kept as is (no strip). Inbound: cut to the CS column length when the
                         column is bounded (``Text`` columns are not). Outbound: cut to ``N``
                         characters, or the CRM's long-text limit (Salesforce 32,768, HubSpot
                         65,536). A cut value ends in an ellipsis ("…") within the limit.
``decimal``              Decimal from int, float (via ``str``, no binary noise), or a numeric
                         string; NaN/Infinity and booleans rejected.
``integer``              int; ``"250.0"`` and ``2.5E2`` accepted, ``"250.5"`` rejected.
``boolean``              ``true``/``false``, ``"true"``/``"false"`` (any case), ``"1"``/``"0"``,
                         ``1``/``0``, ``"yes"``/``"no"``.
``date``                 ``YYYY-MM-DD``; a datetime (ISO, Salesforce ``+0000``, ms epoch) gives
                         its UTC date (HubSpot ``closedate`` is a datetime).
``datetime``             aware UTC datetime from ISO (``Z``/``+00:00``), Salesforce
                         ``2021-11-06T17:38:40.000+0000``, or ms epoch digits; naive -> UTC.
                         Outbound: ``YYYY-MM-DDTHH:MM:SS.mmmZ`` for both CRMs.
``sf_stage``/``hs_stage``  the CRM stage -> CS stage (``prospecting`` ... ``closed_won``,
                         ``closed_lost``); an unknown (custom) stage is kept, slugified.
``opportunity_type``     ``New Business``/``newbusiness`` -> ``new_business``, ``Renewal`` ->
                         ``renewal``, ``Expansion``/``existingbusiness`` -> ``expansion``; unknown
                         values slugified. Outbound per CRM (``New Business`` / ``newbusiness``).
``first_id``             first id of an association list (or the string itself); inbound only.
``domain``               website -> bare host: scheme, ``www.``, port, path, query dropped,
                         lower case.
``currency``             ISO 4217 code, upper case, exactly three letters.
``email``                trimmed, lower case, must contain ``@``.
``days_until``           outbound only, derived: whole days from ``ctx.today`` to the date.
``handover_*``           inbound only: a field of the parsed handover body
                         (:mod:`app.mappers.handover`); ``handover_opportunity_id`` gives the
                         CRM id on the ``Opportunity:`` line.
``handover_body``        the note body, both ways. Inbound as ``text``; outbound a composite:
                         ``to_crm`` takes the whole ``handover_notes`` row and sends
                         :func:`~app.mappers.handover.compose_body` (the stored body, or the
                         structured columns rendered when they changed on the CS side; HTML
                         for HubSpot), cut like ``text``.
=======================  ==========================================================================
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal, InvalidOperation
from types import MappingProxyType
from typing import Any
from urllib.parse import urlsplit

from app.core.types import CrmName
from app.mappers.errors import ConversionError
from app.mappers.handover import compose_body, parse_handover

ELLIPSIS = "\u2026"
LONG_TEXT_LIMITS: Mapping[str, int] = MappingProxyType({"salesforce": 32_768, "hubspot": 65_536})
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_ZERO = timedelta(0)


@dataclass(frozen=True)
class WriteContext:
    """What an outbound conversion may depend on: the target CRM and, for derived fields, the
    day of writing (passed in, never read from the clock)."""

    crm: CrmName
    today: date | None = None


ToCs = Callable[[Any], Any]
ToCrm = Callable[[Any, WriteContext], Any]


@dataclass(frozen=True)
class Converter:
    """A named pair of conversions. ``to_cs`` None: outbound only; ``to_crm`` None: inbound only."""

    name: str
    to_cs: ToCs | None
    to_crm: ToCrm | None
    derived: bool = False
    #: An outbound composite: ``to_crm`` takes the whole CS row (not one column's value) and
    #: renders the field from several columns (``handover_body``).
    composite: bool = False


# --------------------------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------------------------


def is_blank(value: Any) -> bool:
    """None, or a string of whitespace (Bulk CSV writes null as an empty field)."""
    return value is None or (isinstance(value, str) and not value.strip())


def _blank_out(ctx: WriteContext) -> Any:
    return None if ctx.crm == "salesforce" else ""


def _as_str(value: Any) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float | Decimal):
        return str(value)
    raise ConversionError(f"expected a string, got {type(value).__name__}")


def truncate(text: str, limit: int) -> str:
    """Cut ``text`` to at most ``limit`` characters, ending in an ellipsis when cut."""
    if len(text) <= limit:
        return text
    if limit <= 1:
        return text[:limit]
    return text[: limit - 1] + ELLIPSIS


def slugify(text: str) -> str:
    """``"Proposal/Price Quote"`` -> ``"proposal_price_quote"``."""
    return re.sub(r"[^a-z0-9]+", "_", text.strip().lower()).strip("_")


# --------------------------------------------------------------------------------------------
# scalar converters
# --------------------------------------------------------------------------------------------


def string_to_cs(value: Any) -> str | None:
    if type(value) is str:  # the common case, kept cheap: it runs for most fields of a pull
        if "\x00" in value:
            value = value.replace("\x00", "")
        return value.strip() or None
    if is_blank(value):
        return None
    return _as_str(value).strip()


def string_to_crm(value: Any, ctx: WriteContext) -> Any:
    if is_blank(value):
        return _blank_out(ctx)
    return _as_str(value)


def text_to_cs(value: Any) -> str | None:
    if is_blank(value):
        return None
    text = _as_str(value)
    if "\x00" in text:
        text = text.replace("\x00", "")
        return None if is_blank(text) else text
    return text


def _text_to_crm(limit: int | None) -> ToCrm:
    def to_crm(value: Any, ctx: WriteContext) -> Any:
        if is_blank(value):
            return _blank_out(ctx)
        return truncate(_as_str(value), limit or LONG_TEXT_LIMITS[ctx.crm])

    return to_crm


def decimal_to_cs(value: Any) -> Decimal | None:
    # Fast paths first: a pull converts every numeric field of every record. JSON pages decode
    # numbers as Decimal (exact) or int; Bulk CSV pages hand over strings.
    kind = type(value)
    if kind is Decimal:
        if value.is_finite():
            return value  # type: ignore[no-any-return]
        raise ConversionError("not a finite number")
    if kind is int:
        return Decimal(value)
    if is_blank(value):
        return None
    if isinstance(value, bool):
        raise ConversionError("expected a number, got a boolean")
    if isinstance(value, Decimal):
        result = value
    elif isinstance(value, int | float | str):
        try:
            result = Decimal(str(value).strip())
        except InvalidOperation:
            raise ConversionError("not a number") from None
    else:
        raise ConversionError(f"expected a number, got {type(value).__name__}")
    if not result.is_finite():
        raise ConversionError("not a finite number")
    return result


def _number_out(value: Decimal, ctx: WriteContext) -> Any:
    if ctx.crm == "hubspot":
        return format(value.normalize(), "f")
    if value == value.to_integral_value():
        return int(value)
    return float(value)


def decimal_to_crm(value: Any, ctx: WriteContext) -> Any:
    number = decimal_to_cs(value)
    if number is None:
        return _blank_out(ctx)
    return _number_out(number, ctx)


def integer_to_cs(value: Any) -> int | None:
    number = decimal_to_cs(value)
    if number is None:
        return None
    if number != number.to_integral_value():
        raise ConversionError("not a whole number")
    return int(number)


def integer_to_crm(value: Any, ctx: WriteContext) -> Any:
    number = integer_to_cs(value)
    if number is None:
        return _blank_out(ctx)
    return str(number) if ctx.crm == "hubspot" else number


_TRUE = frozenset({"true", "1", "yes", "y", "t"})
_FALSE = frozenset({"false", "0", "no", "n", "f"})


def boolean_to_cs(value: Any) -> bool | None:
    if value is True or value is False:
        return value
    if is_blank(value):
        return None
    if isinstance(value, bool):
        return value
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    if isinstance(value, str):
        lowered = value.strip().lower()
        if lowered in _TRUE:
            return True
        if lowered in _FALSE:
            return False
    raise ConversionError("expected true/false")


def boolean_to_crm(value: Any, ctx: WriteContext) -> Any:
    flag = boolean_to_cs(value)
    if flag is None:
        return _blank_out(ctx)
    if ctx.crm == "hubspot":
        return "true" if flag else "false"
    return flag


def datetime_to_cs(value: Any) -> datetime | None:
    if type(value) is str and value[:1].isdigit() and not value.isdigit():
        # The common case (an ISO stamp from the wire), parsed without the checks below.
        try:
            result = datetime.fromisoformat(value)
        except ValueError:
            pass  # maybe surrounding blanks: the full path below says what is wrong
        else:
            if result.tzinfo is None:
                return result.replace(tzinfo=UTC)
            return result if result.utcoffset() == _ZERO else result.astimezone(UTC)
    if is_blank(value):
        return None
    if isinstance(value, datetime):
        result = value
    elif isinstance(value, date):
        result = datetime(value.year, value.month, value.day, tzinfo=UTC)
    elif isinstance(value, int) and not isinstance(value, bool):
        result = _from_epoch_ms(value)
    elif isinstance(value, str):
        text = value.strip()
        if text.isdigit() or (text[:1] == "-" and text[1:].isdigit()):
            result = _from_epoch_ms(int(text))
        else:
            try:
                result = datetime.fromisoformat(text)
            except ValueError:
                raise ConversionError("not an ISO 8601 datetime") from None
    else:
        raise ConversionError(f"expected a datetime, got {type(value).__name__}")
    if result.tzinfo is None:
        return result.replace(tzinfo=UTC)
    return result.astimezone(UTC)


def _from_epoch_ms(ms: int) -> datetime:
    try:
        return _EPOCH + timedelta(milliseconds=ms)
    except OverflowError:
        raise ConversionError("epoch milliseconds out of range") from None


def format_datetime(value: datetime) -> str:
    """``2024-03-02T08:15:30.123Z``: accepted by Salesforce writes and HubSpot."""
    utc = value.astimezone(UTC) if value.tzinfo else value.replace(tzinfo=UTC)
    return utc.strftime("%Y-%m-%dT%H:%M:%S.") + f"{utc.microsecond // 1000:03d}Z"


def datetime_to_crm(value: Any, ctx: WriteContext) -> Any:
    stamp = datetime_to_cs(value)
    if stamp is None:
        return _blank_out(ctx)
    return format_datetime(stamp)


def date_to_cs(value: Any) -> date | None:
    if type(value) is str and len(value) == 10:
        try:
            return date.fromisoformat(value)
        except ValueError:
            pass  # the full path below says what is wrong
    if is_blank(value):
        return None
    if isinstance(value, datetime):
        stamp = datetime_to_cs(value)
        return stamp.date() if stamp else None
    if isinstance(value, date):
        return value
    if isinstance(value, str):
        text = value.strip()
        if len(text) == 10 and not text.isdigit():  # ten digits: epoch milliseconds in 1970
            try:
                return date.fromisoformat(text)
            except ValueError:
                raise ConversionError("not a YYYY-MM-DD date") from None
    stamp = datetime_to_cs(value)
    return stamp.date() if stamp else None


def date_to_crm(value: Any, ctx: WriteContext) -> Any:
    day = date_to_cs(value)
    if day is None:
        return _blank_out(ctx)
    return day.isoformat()


def days_until_to_crm(value: Any, ctx: WriteContext) -> Any:
    day = date_to_cs(value)
    if day is None:
        return _blank_out(ctx)
    if ctx.today is None:
        raise ConversionError("days_until needs the day of writing (WriteContext.today)")
    days = (day - ctx.today).days
    return str(days) if ctx.crm == "hubspot" else days


# --------------------------------------------------------------------------------------------
# CRM vocabularies
# --------------------------------------------------------------------------------------------

CS_STAGES = ("prospecting", "qualification", "proposal", "negotiation", "closed_won", "closed_lost")

SF_STAGES: Mapping[str, str] = MappingProxyType(
    {
        "Prospecting": "prospecting",
        "Qualification": "qualification",
        "Proposal/Price Quote": "proposal",
        "Negotiation/Review": "negotiation",
        "Closed Won": "closed_won",
        "Closed Lost": "closed_lost",
    }
)
HS_STAGES: Mapping[str, str] = MappingProxyType(
    {
        "appointmentscheduled": "prospecting",
        "qualifiedtobuy": "qualification",
        "presentationscheduled": "proposal",
        "contractsent": "negotiation",
        "decisionmakerboughtin": "negotiation",
        "closedwon": "closed_won",
        "closedlost": "closed_lost",
    }
)
# Reverse maps: the first CRM value listed for a CS stage wins.
_SF_STAGES_OUT = {cs: crm for crm, cs in reversed(list(SF_STAGES.items()))}
_HS_STAGES_OUT = {cs: crm for crm, cs in reversed(list(HS_STAGES.items()))}

OPPORTUNITY_TYPES: Mapping[str, str] = MappingProxyType(
    {
        "new business": "new_business",
        "new_business": "new_business",
        "newbusiness": "new_business",
        "new": "new_business",
        "renewal": "renewal",
        "existing customer - replacement": "renewal",
        "expansion": "expansion",
        "existingbusiness": "expansion",
        "existing business": "expansion",
        "existing customer - upgrade": "expansion",
        "upsell": "expansion",
    }
)
_TYPES_OUT: Mapping[str, Mapping[str, str]] = MappingProxyType(
    {
        "salesforce": {
            "new_business": "New Business",
            "renewal": "Renewal",
            "expansion": "Expansion",
        },
        "hubspot": {
            "new_business": "newbusiness",
            "renewal": "renewal",
            "expansion": "existingbusiness",
        },
    }
)


def _vocabulary_to_cs(table: Mapping[str, str]) -> ToCs:
    folded = {k.lower(): v for k, v in table.items()}

    def to_cs(value: Any) -> str | None:
        text = string_to_cs(value)
        if text is None:
            return None
        return (
            folded.get(text.lower())
            or folded.get(" ".join(text.lower().split()))
            or (slugify(text) or None)
        )

    return to_cs


def _vocabulary_to_crm(by_crm: Callable[[WriteContext], Mapping[str, str]]) -> ToCrm:
    def to_crm(value: Any, ctx: WriteContext) -> Any:
        text = string_to_cs(value)
        if text is None:
            return _blank_out(ctx)
        return by_crm(ctx).get(text, text)

    return to_crm


# --------------------------------------------------------------------------------------------
# structural and formatted values
# --------------------------------------------------------------------------------------------


def first_id_to_cs(value: Any) -> str | None:
    if is_blank(value):
        return None
    if isinstance(value, list | tuple):
        for item in value:
            if isinstance(item, Mapping):
                item = item.get("id") or item.get("toObjectId")
            if not is_blank(item):
                return _as_str(item).strip()
        return None
    text = _as_str(value).strip()
    return text.split(";")[0].strip() or None


def domain_to_cs(value: Any) -> str | None:
    text = string_to_cs(value)
    if text is None:
        return None
    candidate = text if "://" in text else f"//{text}"
    try:
        host = urlsplit(candidate).hostname
    except ValueError:
        raise ConversionError("not a website or domain") from None
    host = (host or "").strip(".").lower()
    if host.startswith("www."):
        host = host[4:]
    if not host or " " in host or "." not in host:
        raise ConversionError("not a website or domain")
    return host


def currency_to_cs(value: Any) -> str | None:
    text = string_to_cs(value)
    if text is None:
        return None
    code = text.upper()
    if not re.fullmatch(r"[A-Z]{3}", code):
        raise ConversionError("not an ISO 4217 currency code")
    return code


def email_to_cs(value: Any) -> str | None:
    text = string_to_cs(value)
    if text is None:
        return None
    if "@" not in text or " " in text:
        raise ConversionError("not an e-mail address")
    return text.lower()


def handover_body_to_crm(row: Any, ctx: WriteContext) -> Any:
    """The composite note body of a ``handover_notes`` row (see :func:`compose_body`)."""
    if not isinstance(row, Mapping):
        raise ConversionError("handover_body writes from a whole handover_notes row")
    opportunity: str | None = None
    if ctx.crm == "hubspot":
        opportunity = row.get("hs_deal_id") or None
    else:
        parent = row.get("sf_parent_id")
        opportunity = parent if isinstance(parent, str) and parent.startswith("006") else None
    body = compose_body(row, html_output=ctx.crm == "hubspot", opportunity_crm_id=opportunity)
    return _text_to_crm(None)(body, ctx)


def _handover(column: str) -> ToCs:
    def to_cs(value: Any) -> Any:
        body = text_to_cs(value)
        if column == "opportunity_id":
            return parse_handover(body).opportunity_id
        return parse_handover(body).columns()[column]

    return to_cs


# --------------------------------------------------------------------------------------------
# registry
# --------------------------------------------------------------------------------------------

CONVERTERS: Mapping[str, Converter] = MappingProxyType(
    {
        c.name: c
        for c in (
            Converter("string", string_to_cs, string_to_crm),
            Converter("text", text_to_cs, _text_to_crm(None)),
            Converter("decimal", decimal_to_cs, decimal_to_crm),
            Converter("integer", integer_to_cs, integer_to_crm),
            Converter("boolean", boolean_to_cs, boolean_to_crm),
            Converter("date", date_to_cs, date_to_crm),
            Converter("datetime", datetime_to_cs, datetime_to_crm),
            Converter(
                "sf_stage",
                _vocabulary_to_cs(SF_STAGES),
                _vocabulary_to_crm(lambda ctx: _SF_STAGES_OUT),
            ),
            Converter(
                "hs_stage",
                _vocabulary_to_cs(HS_STAGES),
                _vocabulary_to_crm(lambda ctx: _HS_STAGES_OUT),
            ),
            Converter(
                "opportunity_type",
                _vocabulary_to_cs(OPPORTUNITY_TYPES),
                _vocabulary_to_crm(lambda ctx: _TYPES_OUT[ctx.crm]),
            ),
            Converter("first_id", first_id_to_cs, None),
            Converter("domain", domain_to_cs, string_to_crm),
            Converter("currency", currency_to_cs, string_to_crm),
            Converter("email", email_to_cs, string_to_crm),
            Converter("days_until", None, days_until_to_crm, derived=True),
            Converter("handover_body", text_to_cs, handover_body_to_crm, composite=True),
            *(
                Converter(f"handover_{column}", _handover(column), None)
                for column in (
                    "sold",
                    "contacts",
                    "goals",
                    "success_criteria",
                    "special_terms",
                    "risks",
                    "fit",
                    "timeline",
                    "opportunity_id",
                )
            ),
        )
    }
)

#: Converters that take an argument after a colon (``text:255``).
PARAMETRISED = frozenset({"text"})


def get_converter(spec: str) -> Converter:
    """The converter named by ``spec`` (``"decimal"``, ``"text:255"``).

    Raises ``KeyError`` for an unknown name and ``ValueError`` for a bad argument; config
    validation turns both into a ``MappingConfigError`` naming the TOML key.
    """
    name, _, arg = spec.partition(":")
    if name not in CONVERTERS:
        raise KeyError(f"unknown converter {name!r}; known: {', '.join(sorted(CONVERTERS))}")
    if not arg:
        return CONVERTERS[name]
    if name not in PARAMETRISED:
        raise ValueError(f"converter {name!r} takes no argument")
    if not arg.isdigit() or int(arg) < 1:
        raise ValueError(f"converter {name!r} needs a positive length, got {arg!r}")
    return Converter(spec, text_to_cs, _text_to_crm(int(arg)))

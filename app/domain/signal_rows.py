"""Signal rows as they arrive (issue #18 item 1): one pydantic model per kind, validated row by
row, and the natural key that makes a row sent twice one stored row.

Pure: no database, no HTTP. ``POST /api/v1/signals/{kind}`` (JSON) and
``crmsync signals import`` (CSV) both call :func:`validate_rows`, which validates each row on its
own so that one bad row never hides the good ones: it returns the valid rows with their index
and one :class:`RowError` per bad row, naming the field. The store
(:mod:`app.db.signal_store`) then resolves the account each row names and writes the rows.

Why a row is stored once (docs/signals.md has the table):

* ``usage``: the table's own key, one snapshot per account and ``observed_on`` day;
* every other kind: ``(source, external_id)``. ``external_id`` is the sending system's id of the
  row when it gives one; otherwise :func:`derived_external_id` makes one from the row's natural
  key (:data:`NATURAL_KEYS`) and the account, so a resend of the same fact lands on the same row
  (and a changed value, a ticket closed or an invoice paid, updates it).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Annotated, Any, ClassVar, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    ValidationError,
    model_validator,
)

#: The largest batch one request (or one CSV chunk) carries.
MAX_BATCH = 10_000
#: Prefix of the external ids crmsync derives from a natural key; refused from clients.
DERIVED_PREFIX = "nk:"
#: The fields that name an account; a row gives exactly one of them.
ACCOUNT_FIELDS: tuple[str, ...] = ("account_id", "sf_id", "hs_id", "domain")

_INT_MAX = 2_147_483_647  # PostgreSQL INTEGER


def _utc(value: datetime) -> datetime:
    """A naive timestamp is read as UTC; an aware one is converted to UTC."""
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def _domain(value: str) -> str:
    """``https://www.Acme.com/`` -> ``acme.com``: how domains are compared."""
    text = value.strip().lower()
    for prefix in ("https://", "http://"):
        text = text.removeprefix(prefix)
    text = text.split("/", 1)[0].removeprefix("www.")
    if not text or "." not in text or " " in text:
        raise ValueError("not a domain (like acme.com)")
    return text


def _email(value: str) -> str:
    text = value.strip().lower()
    local, at, host = text.partition("@")
    if not at or not local or "." not in host or " " in text:
        raise ValueError("not an e-mail address")
    return text


UtcDateTime = Annotated[datetime, AfterValidator(_utc)]
Count = Annotated[int, Field(ge=0, le=_INT_MAX)]
Source = Annotated[
    str, StringConstraints(strip_whitespace=True, pattern=r"^[A-Za-z0-9_.:-]{1,32}$")
]
ExternalId = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=64)]
Email = Annotated[str, StringConstraints(max_length=320), AfterValidator(_email)]
Domain = Annotated[str, StringConstraints(max_length=255), AfterValidator(_domain)]
Role = Annotated[
    str,
    StringConstraints(strip_whitespace=True, pattern=r"^[A-Za-z_]{1,32}$"),
    AfterValidator(str.lower),
]


class SignalRow(BaseModel):
    """What every row has: the account it is about, named one of four ways."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    #: The crmsync (CS) id of the account.
    account_id: Annotated[int, Field(ge=1)] | None = None
    #: The Salesforce Account id (15 or 18 characters).
    sf_id: (
        Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9]{15}([A-Za-z0-9]{3})?$")] | None
    ) = None
    #: The HubSpot company id.
    hs_id: Annotated[str, StringConstraints(pattern=r"^[0-9]{1,32}$")] | None = None
    #: The company's web domain; must name one live account.
    domain: Domain | None = None

    KIND: ClassVar[str] = ""
    #: The table the rows go to.
    TABLE: ClassVar[str] = ""

    def account_ref(self) -> tuple[str, Any] | None:
        """The one (field, value) naming the account; None when not exactly one is given."""
        given = [(f, getattr(self, f)) for f in ACCOUNT_FIELDS if getattr(self, f) is not None]
        return given[0] if len(given) == 1 else None

    def columns(self) -> dict[str, Any]:
        """The table columns of this row, without ``account_id`` and the keys."""
        skip = {*ACCOUNT_FIELDS, "source", "external_id"}
        return {k: v for k, v in self.model_dump().items() if k not in skip}

    def natural_key(self) -> tuple[Any, ...]:
        """The values that identify this fact for its account (see :data:`NATURAL_KEYS`)."""
        return tuple(getattr(self, f) for f in NATURAL_KEYS[self.KIND])


class KeyedRow(SignalRow):
    """An event-like row: keyed by ``(source, external_id)``."""

    #: The sending system (default per kind, see :data:`DEFAULT_SOURCES`).
    source: Source | None = None
    #: The sender's own id of the row; derived from the natural key when absent.
    external_id: ExternalId | None = None

    @model_validator(mode="after")
    def _not_derived(self) -> KeyedRow:
        if self.external_id is not None and self.external_id.startswith(DERIVED_PREFIX):
            raise ValueError(f"external_id: the prefix {DERIVED_PREFIX!r} is crmsync's own")
        return self


class UsageRow(SignalRow):
    """One day of product usage (``usage_snapshots``): the 30-day counts as of ``observed_on``."""

    KIND: ClassVar[str] = "usage"
    TABLE: ClassVar[str] = "usage_snapshots"

    observed_on: date
    active_users_30d: Count
    licensed_seats: Count | None = None
    logins_30d: Count = 0
    key_features_used_30d: Count = 0
    key_features_defined: Count | None = None
    last_login_at: UtcDateTime | None = None

    @model_validator(mode="after")
    def _features(self) -> UsageRow:
        if (
            self.key_features_defined is not None
            and self.key_features_used_30d > self.key_features_defined
        ):
            raise ValueError("key_features_used_30d: more than key_features_defined")
        return self


class TicketRow(KeyedRow):
    """A helpdesk ticket (``support_tickets``); send it again when it changes."""

    KIND: ClassVar[str] = "tickets"
    TABLE: ClassVar[str] = "support_tickets"

    opened_at: UtcDateTime
    closed_at: UtcDateTime | None = None
    priority: Literal["P1", "P2", "P3", "P4"] = "P3"
    escalated: bool = False
    first_contact_resolved: bool | None = None

    @model_validator(mode="after")
    def _order(self) -> TicketRow:
        if self.closed_at is not None and self.closed_at < self.opened_at:
            raise ValueError("closed_at: before opened_at")
        return self


class NpsRow(KeyedRow):
    """One NPS answer, 0-10 (``nps_responses``)."""

    KIND: ClassVar[str] = "nps"
    TABLE: ClassVar[str] = "nps_responses"

    score: Annotated[int, Field(ge=0, le=10)]
    responded_on: date
    contact_email: Email | None = None
    #: decision_maker, champion, exec, user, ... (domain.md 4.3: the first three count twice).
    respondent_role: Role | None = None
    comment: Annotated[str, StringConstraints(max_length=4000)] | None = None


class SurveyRow(KeyedRow):
    """A CSAT or CES answer on its own scale (``survey_responses``)."""

    KIND: ClassVar[str] = "surveys"
    TABLE: ClassVar[str] = "survey_responses"

    kind: Literal["csat", "ces"]
    score: Annotated[Decimal, Field(max_digits=6, decimal_places=2)]
    scale_min: Annotated[int, Field(ge=-1000, le=1000)]
    scale_max: Annotated[int, Field(ge=-1000, le=1000)]
    responded_on: date
    topic: Annotated[str, StringConstraints(max_length=64)] | None = None
    contact_email: Email | None = None

    @model_validator(mode="after")
    def _scale(self) -> SurveyRow:
        if self.scale_min >= self.scale_max:
            raise ValueError("scale_max: not above scale_min")
        if not self.scale_min <= self.score <= self.scale_max:
            raise ValueError(f"score: outside the scale {self.scale_min}-{self.scale_max}")
        return self


class TouchpointRow(KeyedRow):
    """A contact with the customer (``touchpoints``). ``direction`` ``in``: from the customer;
    ``two_way``: the customer answered or attended; ``scheduled``: a planned meeting."""

    KIND: ClassVar[str] = "touchpoints"
    TABLE: ClassVar[str] = "touchpoints"

    kind: Literal["meeting", "call", "email", "event", "note", "chat", "other"]
    occurred_at: UtcDateTime
    direction: Literal["in", "out"] | None = None
    two_way: bool = False
    scheduled: bool = False
    contact_email: Email | None = None


class InvoiceRow(KeyedRow):
    """An invoice of the billing feed (``invoices``); send it again once paid."""

    KIND: ClassVar[str] = "invoices"
    TABLE: ClassVar[str] = "invoices"

    amount: Annotated[Decimal, Field(ge=0, max_digits=18, decimal_places=2)]
    currency: Annotated[str, StringConstraints(to_upper=True, pattern=r"^[A-Za-z]{3}$")]
    due_on: date
    paid_on: date | None = None


class SuccessCriterionRow(KeyedRow):
    """A success criterion and its assessment (``success_criteria``)."""

    KIND: ClassVar[str] = "success_criteria"
    TABLE: ClassVar[str] = "success_criteria"

    text: Annotated[str, StringConstraints(min_length=1, max_length=2000)]
    status: Literal["unassessed", "met", "partly_met", "not_met"] = "unassessed"
    assessed_on: date | None = None


#: Every field of every kind: a model check's message starts with the one it is about.
_ALL_FIELDS: set[str] = set()

ROW_MODELS: dict[str, type[SignalRow]] = {
    m.KIND: m
    for m in (
        UsageRow,
        TicketRow,
        NpsRow,
        SurveyRow,
        TouchpointRow,
        InvoiceRow,
        SuccessCriterionRow,
    )
}
KINDS: tuple[str, ...] = tuple(ROW_MODELS)
_ALL_FIELDS.update(f for m in ROW_MODELS.values() for f in m.model_fields)

#: The source a row gets when it names none (the tables' own defaults).
DEFAULT_SOURCES: dict[str, str] = {
    "tickets": "cs",
    "nps": "survey",
    "surveys": "survey",
    "touchpoints": "cs",
    "invoices": "billing",
    "success_criteria": "cs",
}

#: Per kind, the fields that identify one fact of an account when the sender gives no
#: ``external_id`` (usage: the table's unique key). Values that change over a fact's life (a
#: ticket's closing, an invoice's payment, a criterion's status) are not in it, so the resend
#: updates the row. An answer without a respondent adds its score (and comment): two anonymous
#: answers on one day are then two rows unless they say exactly the same.
NATURAL_KEYS: dict[str, tuple[str, ...]] = {
    "usage": ("observed_on",),
    "tickets": ("opened_at",),
    "nps": ("contact_email", "responded_on"),
    "surveys": ("kind", "topic", "contact_email", "responded_on"),
    "touchpoints": ("kind", "occurred_at", "contact_email"),
    "invoices": ("due_on", "amount", "currency"),
    "success_criteria": ("text",),
}
_ANONYMOUS_EXTRA: dict[str, tuple[str, ...]] = {
    "nps": ("score", "comment"),
    "surveys": ("score",),
}


def _key_value(value: Any) -> Any:
    if isinstance(value, datetime):
        return _utc(value).isoformat()
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, Decimal):
        return format(value.normalize(), "f")
    if isinstance(value, str):
        return " ".join(value.split()).casefold()
    return value


def derived_external_id(row: SignalRow, account_id: int) -> str:
    """``nk:`` + a hash of the kind, the account and the row's natural key (43 characters)."""
    fields = NATURAL_KEYS[row.KIND]
    if getattr(row, "contact_email", "x") is None:
        fields = (*fields, *_ANONYMOUS_EXTRA.get(row.KIND, ()))
    parts = [row.KIND, account_id, *(_key_value(getattr(row, f)) for f in fields)]
    digest = hashlib.sha256(json.dumps(parts, separators=(",", ":")).encode()).hexdigest()
    return DERIVED_PREFIX + digest[:40]


@dataclass(frozen=True)
class RowError:
    """One refused row: its index in the batch, the field at fault (None: the whole row) and
    why. ``line`` is the CSV line, when the row came from a file."""

    index: int
    field: str | None
    message: str
    type: str = "value_error"
    input: Any = None
    line: int | None = None

    def as_dict(self) -> dict[str, Any]:
        loc: list[Any] = ["body", "rows", self.index]
        if self.field is not None:
            loc.append(self.field)
        out: dict[str, Any] = {
            "index": self.index,
            "field": self.field,
            "loc": loc,
            "msg": self.message,
            "type": self.type,
        }
        if self.line is not None:
            out["line"] = self.line
        if self.input is not None:
            out["input"] = self.input
        return out


def _errors_of(index: int, raw: Mapping[str, Any], exc: ValidationError) -> list[RowError]:
    out = []
    for e in exc.errors(include_url=False):
        loc = [str(p) for p in e["loc"]]
        message = str(e["msg"]).removeprefix("Value error, ")
        field = loc[0] if loc else None
        if field is None and ": " in message:  # a model check names its field first
            head, rest = message.split(": ", 1)
            if head in _ALL_FIELDS:
                field, message = head, rest
        value = raw.get(field) if field is not None else None
        out.append(RowError(index, field, message, str(e["type"]), _plain(value)))
    return out


def _plain(value: Any) -> Any:
    """``value`` if JSON can carry it, else its text (errors echo the input)."""
    if value is None or isinstance(value, str | int | float | bool):
        return value
    return str(value)


def validate_rows(
    kind: str, raw_rows: Sequence[Any]
) -> tuple[list[tuple[int, SignalRow]], list[RowError]]:
    """Validate each row of a batch of ``kind`` on its own: the valid rows with their index, and
    the errors (each naming its field). An account must be named by exactly one field."""
    model = ROW_MODELS[kind]
    good: list[tuple[int, SignalRow]] = []
    errors: list[RowError] = []
    for index, raw in enumerate(raw_rows):
        if not isinstance(raw, Mapping):
            errors.append(RowError(index, None, "a row is a JSON object", "dict_type"))
            continue
        try:
            row = model.model_validate(raw)
        except ValidationError as exc:
            errors.extend(_errors_of(index, raw, exc))
            continue
        if row.account_ref() is None:
            given = [f for f in ACCOUNT_FIELDS if getattr(row, f) is not None]
            errors.append(
                RowError(
                    index,
                    given[1] if len(given) > 1 else "account_id",
                    "name the account by exactly one of account_id, sf_id, hs_id, domain"
                    + (f" (this row gives {', '.join(given)})" if given else ""),
                    "missing" if not given else "value_error",
                )
            )
            continue
        good.append((index, row))
    return good, errors


__all__ = [
    "ACCOUNT_FIELDS",
    "DEFAULT_SOURCES",
    "DERIVED_PREFIX",
    "KINDS",
    "MAX_BATCH",
    "NATURAL_KEYS",
    "ROW_MODELS",
    "RowError",
    "SignalRow",
    "derived_external_id",
    "validate_rows",
]

"""CSMs in the CS database: the roster (import, create, edit), their load, and assignment.

* :class:`CsmFields` / :class:`CsmPatch`: one CSM as the API and the CSV import take it,
  validated with the field named in every error.
* :func:`import_csms`: rows upserted by e-mail (case-insensitive, stored lower case), all or
  nothing, in the caller's transaction; running the same file twice changes nothing.
* :func:`csm_candidates`: every CSM with the load the assignment needs (domain.md 8.2), computed
  from the accounts they own and back up, never stored: units per tier x 1.5 while onboarding,
  2 per backup; their ARR; their new onboardings in the last 30 days. :class:`CsmLoads` reads
  them once for a batch of accounts and keeps them current as the batch assigns.
* :func:`assign_account_csm`: 8.3 for one account (:func:`app.domain.csm_assignment.assign_csm`)
  and, with ``apply=True``, the choice written to ``accounts.csm_id`` / ``backup_csm_id``,
  stamped as CS-side writes so the push sends them.
* :func:`reassign_csm_accounts`: 8.3 step 7, when a CSM is deactivated (``PATCH`` with
  ``active: false``, or an import row that does it): their accounts get new owners by
  :func:`app.domain.csm_assignment.reassign_accounts`, written and stamped the same way, each
  with a ``csm_reassigned`` account event naming its ``announce_csm_change`` task.
"""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, field_validator
from sqlalchemy import case, func, select
from sqlalchemy.orm import Session

from app.db.cs_writes import stamp_cs_change
from app.db.models import Account, AccountEvent, Csm, OnboardingPlan, OnboardingTask
from app.domain.config import DEFAULT_CONFIG, ScoringConfig
from app.domain.csm_assignment import (
    ANNOUNCE_CSM_CHANGE,
    Assignment,
    AssignmentRequest,
    CsmCandidate,
    HeldAccount,
    LoadItem,
    Reassignment,
    assign_csm,
    load_units,
    reassign_accounts,
)
from app.domain.values import TIERS, Tier

EMAIL = re.compile(r"^[^@\s,;<>]+@[^@\s,;<>]+\.[^@\s,;<>]+$")
Name = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=255)]
Email = Annotated[str, StringConstraints(strip_whitespace=True, to_lower=True, max_length=320)]


def _email(value: str) -> str:
    if not EMAIL.match(value):
        raise ValueError("not an e-mail address")
    return value


class CsmPatch(BaseModel):
    """Fields of a CSM to change; what is left out keeps its value."""

    model_config = ConfigDict(extra="forbid")

    name: Name | None = None
    email: Email | None = None
    tiers: list[Tier] | None = Field(None, description="Tiers served (domain.md 3.2).")
    capacity_units: Annotated[int, Field(ge=0, le=10_000)] | None = Field(
        None, description="Load units (domain.md 8.2): 100 full time, scaled for part time."
    )
    region: Annotated[str, StringConstraints(strip_whitespace=True, max_length=64)] | None = None
    language: Annotated[str, StringConstraints(strip_whitespace=True, max_length=16)] | None = None
    is_pool: bool | None = Field(None, description="A pool/queue user (the tech tier's owner).")
    active: bool | None = None
    out_of_office_until: date | None = Field(None, description="Last day away.")
    sf_user_id: Annotated[str, StringConstraints(strip_whitespace=True, max_length=18)] | None = (
        None
    )
    hs_owner_id: Annotated[str, StringConstraints(strip_whitespace=True, max_length=32)] | None = (
        None
    )

    @field_validator("name", "email", "tiers", "capacity_units", "is_pool", "active")
    @classmethod
    def _not_null(cls, value: Any) -> Any:
        """Left out keeps the value; an explicit null for a column that needs one is an error."""
        if value is None:
            raise ValueError("cannot be null")
        return value

    @field_validator("email")
    @classmethod
    def _valid_email(cls, value: str | None) -> str | None:
        return None if value is None else _email(value)

    @field_validator("tiers")
    @classmethod
    def _unique_tiers(cls, value: list[Tier] | None) -> list[Tier] | None:
        if value is None:
            return None
        return [t for t in reversed(TIERS) if t in value]  # key first, deduplicated


class CsmFields(CsmPatch):
    """A new CSM: a name and an e-mail at least."""

    name: Name
    email: Email
    tiers: list[Tier] = Field(default_factory=list, description="Tiers served.")


def csm_dict(csm: Csm) -> dict[str, Any]:
    return {
        "id": csm.id,
        "name": csm.name,
        "email": csm.email,
        "tiers": list(csm.tiers or []),
        "capacity_units": csm.capacity_units,
        "region": csm.region,
        "language": csm.language,
        "is_pool": csm.is_pool,
        "active": csm.active,
        "out_of_office_until": csm.out_of_office_until,
        "sf_user_id": csm.sf_user_id,
        "hs_owner_id": csm.hs_owner_id,
        "created_at": csm.created_at,
        "updated_at": csm.updated_at,
    }


class CsmConflict(ValueError):
    """A unique value (e-mail, Salesforce user, HubSpot owner) another CSM already has."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field


_UNIQUE = ("email", "sf_user_id", "hs_owner_id")


def _check_unique(session: Session, values: Mapping[str, Any], own_id: int | None) -> None:
    for field in _UNIQUE:
        value = values.get(field)
        if value is None:
            continue
        holder = session.scalar(select(Csm.id).where(getattr(Csm, field) == value))
        if holder is not None and holder != own_id:
            raise CsmConflict(field, f"{field} {value!r} belongs to CSM {holder}")


def create_csm(session: Session, fields: CsmFields, cfg: ScoringConfig = DEFAULT_CONFIG) -> Csm:
    values = fields.model_dump(exclude_unset=True)
    values.setdefault("capacity_units", cfg.assignment.capacity_units)
    values.setdefault("tiers", [])
    _check_unique(session, values, None)
    csm = Csm(**values)
    session.add(csm)
    session.flush()
    return csm


def update_csm(session: Session, csm: Csm, patch: CsmPatch) -> bool:
    """Apply the fields set in ``patch``; True when something changed."""
    values = patch.model_dump(exclude_unset=True)
    _check_unique(session, values, csm.id)
    changed = False
    for key, value in values.items():
        if getattr(csm, key) != value:
            setattr(csm, key, value)
            changed = True
    if changed:
        session.flush()
    return changed


# --------------------------------------------------------------------------------------------
# CSV import
# --------------------------------------------------------------------------------------------

CSV_COLUMNS = tuple(CsmFields.model_fields)
_TRUE = {"1", "true", "yes", "y", "on"}
_FALSE = {"0", "false", "no", "n", "off"}


@dataclass(frozen=True)
class RowError:
    line: int
    field: str | None
    message: str

    def text(self, source: str) -> str:
        where = f"{source}:{self.line}"
        return (
            f"{where}: {self.field}: {self.message}" if self.field else f"{where}: {self.message}"
        )


@dataclass(frozen=True)
class ImportResult:
    created: int
    updated: int
    unchanged: int
    errors: tuple[RowError, ...]
    #: Accounts whose owner changed because a row deactivated their CSM (8.3 step 7).
    reassigned_account_ids: tuple[int, ...] = ()

    @property
    def ok(self) -> bool:
        return not self.errors


def _cell(column: str, raw: str) -> Any:
    text = raw.strip()
    if column == "tiers":
        return [t for t in re.split(r"[;,\s|]+", text.lower()) if t]
    if text == "":
        return None
    if column in ("is_pool", "active"):
        low = text.lower()
        if low in _TRUE:
            return True
        if low in _FALSE:
            return False
        return text  # pydantic names it
    return text


def parse_csm_rows(
    header: Sequence[str], rows: Iterable[tuple[int, Sequence[str]]]
) -> tuple[list[tuple[int, CsmPatch, frozenset[str]]], list[RowError]]:
    """Validate CSV rows (line number, cells) against ``header``; every problem with its line
    and column. Returns the rows (with the columns the file sets) and the errors."""
    columns = [h.strip().lower() for h in header]
    errors: list[RowError] = []
    unknown = [c for c in columns if c not in CSV_COLUMNS]
    if unknown:
        known = ", ".join(CSV_COLUMNS)
        errors.append(RowError(1, unknown[0], f"unknown column (known: {known})"))
    if "email" not in columns:
        errors.append(RowError(1, "email", "missing column"))
    if errors:
        return [], errors
    parsed: list[tuple[int, CsmPatch, frozenset[str]]] = []
    seen: dict[str, dict[Any, int]] = defaultdict(dict)
    for line, cells in rows:
        if not any(c.strip() for c in cells):
            continue
        if len(cells) != len(columns):
            errors.append(
                RowError(line, None, f"{len(cells)} cells, the header has {len(columns)}")
            )
            continue
        data = {c: _cell(c, v) for c, v in zip(columns, cells, strict=True)}
        present = frozenset(c for c, v in data.items() if v is not None or c == "tiers")
        if data.get("email") is None:
            errors.append(RowError(line, "email", "required"))
            continue
        try:
            row = CsmPatch.model_validate({k: v for k, v in data.items() if v is not None})
        except Exception as exc:  # pydantic.ValidationError
            for error in getattr(exc, "errors", list)():
                field = ".".join(str(p) for p in error["loc"] if not isinstance(p, int)) or None
                errors.append(RowError(line, field, error["msg"].removeprefix("Value error, ")))
            continue
        duplicate = False
        for field in _UNIQUE:
            value = getattr(row, field)
            if value is None:
                continue
            if value in seen[field]:
                errors.append(
                    RowError(line, field, f"{value!r} is also on line {seen[field][value]}")
                )
                duplicate = True
            else:
                seen[field][value] = line
        if not duplicate:
            parsed.append((line, row, present))
    return parsed, errors


def import_csms(
    session: Session,
    rows: Sequence[tuple[int, CsmPatch, frozenset[str]]],
    cfg: ScoringConfig = DEFAULT_CONFIG,
    *,
    today: date | None = None,
    now: datetime | None = None,
) -> ImportResult:
    """Upsert the parsed rows by e-mail in the caller's transaction. A column the file does not
    have (or a cell left empty) keeps the stored value; a new CSM gets the defaults. Conflicts
    with another CSM's Salesforce / HubSpot id are errors and nothing is written. A row that
    deactivates a CSM reassigns their accounts (:func:`reassign_csm_accounts`) in the same
    transaction: the import and the new owners commit together or not at all."""
    existing = {c.email: c for c in session.scalars(select(Csm))}
    errors: list[RowError] = []
    for line, row, _present in rows:
        own = existing.get(row.email or "")
        if own is None and row.name is None:
            errors.append(RowError(line, "name", "required for a new CSM"))
        for field in ("sf_user_id", "hs_owner_id"):
            value = getattr(row, field)
            if value is None:
                continue
            holder = next((c for c in existing.values() if getattr(c, field) == value), None)
            if holder is not None and holder is not own:
                errors.append(RowError(line, field, f"{value!r} belongs to CSM {holder.email}"))
    if errors:
        return ImportResult(0, 0, 0, tuple(errors))
    created = updated = unchanged = 0
    deactivated: list[Csm] = []
    for _line, row, present in rows:
        values = {k: v for k, v in row.model_dump().items() if k in present and v is not None}
        if "tiers" in present:
            values["tiers"] = list(row.tiers or [])
        own = existing.get(row.email or "")
        if own is None:
            values.setdefault("capacity_units", cfg.assignment.capacity_units)
            csm = Csm(**values)
            session.add(csm)
            existing[csm.email] = csm
            created += 1
            continue
        changed = False
        was_active = own.active
        for key, value in values.items():
            if getattr(own, key) != value:
                setattr(own, key, value)
                changed = True
        if was_active and not own.active:
            deactivated.append(own)
        if changed:
            updated += 1
        else:
            unchanged += 1
    session.flush()
    now = (now or datetime.now(UTC)).astimezone(UTC)
    reassigned: list[int] = []
    for csm in deactivated:
        for r in reassign_csm_accounts(
            session, csm.id, today=today or now.date(), now=now, cfg=cfg
        ):
            if r.csm_changed or r.backup_changed:
                reassigned.append(r.account_id)
    return ImportResult(created, updated, unchanged, (), tuple(sorted(set(reassigned))))


# --------------------------------------------------------------------------------------------
# load and assignment (domain.md 8.2-8.3)
# --------------------------------------------------------------------------------------------


def _tier(value: str | None, cfg: ScoringConfig) -> Tier:
    return value if value in TIERS else cfg.tiering.unknown_arr_tier


class CsmLoads:
    """The CSMs with their loads (8.2), read once for a set of accounts being assigned and kept
    current in memory as they are assigned (a batch of closed-won events: 3 aggregates and the
    roster per batch, not per event).

    The stored loads leave ``held`` out; each held account counts with its **current** in-memory
    state (``csm_id``, ``backup_csm_id``, tier, onboarding, ARR) whenever :meth:`candidates` is
    asked, so an account assigned earlier in the batch weighs on the next choice exactly as it
    would after a commit. :meth:`count_plan` adds a new plan to its CSM's recent onboardings.
    """

    def __init__(
        self,
        roster: Sequence[CsmCandidate],
        items: Mapping[int, Sequence[LoadItem]],
        arr: Mapping[int, Decimal],
        recent: Mapping[int, int],
        since: date,
        held: Mapping[int, Account],
        cfg: ScoringConfig,
    ) -> None:
        self.roster = list(roster)
        self.emails = {c.id: c.email for c in self.roster}
        #: The stored load of each CSM, summed once (the batch adds its held accounts' units).
        self._units = {k: load_units(v, cfg) for k, v in items.items()}
        self._arr = dict(arr)
        self._recent = dict(recent)
        self._since = since
        self.held = dict(held)
        self._cfg = cfg

    @classmethod
    def read(
        cls,
        session: Session,
        *,
        today: date,
        held: Sequence[Account] = (),
        exclude_account_ids: Collection[int] = (),
        cfg: ScoringConfig = DEFAULT_CONFIG,
    ) -> CsmLoads:
        """The stored loads over every live account except ``held`` and ``exclude_account_ids``
        (flushed first: the session's pending changes count)."""
        items: dict[int, list[LoadItem]] = defaultdict(list)
        arr: dict[int, Decimal] = defaultdict(Decimal)
        live = Account.deleted_at.is_(None)
        excluded = sorted({*exclude_account_ids, *(a.id for a in held)})
        not_these = Account.id.not_in(excluded) if excluded else live
        onboarding = case((Account.lifecycle_stage == "onboarding", 1), else_=0)
        for csm_id, tier, is_onboarding, count, arr_sum in session.execute(
            select(Account.csm_id, Account.tier, onboarding, func.count(), func.sum(Account.arr))
            .where(Account.csm_id.is_not(None), live, not_these)
            .group_by(Account.csm_id, Account.tier, onboarding)
        ):
            item = LoadItem(_tier(tier, cfg), onboarding=bool(is_onboarding))
            items[csm_id].extend([item] * int(count))
            arr[csm_id] += Decimal(arr_sum or 0)
        for csm_id, count in session.execute(
            select(Account.backup_csm_id, func.count())
            .where(Account.backup_csm_id.is_not(None), live, not_these)
            .group_by(Account.backup_csm_id)
        ):
            if csm_id is not None:
                items[csm_id].extend([LoadItem("key", backup=True)] * int(count))
        since = today - timedelta(days=cfg.assignment.recent_onboarding_days)
        recent = {
            int(k): int(v)
            for k, v in session.execute(
                select(OnboardingPlan.csm_id, func.count())
                .where(OnboardingPlan.csm_id.is_not(None), OnboardingPlan.started_on >= since)
                .group_by(OnboardingPlan.csm_id)
            ).all()
            if k is not None
        }
        roster = [
            CsmCandidate(
                id=c.id,
                email=c.email,
                name=c.name,
                tiers=tuple(c.tiers or ()),
                capacity_units=float(c.capacity_units),
                active=c.active,
                out_of_office_until=c.out_of_office_until,
                region=c.region,
                language=c.language,
                is_pool=c.is_pool,
            )
            for c in session.scalars(select(Csm).order_by(Csm.id))
        ]
        return cls(roster, items, arr, recent, since, {a.id: a for a in held}, cfg)

    def candidates(self, exclude_account_id: int | None = None) -> list[CsmCandidate]:
        """Every CSM with their load now, ``exclude_account_id`` (the account being assigned)
        left out."""
        items: dict[int, list[LoadItem]] = defaultdict(list)  # the held accounts' only
        arr: dict[int, Decimal] = defaultdict(Decimal, self._arr)
        for account in self.held.values():
            if account.id == exclude_account_id or account.deleted_at is not None:
                continue
            if account.csm_id is not None:
                onboarding = account.lifecycle_stage == "onboarding"
                items[account.csm_id].append(
                    LoadItem(_tier(account.tier, self._cfg), onboarding=onboarding)
                )
                arr[account.csm_id] += Decimal(account.arr or 0)
            if account.backup_csm_id is not None:
                items[account.backup_csm_id].append(LoadItem("key", backup=True))
        return [
            replace(
                c,
                load_units=self._load(c.id, items.get(c.id)),
                recent_onboardings=self._recent.get(c.id, 0),
                arr=arr.get(c.id, Decimal(0)),
            )
            for c in self.roster
        ]

    def _load(self, csm_id: int, held: Sequence[LoadItem] | None) -> float:
        stored = self._units.get(csm_id, 0.0)
        return stored + load_units(held, self._cfg) if held else stored

    def count_plan(self, csm_id: int | None, started_on: date) -> None:
        """A plan created for ``csm_id`` (a new onboarding of theirs if recent enough)."""
        if csm_id is not None and started_on >= self._since:
            self._recent[csm_id] = self._recent.get(csm_id, 0) + 1


def csm_candidates(
    session: Session,
    *,
    today: date,
    exclude_account_id: int | None = None,
    exclude_account_ids: Collection[int] = (),
    cfg: ScoringConfig = DEFAULT_CONFIG,
) -> list[CsmCandidate]:
    """Every CSM with their current load over their accounts except ``exclude_account_id`` /
    ``exclude_account_ids`` (the accounts being assigned are counted with their new units)."""
    excluded = set(exclude_account_ids)
    if exclude_account_id is not None:
        excluded.add(exclude_account_id)
    return CsmLoads.read(session, today=today, exclude_account_ids=excluded, cfg=cfg).candidates()


def assign_account_csm(
    session: Session,
    *,
    account_id: int,
    tier: Tier,
    today: date,
    preassigned_email: str | None = None,
    onboarding: bool = True,
    apply: bool = True,
    now: datetime | None = None,
    cfg: ScoringConfig = DEFAULT_CONFIG,
    loads: CsmLoads | None = None,
) -> Assignment:
    """domain.md 8.3 for one account, in the caller's transaction.

    With ``apply`` the chosen CSM and backup (when they are CSM rows) are written to the
    account, stamped as CS-side writes (``csm_id``, ``backup_csm_id``) so the push sends them.
    A choice without a CSM row (a configured owner e-mail, or nobody) leaves the column as it is;
    the caller acts on the flags (``csm_capacity_exceeded``: notice the CS manager).

    ``loads``: loads read once for a batch that holds this account (:class:`CsmLoads`), instead
    of reading them now; the account is then taken from it, already locked by the caller.
    """
    account = loads.held.get(account_id) if loads is not None else None
    if account is None:
        account = session.get(Account, account_id, with_for_update=True)
    if account is None:
        raise LookupError(f"account {account_id} not found")
    request = AssignmentRequest(
        tier=tier,
        today=today,
        current_csm_id=account.csm_id,
        current_backup_csm_id=account.backup_csm_id,
        preassigned_email=preassigned_email,
        arr=account.arr,
        onboarding=onboarding,
    )
    if loads is not None:
        candidates = loads.candidates(exclude_account_id=account_id)
    else:
        candidates = csm_candidates(session, today=today, exclude_account_id=account_id, cfg=cfg)
    result = assign_csm(request, candidates, cfg)
    if apply:
        changed: list[str] = []
        if result.csm.csm_id is not None and account.csm_id != result.csm.csm_id:
            account.csm_id = result.csm.csm_id
            changed.append("csm_id")
        if (
            result.backup is not None
            and result.backup.csm_id is not None
            and account.backup_csm_id != result.backup.csm_id
        ):
            account.backup_csm_id = result.backup.csm_id
            changed.append("backup_csm_id")
        stamp_cs_change(account, changed, at=(now or datetime.now(UTC)))
    return result


CSM_REASSIGNED = "csm_reassigned"  # account_events.kind


def reassign_csm_accounts(
    session: Session,
    csm_id: int,
    *,
    today: date,
    now: datetime | None = None,
    cfg: ScoringConfig = DEFAULT_CONFIG,
) -> list[Reassignment]:
    """8.3 step 7 in the caller's transaction: every live account ``csm_id`` owns or backs up
    gets its owner(s) from :func:`app.domain.csm_assignment.reassign_accounts`.

    Per account whose owner changed: ``csm_id``, ``backup_csm_id`` and ``csm_email`` written and
    stamped (the push sends ``csm_email``), the assignment's flags added, the open tasks of its
    active onboarding plan that went to the leaver moved to the new CSM (and the plan's CSM),
    and a ``csm_reassigned`` account event with the old and new owners, the reasons and the
    ``announce_csm_change`` task (the new CSM tells the customer, domain.md 8.3 step 7).
    Returns the reassignments (the caller pushes the accounts after its commit). Running it
    again changes nothing: the leaver holds no account any more.
    """
    now = (now or datetime.now(UTC)).astimezone(UTC)
    leaver = session.get(Csm, csm_id)
    if leaver is None:
        raise LookupError(f"csm {csm_id} not found")
    accounts = list(
        session.scalars(
            select(Account)
            .where(
                Account.deleted_at.is_(None),
                (Account.csm_id == csm_id) | (Account.backup_csm_id == csm_id),
            )
            .order_by(Account.id)
            .with_for_update()
        )
    )
    if not accounts:
        return []
    held = [
        HeldAccount(
            account_id=a.id,
            tier=_tier(a.tier, cfg),
            csm_id=a.csm_id,
            backup_csm_id=a.backup_csm_id,
            onboarding=a.lifecycle_stage == "onboarding",
            arr=a.arr,
        )
        for a in accounts
    ]
    candidates = csm_candidates(
        session, today=today, exclude_account_ids=[a.id for a in accounts], cfg=cfg
    )
    emails = {c.id: c.email for c in candidates}
    results = reassign_accounts(csm_id, held, candidates, today=today, cfg=cfg)
    by_id = {a.id: a for a in accounts}
    for r in results:
        account = by_id[r.account_id]
        if not (r.csm_changed or r.backup_changed):
            continue
        before = (account.csm_id, account.backup_csm_id, account.csm_email)
        changed: list[str] = []
        if r.csm_changed:
            account.csm_id = r.csm_id
            changed.append("csm_id")
            email = emails.get(r.csm_id) if r.csm_id is not None else r.assignment.csm.email
            if account.csm_email != email:
                account.csm_email = email
                changed.append("csm_email")
            _move_open_tasks(session, account.id, leaver.email, r.csm_id, email)
        if r.backup_changed:
            account.backup_csm_id = r.backup_csm_id
            changed.append("backup_csm_id")
            backup_email = emails.get(r.backup_csm_id) if r.backup_csm_id else None
            _move_open_tasks(session, account.id, leaver.email, None, backup_email, backup=True)
        flags = [f for f in r.assignment.flags if f not in (account.flags or [])]
        if flags:
            account.flags = [*(account.flags or []), *flags]
        stamp_cs_change(account, changed, at=now)
        backup = r.assignment.backup
        session.add(
            AccountEvent(
                account_id=account.id,
                kind=CSM_REASSIGNED,
                payload={
                    "leaving_csm": leaver.email,
                    "csm_before": emails.get(before[0]) if before[0] else before[2],
                    "csm": account.csm_email,
                    "csm_reason": r.assignment.csm.reason,
                    "backup_before": emails.get(before[1]) if before[1] else None,
                    "backup": emails.get(account.backup_csm_id)
                    if account.backup_csm_id
                    else (backup.email if backup else None),
                    "flags": list(r.assignment.flags),
                    "task": {
                        "code": ANNOUNCE_CSM_CHANGE,
                        "due_on": r.announce_on.isoformat(),
                        "assignee": account.csm_email,
                    },
                },
                occurred_at=now,
            )
        )
    session.flush()
    return results


def _move_open_tasks(
    session: Session,
    account_id: int,
    leaver_email: str,
    new_csm_id: int | None,
    new_email: str | None,
    *,
    backup: bool = False,
) -> None:
    """The leaver's open tasks in the account's active plans go to the new owner; the plan's
    CSM follows the primary."""
    plans = list(
        session.scalars(
            select(OnboardingPlan).where(
                OnboardingPlan.account_id == account_id, OnboardingPlan.status == "active"
            )
        )
    )
    for plan in plans:
        if not backup:
            plan.csm_id = new_csm_id
        for task in session.scalars(
            select(OnboardingTask).where(
                OnboardingTask.plan_id == plan.id,
                OnboardingTask.status == "open",
                OnboardingTask.assignee == leaver_email,
            )
        ):
            task.assignee = new_email


__all__ = [
    "CSV_COLUMNS",
    "CsmConflict",
    "CsmFields",
    "CsmLoads",
    "CsmPatch",
    "ImportResult",
    "RowError",
    "assign_account_csm",
    "create_csm",
    "csm_candidates",
    "csm_dict",
    "import_csms",
    "parse_csm_rows",
    "reassign_csm_accounts",
    "update_csm",
]

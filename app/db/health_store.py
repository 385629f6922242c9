"""The recompute's reads and writes, set-based (issue #18 item 6).

* :func:`due_account_ids`: which accounts need a recompute (see docs/recompute.md).
* :func:`load_chunk`: one ``SELECT`` per table for a chunk of accounts, aggregated per account by
  the database where it can (ticket and touchpoint counts, open invoices, success criteria), into
  :class:`~app.domain.recompute.AccountFacts`.
* :func:`write_chunk`: the chunk's outcomes in bulk, in the caller's transaction: the
  ``accounts`` columns (changed columns stamped as CS changes, for the push), the daily
  ``health_snapshots`` rows (upserted on account and day) and the ``account_events`` rows.
  SQLite: ``executemany``; PostgreSQL: ``COPY`` into a staging table, then one statement.

Writes go through the driver with SQLAlchemy's own bind processors (as :mod:`app.db.bulk`
does), so values are stored exactly as the ORM stores them, without its per-row cost; JSON
documents are encoded by :func:`app.db.types.json_text` (orjson), which reads back as the same
values. The changed columns' stamps are merged into the stored ``field_stamps`` by the
database, so a CS-side edit committed while a chunk is computed keeps its stamp. A recompute
never moves ``updated_at``: that column tells the selection that an input changed.
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from functools import cache
from itertools import count
from typing import Any

import orjson
from sqlalchemy import (
    ColumnElement,
    Connection,
    Table,
    and_,
    case,
    func,
    or_,
    select,
    union,
)
from sqlalchemy import types as sqltypes
from sqlalchemy.engine import Dialect

from app.db.base import Base
from app.db.models import (
    Account,
    AccountEvent,
    Contact,
    HealthSnapshot,
    Invoice,
    NpsResponse,
    OnboardingPlan,
    OnboardingTask,
    Opportunity,
    SuccessCriterion,
    SupportTicket,
    SurveyResponse,
    Touchpoint,
    UsageSnapshot,
)
from app.db.types import UTCDateTime, json_text
from app.domain.config import ScoringConfig
from app.domain.recompute import (
    OUTPUT_COLUMNS,
    AccountFacts,
    AccountOutcome,
    ContactRow,
    Feeds,
    Opp,
    Task,
    TicketAggregate,
    TouchAggregate,
    UsageRow,
    drop_window,
)
from app.domain.signals import NpsAnswer, SnapshotPoint, SurveyAnswer

Processor = Callable[[Any], Any]
_stages = count(1)

#: Columns of ``accounts`` the recompute reads besides its outputs. Not ``field_stamps`` nor
#: ``cs_changed_at``: the write merges stamps in the database (:func:`_update_changed`).
INPUT_COLUMNS: tuple[str, ...] = (
    "id",
    "tier_override",
    "tier_override_reason",
    "tier_override_until",
    "arr",
    "mrr",
    "potential_arr",
    "strategic_account",
    "licensed_seats",
    "customer_since_on",
    "contract_start_on",
    "contract_end_on",
    "auto_renew",
    "churned_at",
    "churn_reason",
)
#: What :func:`load_chunk` reads of ``accounts`` into :attr:`AccountFacts.stored` (``id`` first).
ACCOUNT_COLUMNS: tuple[str, ...] = tuple(dict.fromkeys((*INPUT_COLUMNS, *OUTPUT_COLUMNS)))


def day_start(day: date) -> datetime:
    return datetime.combine(day, time.min, tzinfo=UTC)


# --------------------------------------------------------------------------------------------
# selection
# --------------------------------------------------------------------------------------------


def due_condition(as_of: date) -> ColumnElement[bool]:
    """An account is due by its own row when (docs/recompute.md): it was never computed; it was
    last computed on an earlier day (trend, staleness and days to renewal move with the date); a
    signal for it arrived since (``signals_changed_at``); or the account itself changed since
    (``updated_at``). Its opportunities, contacts, success criteria and onboarding plans and
    tasks are :func:`changed_children`."""
    a = Account.__table__.c
    at = a.health_computed_at
    return or_(
        at.is_(None),
        at < day_start(as_of),
        a.signals_changed_at > at,
        a.updated_at > at,
    )


def changed_children(as_of: date) -> Any:
    """The live accounts computed today (the others are due anyway) one of whose opportunities,
    contacts, success criteria, onboarding plans or onboarding tasks changed since.

    One scan of each child table for the rows changed today, joined to their accounts: a
    per-account ``EXISTS`` probe into five tables, ORed with the account's own conditions, cost
    PostgreSQL a correlated sub-plan per account (and, on a table the planner thinks large, a
    JIT compilation of a second), 1.2 s at 20,000 accounts with nothing due.
    """
    a = Account.__table__.c
    start = day_start(as_of)
    computed_today = and_(a.deleted_at.is_(None), a.health_computed_at >= start)

    def changed(table: Any) -> Any:
        c = table.c
        return (
            select(c.account_id)
            .join_from(table, Account, a.id == c.account_id)
            .where(c.updated_at >= start, computed_today, c.updated_at > a.health_computed_at)
        )

    p, pt = OnboardingPlan.__table__.c, OnboardingTask.__table__.c
    tasks = (
        select(p.account_id)
        .join_from(OnboardingTask, OnboardingPlan, p.id == pt.plan_id)
        .join(Account, a.id == p.account_id)
        .where(pt.updated_at >= start, computed_today, pt.updated_at > a.health_computed_at)
    )
    return union(
        changed(Opportunity.__table__),
        changed(Contact.__table__),
        changed(SuccessCriterion.__table__),
        changed(OnboardingPlan.__table__),
        tasks,
    )


def due_account_ids(
    conn: Connection,
    as_of: date,
    *,
    only: Sequence[int] | None = None,
    everything: bool = False,
) -> list[int]:
    """Live accounts to recompute, by id: all of them with ``everything``, else the due ones
    (:func:`due_condition`, :func:`changed_children`); ``only`` narrows to those ids."""
    a = Account.__table__.c
    stmt = select(a.id).where(a.deleted_at.is_(None))
    if only is not None:
        stmt = stmt.where(a.id.in_(list(only)))
    if everything:
        return list(conn.scalars(stmt.order_by(a.id)))
    due = set(conn.scalars(stmt.where(due_condition(as_of))))
    children = set(conn.scalars(changed_children(as_of)))
    if only is not None:
        children.intersection_update(only)
    return sorted(due | children)


def live_account_ids(conn: Connection, ids: Sequence[int]) -> list[int]:
    """Which of ``ids`` are live accounts (for ``--account``: an unknown id is an input error)."""
    a = Account.__table__.c
    return list(conn.scalars(select(a.id).where(a.id.in_(list(ids)), a.deleted_at.is_(None))))


def load_feeds(conn: Connection) -> Feeds:
    """Whether the support and touchpoint feeds exist at all (one indexed probe each)."""
    return Feeds(
        support=conn.scalar(select(SupportTicket.id).limit(1)) is not None,
        touchpoints=conn.scalar(select(Touchpoint.id).limit(1)) is not None,
    )


# --------------------------------------------------------------------------------------------
# reads: one SELECT per table per chunk
# --------------------------------------------------------------------------------------------


def _of_chunk(column: Any, ids: Sequence[int]) -> ColumnElement[bool]:
    """``column`` in the chunk: a range when the ids are consecutive (a full recompute), else a
    list."""
    if ids and ids[-1] - ids[0] + 1 == len(ids):
        return and_(column >= ids[0], column <= ids[-1])
    return column.in_(list(ids))  # type: ignore[no-any-return]


def _rows(conn: Connection, stmt: Any) -> Iterator[Any]:
    """The driver's own rows of ``stmt``: parameters are bound with SQLAlchemy's types, but
    results skip its per-value processing (a third of a chunk's read on SQLite). The loops
    below convert what they read with :func:`_day`, :func:`_json` and ``Decimal``."""
    result = conn.execute(stmt)
    try:
        return iter(result.cursor.fetchall() if result.cursor is not None else ())
    finally:
        result.close()


def _day(value: Any) -> date | None:
    """A date from a driver value: SQLite gives text (``2026-03-02`` or ``2026-03-02 08:15:30``),
    PostgreSQL ``date`` or aware ``datetime`` (the UTC day either way: stored in UTC)."""
    if value is None:
        return None
    if isinstance(value, str):
        key = value[:10]
        day = _DAYS.get(key)
        if day is None:
            if len(_DAYS) > 100_000:
                _DAYS.clear()
            day = _DAYS[key] = date.fromisoformat(key)
        return day
    if isinstance(value, datetime):
        return value.astimezone(UTC).date()
    if isinstance(value, date):
        return value
    raise TypeError(f"not a date: {value!r}")


#: SQLite's day texts seen, parsed once: a chunk reads a few hundred thousand dates of a few
#: hundred distinct days.
_DAYS: dict[str, date] = {}


def _json(value: Any) -> Any:
    """A JSON column's driver value: SQLite gives text, psycopg the decoded value. orjson
    first; ``json.loads`` for what only it reads (``NaN``, which ``json.dumps`` wrote)."""
    if not isinstance(value, str):
        return value
    try:
        return orjson.loads(value)
    except orjson.JSONDecodeError:
        return json.loads(value)


def _utc(value: datetime) -> datetime:
    return value.astimezone(UTC)


def _last_value(convert: Processor) -> Processor:
    """``convert`` remembering its last input by equality: a chunk's accounts share many
    values (the day a stage was entered, a contract date, an ARR band). Only for converters
    whose results are immutable."""
    last: list[Any] = [object(), None]

    def cached(value: Any) -> Any:
        if value != last[0]:
            last[0] = value
            last[1] = convert(value)
        return last[1]

    return cached


@cache
def _account_converters(dialect: Dialect) -> tuple[tuple[int, Processor], ...]:
    """Which of :data:`ACCOUNT_COLUMNS` need converting from the driver's value, and how, to
    give what the ORM gives: on SQLite SQLAlchemy's own result processors (text to dates and
    aware datetimes, floats to 2-place ``Decimal``, 0/1 to booleans); on PostgreSQL the
    timestamps to UTC. JSON columns by :func:`_json`."""
    table = Account.__table__
    converters: list[tuple[int, Processor]] = []
    for i, name in enumerate(ACCOUNT_COLUMNS):
        column_type = table.c[name].type
        impl = column_type.dialect_impl(dialect)
        if isinstance(impl, sqltypes.JSON):
            converters.append((i, _json))
        elif dialect.name == "sqlite":
            proc = impl.result_processor(dialect, None)
            if proc is not None:
                converters.append((i, _last_value(proc)))
        elif isinstance(column_type, UTCDateTime):
            converters.append((i, _last_value(_utc)))
    return tuple(converters)


def _decimal(value: Any) -> Decimal | None:
    if value is None or isinstance(value, Decimal):
        return value
    return Decimal(str(value))  # SQLite gives NUMERIC as float


def _flag(condition: ColumnElement[bool]) -> ColumnElement[int]:
    return case((condition, 1), else_=0)


def load_chunk(
    conn: Connection, ids: Sequence[int], as_of: date, cfg: ScoringConfig
) -> list[AccountFacts]:
    """The facts of the accounts ``ids`` (sorted), as of the end of ``as_of``."""
    a = Account.__table__.c
    # The driver's rows, converted where the rules need it (:func:`_account_converters`):
    # SQLAlchemy's row mappings and per-value processing were a quarter of the read.
    converters = _account_converters(conn.dialect)
    facts: dict[int, AccountFacts] = {}
    for r in _rows(conn, select(*[a[c] for c in ACCOUNT_COLUMNS]).where(_of_chunk(a.id, ids))):
        values = list(r)
        for at, convert in converters:
            value = values[at]
            if value is not None:
                values[at] = convert(value)
        facts[values[0]] = AccountFacts(
            id=values[0], stored=dict(zip(ACCOUNT_COLUMNS, values, strict=True))
        )
    if not facts:
        return []
    end = day_start(as_of + timedelta(days=1))  # what happened on as_of counts

    def ago(days: int) -> datetime:
        return day_start(as_of - timedelta(days=days - 1))  # "within N days" includes today

    # opportunities
    o = Opportunity.__table__.c
    for r in _rows(
        conn,
        select(
            o.account_id,
            o.type,
            o.is_closed,
            o.is_won,
            o.amount,
            o.close_on,
            o.term_start_on,
            o.contract_term_months,
        ).where(_of_chunk(o.account_id, ids), o.deleted_at.is_(None)),
    ):
        f = facts.get(r[0])
        if f is not None:
            f.opportunities.append(
                Opp(
                    r[1],
                    bool(r[2]),
                    bool(r[3]),
                    _decimal(r[4]),
                    _day(r[5]),
                    _day(r[6]),
                    r[7],
                )
            )

    # usage: the latest snapshots, far enough back for the one ~30 days before the latest; of
    # the earlier ones only those the drop rule may compare with (``drop_window``) become rows.
    u = UsageSnapshot.__table__.c
    window = cfg.max_age_days.usage + cfg.trend.days + cfg.trend.tolerance_days
    usage_rows: dict[int, list[Any]] = defaultdict(list)
    for r in _rows(
        conn,
        select(
            u.account_id,
            u.observed_on,
            u.active_users_30d,
            u.logins_30d,
            u.licensed_seats,
            u.key_features_used_30d,
            u.key_features_defined,
            u.last_login_at,
        )
        .where(
            _of_chunk(u.account_id, ids),
            u.observed_on >= as_of - timedelta(days=window),
            u.observed_on <= as_of,
        )
        .order_by(u.account_id, u.observed_on),
    ):
        usage_rows[r[0]].append(r)
    for account_id, rs in usage_rows.items():
        f = facts.get(account_id)
        if f is None:
            continue
        latest = rs[-1]
        latest_on = _day(latest[1]) or as_of
        lo, hi = drop_window(latest_on, cfg)
        for r in rs[:-1]:
            on = _day(r[1]) or as_of
            if lo <= on <= hi:
                f.usage.append(UsageRow(on, r[2], r[3], r[4], r[5], r[6], _day(r[7])))
        f.usage.append(
            UsageRow(
                latest_on, latest[2], latest[3], latest[4], latest[5], latest[6], _day(latest[7])
            )
        )

    # contacts
    k = Contact.__table__.c
    roles_of: dict[int, tuple[str, ...]] = {}
    for r in _rows(
        conn,
        select(k.account_id, k.id, k.roles, k.active, k.left_on).where(
            _of_chunk(k.account_id, ids), k.deleted_at.is_(None)
        ),
    ):
        f = facts.get(r[0])
        if f is not None:
            roles = tuple(_json(r[2]) or ())
            roles_of[r[1]] = roles
            f.contacts.append(ContactRow(r[1], roles, bool(r[3]), _day(r[4])))

    # touchpoints, per account and contact
    t = Touchpoint.__table__.c
    # A planned meeting is ``scheduled`` (attended: ``two_way``); a CSM e-mail is an e-mail not
    # from the customer (``direction`` ``out`` or not given), answered when ``two_way``.
    meeting = t.scheduled.is_(True)
    email = and_(t.kind == "email", or_(t.direction.is_(None), t.direction != "in"))
    two_way = t.two_way.is_(True)
    d180, d90 = ago(180), ago(90)
    for r in _rows(
        conn,
        select(
            t.account_id,
            t.contact_id,
            func.max(case((two_way, t.occurred_at))),
            func.sum(_flag(and_(meeting, t.occurred_at >= d180))),
            func.sum(_flag(and_(meeting, two_way, t.occurred_at >= d180))),
            func.sum(_flag(and_(email, t.occurred_at >= d90))),
            func.sum(_flag(and_(email, two_way, t.occurred_at >= d90))),
        )
        .where(_of_chunk(t.account_id, ids), t.occurred_at < end)
        .group_by(t.account_id, t.contact_id),
    ):
        f = facts.get(r[0])
        if f is not None:
            f.touches.append(
                TouchAggregate(
                    r[1],
                    _day(r[2]),
                    int(r[3] or 0),
                    int(r[4] or 0),
                    int(r[5] or 0),
                    int(r[6] or 0),
                )
            )

    # support tickets, aggregated
    s = SupportTicket.__table__.c
    d30, d120 = ago(30), ago(120)
    escalated = s.escalated.is_(True)
    urgent_open = and_(s.closed_at.is_(None), or_(s.priority == "P1", escalated))
    closed_90 = and_(s.closed_at >= d90, s.first_contact_resolved.is_not(None))
    for r in _rows(
        conn,
        select(
            s.account_id,
            func.sum(_flag(s.opened_at >= d30)),
            func.sum(_flag(and_(s.opened_at >= d120, s.opened_at < d30))),
            func.sum(_flag(s.opened_at >= d90)),
            func.sum(_flag(closed_90)),
            func.sum(_flag(and_(closed_90, s.first_contact_resolved.is_(True)))),
            func.sum(_flag(and_(escalated, s.opened_at >= d90))),
            func.min(case((urgent_open, s.opened_at))),
            func.max(s.opened_at),
        )
        .where(_of_chunk(s.account_id, ids), s.opened_at < end)
        .group_by(s.account_id),
    ):
        f = facts.get(r[0])
        if f is not None:
            n30, prior, n90, closed, fcr, escalations = (int(v or 0) for v in r[1:7])
            f.tickets = TicketAggregate(
                tickets_30d=n30,
                tickets_prior_90d=prior,
                tickets_90d=n90,
                closed_90d_with_fcr=closed,
                fcr_90d=fcr,
                escalations_90d=escalations,
                oldest_open_p1_on=_day(r[7]),
                last_ticket_on=_day(r[8]),
            )

    # NPS answers (all of them up to as_of: the stale flag needs the old ones too)
    n = NpsResponse.__table__.c
    key_roles = set(cfg.sentiment.key_roles)
    for r in _rows(
        conn,
        select(n.account_id, n.contact_id, n.respondent_role, n.score, n.responded_on).where(
            _of_chunk(n.account_id, ids), n.responded_on <= as_of
        ),
    ):
        f = facts.get(r[0])
        if f is not None:
            role = r[2]
            if role is None and r[1] is not None:
                role = next((x for x in roles_of.get(r[1], ()) if x in key_roles), None)
            f.nps.append(
                NpsAnswer(int(r[3]), _day(r[4]) or as_of, None if r[1] is None else str(r[1]), role)
            )

    # CSAT / CES answers
    v = SurveyResponse.__table__.c
    for r in _rows(
        conn,
        select(v.account_id, v.kind, v.score, v.responded_on, v.scale_min, v.scale_max).where(
            _of_chunk(v.account_id, ids), v.responded_on <= as_of
        ),
    ):
        f = facts.get(r[0])
        if f is not None:
            f.surveys.append(SurveyAnswer(r[1], float(r[2]), _day(r[3]) or as_of, r[4], r[5]))

    # invoices: does the account have any, and its oldest open due date
    i = Invoice.__table__.c
    for r in _rows(
        conn,
        select(
            i.account_id,
            func.count(),
            func.min(case((i.paid_on.is_(None), i.due_on))),
            func.max(i.received_at),
        )
        .where(_of_chunk(i.account_id, ids))
        .group_by(i.account_id),
    ):
        f = facts.get(r[0])
        if f is not None:
            f.invoices_total = int(r[1])
            f.oldest_open_invoice_due_on = _day(r[2])
            f.billing_received_on = _day(r[3])

    # success criteria, counted per status
    c = SuccessCriterion.__table__.c
    for r in _rows(
        conn,
        select(c.account_id, c.status, func.count())
        .where(_of_chunk(c.account_id, ids))
        .group_by(c.account_id, c.status),
    ):
        f = facts.get(r[0])
        if f is not None:
            f.criteria[r[1]] = int(r[2])

    # the active onboarding plan's tasks (the latest plan of the account)
    p, pt = OnboardingPlan.__table__.c, OnboardingTask.__table__.c
    plans: dict[int, tuple[date, int]] = {}
    tasks: dict[int, list[Task]] = defaultdict(list)
    for r in _rows(
        conn,
        select(p.account_id, p.id, p.started_on, pt.code, pt.due_on, pt.done_on)
        .join_from(OnboardingPlan, OnboardingTask, pt.plan_id == p.id)
        .where(_of_chunk(p.account_id, ids), p.status == "active"),
    ):
        started = _day(r[2]) or date.min
        if r[0] not in plans or (started, r[1]) > plans[r[0]]:
            plans[r[0]] = (started, r[1])
        tasks[r[1]].append(Task(r[3], _day(r[4]) or as_of, _day(r[5])))
    for account_id, (_started, plan_id) in plans.items():
        if account_id in facts:
            facts[account_id].onboarding_tasks = tasks[plan_id]

    # the snapshots the trend compares with (23-37 days ago)
    h = HealthSnapshot.__table__.c
    lo = as_of - timedelta(days=cfg.trend.days + cfg.trend.tolerance_days)
    hi = as_of - timedelta(days=max(1, cfg.trend.days - cfg.trend.tolerance_days))
    nearest: dict[int, tuple[int, date]] = {}  # the trend's snapshot: distance, older first
    for r in _rows(
        conn,
        select(
            h.account_id,
            h.computed_on,
            h.score,
            case((a.lifecycle_stage == "adoption", h.components)),
        )
        .join_from(HealthSnapshot, Account, a.id == h.account_id)
        .where(_of_chunk(h.account_id, ids), h.computed_on >= lo, h.computed_on <= hi),
    ):
        f = facts.get(r[0])
        if f is None:
            continue
        on = _day(r[1]) or as_of
        f.history.append(SnapshotPoint(on, r[2]))
        if r[3] is not None:
            # The usage of the snapshot closest to a month ago: the earlier of the two monthly
            # points the adoption exit compares (domain.md 2).
            key = (abs((as_of - on).days - cfg.trend.days), on)
            if r[0] not in nearest or key < nearest[r[0]]:
                nearest[r[0]] = key
                f.previous_usage = _usage_value(r[3])
    return [facts[i] for i in sorted(facts)]


def _usage_value(doc: Any) -> float | None:
    """The usage component's value in a snapshot's ``components`` document."""
    doc = _json(doc)
    try:
        value = doc["components"]["usage"]["value"]
    except (KeyError, TypeError):
        return None
    return float(value) if isinstance(value, int | float) else None


# --------------------------------------------------------------------------------------------
# writes: in bulk, in the caller's transaction
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Plan:
    table: Table
    columns: tuple[str, ...]
    processors: tuple[Processor | None, ...]


@cache
def _plan(dialect_name: str, table_name: str, columns: tuple[str, ...], dialect: Dialect) -> _Plan:
    """The bind processors of ``columns``: SQLAlchemy's own, but :func:`json_text` for JSON
    columns (``json.dumps`` was half of a chunk's write)."""
    table = Base.metadata.tables[table_name]
    processors = tuple(
        json_text
        if isinstance(table.c[name].type.dialect_impl(dialect), sqltypes.JSON)
        else table.c[name].type.dialect_impl(dialect).bind_processor(dialect)
        for name in columns
    )
    return _Plan(table, columns, processors)


def _memo(proc: Processor) -> Processor:
    """``proc`` remembering its last value by identity: a chunk's rows share the same
    ``computed_at``, ``stamped_at`` and day objects, encoded once instead of once a row."""
    last: list[Any] = [object(), None]

    def encode(value: Any) -> Any:
        if value is not last[0]:
            last[0] = value
            last[1] = proc(value)
        return last[1]

    return encode


def _records(plan: _Plan, rows: Iterable[Mapping[str, Any]]) -> list[tuple[Any, ...]]:
    """The rows as driver tuples in ``plan.columns`` order, bound as the ORM binds them. Each
    processor remembers its last value (:func:`_memo`): a chunk's rows share many value
    objects (``computed_at``, ``stamped_at``, the day, a stage's ``entered_at``, a set of
    stamps)."""
    getters = [
        (name, None if proc is None else _memo(proc))
        for name, proc in zip(plan.columns, plan.processors, strict=True)
    ]
    plain = all(proc is None for _name, proc in getters)
    if plain:
        names = plan.columns
        return [tuple([row[name] for name in names]) for row in rows]
    return [
        tuple([row[name] if proc is None else proc(row[name]) for name, proc in getters])
        for row in rows
    ]


def _driver(conn: Connection) -> Any:
    driver = conn.connection.driver_connection
    assert driver is not None
    return driver


def _bind(conn: Connection, table: str, column: str, value: Any) -> Any:
    """One value as the driver takes it, bound by ``table.column``'s type."""
    proc = _plan(conn.dialect.name, table, (column,), conn.dialect).processors[0]
    return value if proc is None else proc(value)


def _stage(cursor: Any, plan: _Plan, records: list[tuple[Any, ...]]) -> str:
    """PostgreSQL: COPY the records into a temporary table shaped like the target's columns."""
    stage = f"crmsync_recompute_{plan.table.name}_{next(_stages)}"
    cols = ", ".join(plan.columns)
    cursor.execute(
        f"CREATE TEMPORARY TABLE {stage} ON COMMIT DROP AS "
        f"SELECT {cols} FROM {plan.table.name} WITH NO DATA"
    )
    _copy(cursor, stage, cols, records)
    return stage


#: What :func:`_update_changed` writes per account: its id, every output column, and the stamps
#: of the changed ones (merged into ``field_stamps`` by the database).
_CHANGED_ROW: tuple[str, ...] = ("id", *OUTPUT_COLUMNS, "field_stamps")


def _update_changed(
    conn: Connection,
    rows: Sequence[Mapping[str, Any]],
    *,
    computed_at: datetime,
    stamped_at: datetime,
) -> None:
    """The accounts with a changed output column: every output column, ``health_computed_at``,
    and the changed columns' stamps merged into the stored ``field_stamps`` (``json_patch``,
    JSONB ``||``) with ``cs_changed_at`` moved forward only, both by the database.

    Merging in the statement keeps a stamp a CS-side write (``app.db.cs_writes``) committed
    after the chunk was read: merged in Python from the stamps read at the chunk's start, it
    was overwritten (a lost update, and the edit was never pushed).
    """
    if not rows:
        return
    plan = _plan(conn.dialect.name, "accounts", _CHANGED_ROW, conn.dialect)
    records = _records(plan, rows)
    computed = _bind(conn, "accounts", "health_computed_at", computed_at)
    stamped = _bind(conn, "accounts", "cs_changed_at", stamped_at)
    outputs = ", ".join(f"{c} = s.{c}" for c in OUTPUT_COLUMNS)
    driver = _driver(conn)
    if conn.dialect.name == "postgresql":
        with driver.cursor() as cursor:
            stage = _stage(cursor, plan, records)
            cursor.execute(
                f"UPDATE accounts AS a SET {outputs}, "
                "field_stamps = a.field_stamps || s.field_stamps, "
                "cs_changed_at = GREATEST(a.cs_changed_at, %(stamped)s), "
                f"health_computed_at = %(computed)s FROM {stage} AS s WHERE a.id = s.id "
                # the chunk's id range: the join reads those accounts by their index
                # instead of hashing every account of the table for each chunk
                "AND a.id BETWEEN %(first)s AND %(last)s",
                {
                    "stamped": stamped,
                    "computed": computed,
                    "first": min(r[0] for r in records),
                    "last": max(r[0] for r in records),
                },
            )
            cursor.execute(f"DROP TABLE {stage}")
        return
    # SQLite: numbered parameters, so the chunk's two shared values are bound once a row.
    n = len(OUTPUT_COLUMNS)
    sets = ", ".join(f"{c} = ?{i}" for i, c in enumerate(OUTPUT_COLUMNS, 2))
    cursor = driver.cursor()
    try:
        cursor.executemany(
            f"UPDATE accounts SET {sets}, field_stamps = json_patch(field_stamps, ?{n + 2}), "
            # stored as fixed-width UTC text (``UTCDateTime``): compared as text
            f"cs_changed_at = CASE WHEN cs_changed_at >= ?{n + 3} THEN cs_changed_at "
            f"ELSE ?{n + 3} END, health_computed_at = ?{n + 4} WHERE id = ?1",
            [(*r, stamped, computed) for r in records],
        )
    finally:
        cursor.close()


def _update_unchanged(conn: Connection, ids: Sequence[int], computed_at: datetime) -> None:
    """The accounts with nothing changed: only ``health_computed_at``, the same for all, in one
    statement over the list of ids."""
    if not ids:
        return
    computed = _bind(conn, "accounts", "health_computed_at", computed_at)
    driver = _driver(conn)
    if conn.dialect.name == "postgresql":
        with driver.cursor() as cursor:
            cursor.execute(
                "UPDATE accounts SET health_computed_at = %s WHERE id = ANY(%s)",
                (computed, list(ids)),
            )
        return
    cursor = driver.cursor()
    try:
        cursor.execute(
            "UPDATE accounts SET health_computed_at = ? "
            "WHERE id IN (SELECT value FROM json_each(?))",
            (computed, json_text(list(ids))),
        )
    finally:
        cursor.close()


_UNIQUE_VIOLATION = "23505"  # PostgreSQL's SQLSTATE


def _copy(cursor: Any, table: str, cols: str, records: list[tuple[Any, ...]]) -> None:
    with cursor.copy(f"COPY {table} ({cols}) FROM STDIN") as copy:
        for record in records:
            copy.write_row(record)


def _any_key_exists(
    cursor: Any, plan: _Plan, key: tuple[str, ...], records: list[tuple[Any, ...]]
) -> bool:
    """PostgreSQL: whether ``plan.table`` has a row whose ``key`` columns each take one of the
    records' values (exact for a chunk's snapshots: one day, the chunk's accounts); one probe
    of the key's unique index."""
    where = " AND ".join(f"{c} = ANY(%s)" for c in key)
    at = [plan.columns.index(c) for c in key]
    values = [list({record[i] for record in records}) for i in at]
    cursor.execute(f"SELECT EXISTS (SELECT 1 FROM {plan.table.name} WHERE {where})", values)
    row = cursor.fetchone()
    return bool(row and row[0])


def _insert(
    conn: Connection,
    table: str,
    columns: tuple[str, ...],
    rows: Sequence[Mapping[str, Any]],
    conflict: tuple[str, ...] = (),
) -> None:
    """Insert ``rows``; with ``conflict``, an upsert on those columns updating the others."""
    if not rows:
        return
    plan = _plan(conn.dialect.name, table, columns, conn.dialect)
    records = _records(plan, rows)
    cols = ", ".join(columns)
    on_conflict = ""
    if conflict:
        sets = ", ".join(f"{c} = excluded.{c}" for c in columns if c not in conflict)
        on_conflict = f" ON CONFLICT ({', '.join(conflict)}) DO UPDATE SET {sets}"
    driver = _driver(conn)
    if conn.dialect.name == "postgresql":
        with driver.cursor() as cursor:
            if not conflict:
                _copy(cursor, table, cols, records)
                return
            if not _any_key_exists(cursor, plan, conflict, records):
                # The day's first write of these keys (a daily recompute's usual case): COPY
                # straight into the table, not into a staging table and then an upsert from
                # it (that second pass was a fifth of the write). A row written meanwhile
                # (only a run that lost its lease could) makes it the staged upsert after all.
                cursor.execute("SAVEPOINT crmsync_recompute_copy")
                try:
                    _copy(cursor, table, cols, records)
                except Exception as exc:
                    if getattr(exc, "sqlstate", None) != _UNIQUE_VIOLATION:
                        raise
                    cursor.execute("ROLLBACK TO SAVEPOINT crmsync_recompute_copy")
                else:
                    cursor.execute("RELEASE SAVEPOINT crmsync_recompute_copy")
                    return
            stage = _stage(cursor, plan, records)
            cursor.execute(f"INSERT INTO {table} ({cols}) SELECT {cols} FROM {stage}{on_conflict}")
            cursor.execute(f"DROP TABLE {stage}")
        return
    marks = ", ".join("?" for _ in columns)
    cursor = driver.cursor()
    try:
        cursor.executemany(f"INSERT INTO {table} ({cols}) VALUES ({marks}){on_conflict}", records)
    finally:
        cursor.close()


SNAPSHOT_COLUMNS: tuple[str, ...] = (
    "account_id",
    "computed_on",
    "computed_at",
    "score",
    "band",
    "coverage",
    "components",
    "flags",
    "reasons",
    "model_version",
)
CHANGED_COLUMNS: tuple[str, ...] = (
    *OUTPUT_COLUMNS,
    "field_stamps",
    "cs_changed_at",
    "health_computed_at",
)


@dataclass
class ChunkWrite:
    """What :func:`write_chunk` wrote."""

    changed: int = 0
    unchanged: int = 0
    stamped_columns: int = 0
    events: int = 0
    snapshots: int = 0


def write_chunk(
    conn: Connection,
    outcomes: Sequence[AccountOutcome],
    *,
    computed_at: datetime,
    stamped_at: datetime,
) -> ChunkWrite:
    """Write the outcomes of one chunk (in the caller's transaction).

    ``computed_at`` (when the chunk's inputs were read) becomes ``health_computed_at``: a
    change committed after the read is newer and selects the account again. ``stamped_at``
    (now, just before writing) stamps the changed columns, so a push that started before this
    commit re-reads them in its lookback. The stamps are merged into the stored ones by the
    database (:func:`_update_changed`), not from the values the chunk read.
    """
    stamp = stamped_at.astimezone(UTC).isoformat(timespec="microseconds")
    stamps: dict[tuple[str, ...], dict[str, str]] = {}  # a chunk has few distinct change sets
    changed_rows: list[dict[str, Any]] = []
    same_ids: list[int] = []
    events: list[dict[str, Any]] = []
    for out in outcomes:
        if out.changed:
            own = stamps.get(out.changed)
            if own is None:
                own = stamps[out.changed] = dict.fromkeys(out.changed, stamp)
            changed_rows.append({"id": out.account_id, **out.values, "field_stamps": own})
        else:
            same_ids.append(out.account_id)
        events.extend(
            {
                "account_id": out.account_id,
                "kind": kind,
                "payload": payload,
                "occurred_at": stamped_at,
            }
            for kind, payload in out.events
        )
    _update_changed(conn, changed_rows, computed_at=computed_at, stamped_at=stamped_at)
    _update_unchanged(conn, same_ids, computed_at)
    _insert(
        conn,
        "health_snapshots",
        SNAPSHOT_COLUMNS,
        [o.snapshot for o in outcomes],
        conflict=("account_id", "computed_on"),
    )
    _insert(conn, "account_events", ("account_id", "kind", "payload", "occurred_at"), events)
    return ChunkWrite(
        changed=len(changed_rows),
        unchanged=len(same_ids),
        stamped_columns=sum(len(o.changed) for o in outcomes),
        events=len(events),
        snapshots=len(outcomes),
    )


__all__ = [
    "AccountEvent",
    "ChunkWrite",
    "changed_children",
    "due_account_ids",
    "due_condition",
    "live_account_ids",
    "load_chunk",
    "load_feeds",
    "write_chunk",
]

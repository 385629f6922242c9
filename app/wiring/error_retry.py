"""Retry failed records: read them again from the CRM, by id, and sync them through the engine.

A retry is a pass of kind ``retry`` over one CRM object whose change stream is just the records
asked for (:class:`FetchedRecords`, one CRM read per chunk of ids: Salesforce ``queryAll ...
WHERE Id IN (...)``, HubSpot batch read: the adapters' ``read_records``). It goes through the same
:class:`~app.sync.pull.PullEngine` page commit as every pass, so mapping, validation, the
ledger, parents and the resolution of errors all behave as in a sync: a record that now syncs
has its open errors resolved (``synced``), one that fails again gets its error row updated
(attempts + 1, the new message). A record the CRM no longer has is soft-deleted on the CS side
(as a sync does) and its errors resolved as ``gone``.

The pass holds the object's lease like any pass: while another pass runs on the object the
retry is refused (``busy``) and nothing changes. It never moves the object's change cursor (its
pages say nothing about stream positions); a resume token of an interrupted pass is cleared,
so the next pass restarts from the stored watermark (reads again, loses nothing).

Only pull errors with a record id can be retried this way; a push error is retried by the next
push. ``retry_errors`` is what ``POST /api/v1/sync/errors/{id}/retry``, ``POST
/api/v1/sync/errors/retry`` and ``crmsync errors retry`` call; each call is audited (the audit
row is written before the retry and completed with its outcome after). The sweeper's job
(``crmsync.retry_error``, :mod:`app.jobs.tasks`) calls :func:`retry_sync_error` for each
retriable error whose time has come, audited as ``scheduler``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from app.core.runs import RunStatus, SyncKind
from app.crm import usage
from app.crm.base import CrmClient, CrmName, ReadFrom, RecordPage
from app.crm.factory import build_client
from app.db import runs
from app.db.audit import record_audit
from app.db.base import utcnow
from app.db.engine import make_engine, make_session_factory
from app.db.error_views import ErrorFilters, filtered
from app.db.models import AuditEntry, SyncErrorRecord
from app.db.sync_store import SqlSyncStore
from app.errors import CrmsyncError
from app.logging import get_logger
from app.mappers.config import load_mapping_set
from app.settings import Settings, get_settings
from app.sync.pull import PullEngine

log = get_logger("crmsync.retry")

#: ``sync_errors.resolution`` of an error whose record the CRM no longer has.
GONE = "gone"
#: Ids per CRM read: Salesforce keeps a SOQL ``IN`` list well under its length limit, HubSpot's
#: batch read takes 100.
CHUNK = {"salesforce": 200, "hubspot": 100}
RETRY_KIND = SyncKind.RETRY


class RecordFetcher(Protocol):
    """A CRM client that can read records by id (both adapters implement it)."""

    def read_records(
        self, object_name: str, fields: Sequence[str], ids: Sequence[str]
    ) -> RecordPage:
        """The records found (wire form, as in a change stream) and, in ``deleted_ids``, those
        the CRM reports deleted; an id in neither is gone too."""
        ...


class FetchedRecords:
    """A :class:`CrmClient` whose change stream is the given records, read by id."""

    def __init__(
        self,
        client: CrmClient,
        record_ids: Sequence[str],
        chunk: int,
        on_start: Callable[[], None] | None = None,
    ) -> None:
        if not hasattr(client, "read_records"):
            raise TypeError(f"{type(client).__name__} cannot read records by id")
        self.client = client
        self.on_start = on_start
        self.name: CrmName = client.name
        self.record_ids = list(dict.fromkeys(record_ids))
        self.chunk = chunk
        self.deleted: set[str] = set()
        self.found: set[str] = set()

    @property
    def api_calls(self) -> int:
        return self.client.api_calls

    def estimate_changes(self, object_name: str, start: ReadFrom | None) -> int | None:
        return len(self.record_ids)

    def iter_changes(
        self,
        object_name: str,
        fields: Sequence[str],
        start: ReadFrom | None,
        *,
        page_size: int,
        use_bulk: bool | None = None,
    ) -> Iterator[RecordPage]:
        fetcher: RecordFetcher = self.client  # type: ignore[assignment]
        if self.on_start is not None:
            self.on_start()  # the pass holds the object's lease and its run has started
        for i in range(0, len(self.record_ids), self.chunk):
            chunk = self.record_ids[i : i + self.chunk]
            page = fetcher.read_records(object_name, fields, chunk)
            found = {str(r.get("Id", r.get("id"))) for r in page.records}
            # Salesforce ids come back 18 characters long; a 15-character one matches its prefix.
            missing = [
                c for c in chunk if c not in found and not any(f.startswith(c) for f in found)
            ]
            deleted = list(dict.fromkeys([*page.deleted_ids, *missing]))
            self.deleted.update(deleted)
            self.found.update(found)
            # No ``last`` and no resume token: a retry says nothing about the stream's position.
            yield RecordPage(
                records=page.records,
                deleted_ids=deleted,
                expected=len(self.record_ids) if i == 0 else None,
            )

    def iter_deleted(self, object_name: str, start: ReadFrom | None) -> Iterator[RecordPage]:
        return iter(())

    def close(self) -> None:
        self.client.close()


@dataclass
class RetryOutcome:
    """What a retry did to one error row."""

    error_id: int
    outcome: str  # resolved | gone | failed_again | skipped | busy | crm_failed | not_retriable
    message: str
    run_id: int | None = None

    def as_dict(self) -> dict[str, Any]:
        return {
            "error_id": self.error_id,
            "outcome": self.outcome,
            "message": self.message,
            "run_id": self.run_id,
        }


@dataclass
class RetryReport:
    outcomes: list[RetryOutcome] = field(default_factory=list)
    runs: list[int] = field(default_factory=list)

    def counts(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for o in self.outcomes:
            out[o.outcome] = out.get(o.outcome, 0) + 1
        return out

    def as_dict(self) -> dict[str, Any]:
        return {
            "retried": len(self.outcomes),
            "outcomes": self.counts(),
            "runs": self.runs,
            "items": [o.as_dict() for o in self.outcomes],
        }


ClientFactory = Callable[[CrmName, Settings], CrmClient]


def why_not_retriable(row: SyncErrorRecord) -> str | None:
    """Why this error cannot be retried by re-reading its record, or None if it can."""
    if row.resolved_at is not None:
        return f"already resolved ({row.resolution})"
    if row.direction != "pull":
        return f"a {row.direction} error: the next push retries it"
    if row.record_id is None:
        return "no record id (the whole page failed): run the pass again"
    return None


def retriable_error_ids(session: Session, filters: ErrorFilters, limit: int) -> list[int]:
    """Open, retriable pull errors with a record id matching ``filters``, oldest first."""
    wanted = ErrorFilters(
        crm=filters.crm,
        object=filters.object,
        category=filters.category,
        retriable=True,
        resolved=False,
        direction="pull",
    )
    stmt = filtered(wanted).where(SyncErrorRecord.record_id.is_not(None))
    return list(
        session.scalars(
            stmt.with_only_columns(SyncErrorRecord.id).order_by(SyncErrorRecord.id).limit(limit)
        )
    )


def retry_errors(
    settings: Settings,
    session_factory: sessionmaker[Session],
    error_ids: Sequence[int],
    *,
    actor: str,
    action: str = "sync_error.retry",
    target: str | None = None,
    audit_detail: dict[str, Any] | None = None,
    client_factory: ClientFactory = build_client,
) -> RetryReport:
    """Retry these errors (one pass per CRM object); audited as ``action`` by ``actor``."""
    report = RetryReport()
    with session_factory() as session:
        rows = list(
            session.scalars(select(SyncErrorRecord).where(SyncErrorRecord.id.in_(error_ids)))
        )
        entry = record_audit(
            session,
            actor,
            action,
            target or ",".join(f"sync_error:{i}" for i in error_ids[:5]),
            {**(audit_detail or {}), "error_ids": list(error_ids)[:1000], "outcome": "started"},
        )
        session.commit()
        audit_id = entry.id
        groups: dict[tuple[str, str], list[SyncErrorRecord]] = {}
        for row in rows:
            reason = why_not_retriable(row)
            if reason is not None:
                report.outcomes.append(RetryOutcome(row.id, "not_retriable", reason))
                continue
            groups.setdefault((row.crm, row.object), []).append(row)
        plan = [
            (crm, obj, [(r.id, str(r.record_id)) for r in group])
            for (crm, obj), group in groups.items()
        ]
    for crm, object_name, pairs in plan:
        _retry_object(
            settings, session_factory, crm, object_name, pairs, actor, client_factory, report
        )
    with session_factory() as session:
        audit = session.get(AuditEntry, audit_id)
        if audit is not None:
            audit.detail = {
                **audit.detail,
                "outcome": "done",
                "outcomes": report.counts(),
                "runs": report.runs,
            }
            session.commit()
    return report


def _retry_object(
    settings: Settings,
    session_factory: sessionmaker[Session],
    crm: str,
    object_name: str,
    pairs: list[tuple[int, str]],
    actor: str,
    client_factory: ClientFactory,
    report: RetryReport,
) -> None:
    def all_of(outcome: str, message: str, run_id: int | None = None) -> None:
        report.outcomes.extend(RetryOutcome(i, outcome, message, run_id) for i, _ in pairs)

    if crm not in ("salesforce", "hubspot") or crm not in settings.enabled_crms:
        all_of("crm_failed", f"{crm} is not configured here: its URL or credentials are missing")
        return
    name: CrmName = "salesforce" if crm == "salesforce" else "hubspot"
    try:
        mapping_set = load_mapping_set(
            name, settings.mapping_file, default_currency=settings.default_currency
        )
        mappings = {m.crm_object: m for m in mapping_set}
        if object_name not in mappings:
            all_of("crm_failed", f"{object_name} is not a mapped {crm} object")
            return
        client = usage.for_runs(client_factory(name, settings))  # counted by the retry run
    except CrmsyncError as exc:
        all_of("crm_failed", str(exc))
        return

    def close_abandoned() -> None:
        # The engine closes abandoned pull and backfill runs when it takes a lease over; a
        # retry killed outright leaves its own ``retry`` run: close it the same way.
        with session_factory() as session:
            runs.close_earlier_running(
                session,
                crm,
                object_name,
                RETRY_KIND,
                "abandoned: the process stopped without finishing this retry (killed?); a "
                "later pass took its lease over",
            )

    stream = FetchedRecords(
        client, [record_id for _, record_id in pairs], CHUNK[name], on_start=close_abandoned
    )
    try:
        engine = PullEngine(SqlSyncStore(session_factory), stream, mappings, settings.sync)
        result = engine.pull(object_name, kind=RETRY_KIND, triggered_by=actor[:64])
    finally:
        stream.close()
    if result.run_id is not None:
        report.runs.append(result.run_id)
    if result.status is RunStatus.CANCELLED:
        all_of("busy", result.error or "another pass holds the object's lease", result.run_id)
        return
    if result.status is RunStatus.FAILED:
        all_of("crm_failed", result.error or "the retry pass failed", result.run_id)
        return
    now = utcnow()
    with session_factory() as session:
        for error_id, record_id in pairs:
            row = session.get(SyncErrorRecord, error_id)
            if row is None:
                continue
            if row.resolved_at is None and record_id in stream.deleted:
                row.resolved_at = now
                row.resolution = GONE
            if row.resolution == GONE:
                outcome = RetryOutcome(
                    error_id, "gone", f"{crm} no longer has {record_id}", result.run_id
                )
            elif row.resolved_at is not None:
                outcome = RetryOutcome(error_id, "resolved", f"{record_id} synced", result.run_id)
            elif row.run_id == result.run_id:
                outcome = RetryOutcome(error_id, "failed_again", row.message, result.run_id)
            else:
                outcome = RetryOutcome(
                    error_id,
                    "skipped",
                    f"{record_id} was read but not stored (the CS row is newer); "
                    "resolve the error by hand if it is obsolete",
                    result.run_id,
                )
            report.outcomes.append(outcome)
        session.commit()
    log.info(
        "sync.retry.done",
        crm=crm,
        object=object_name,
        run_id=result.run_id,
        outcomes=report.counts(),
    )


_job_factory: sessionmaker[Session] | None = None


def retry_sync_error(
    error_id: int,
    *,
    settings: Settings | None = None,
    session_factory: sessionmaker[Session] | None = None,
    client_factory: ClientFactory = build_client,
) -> str:
    """The job's handler: retry one error row (the sweeper chose it: retriable, due), as
    ``scheduler``. Returns its outcome. A worker uses the process's settings and one engine for
    all its retries; tests pass their own."""
    global _job_factory
    if settings is None:
        settings = get_settings()
    if session_factory is None:
        if _job_factory is None:
            _job_factory = make_session_factory(make_engine(settings.database_url))
        session_factory = _job_factory
    report = retry_errors(
        settings,
        session_factory,
        [error_id],
        actor="scheduler",
        action="sync_error.retry",
        audit_detail={"via": "sweep"},
        client_factory=client_factory,
    )
    outcome = report.outcomes[0].outcome if report.outcomes else "missing"
    log.info("retry.job", error_id=error_id, outcome=outcome)
    return outcome

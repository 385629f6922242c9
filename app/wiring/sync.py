"""Run sync passes from settings: the one function the CLI, the API and jobs call.

Builds, per CRM, the adapter (``app.crm.factory``), the mapping set (defaults plus the optional
``CRMSYNC_MAPPING_FILE``) and a :class:`~app.sync.pull.PullEngine` over the SQL store, then pulls
the objects parents-first (accounts before opportunities before notes) so children usually find
their parent already stored; the rest are linked when it arrives.

The whole command's configuration is validated before the first pass (a :class:`ConfigError`,
exit 2 in the CLI); after that one pass's failure never skips the others, and an interrupt
(SIGINT/SIGTERM) starts no further pass and reports them as not started.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy.orm import Session, sessionmaker

from app.core.runs import RunStatus, SyncKind
from app.crm import usage
from app.crm.base import CrmName
from app.crm.budget import ApiBudget
from app.crm.factory import build_client
from app.db import runs
from app.db.sync_store import SqlSyncStore
from app.errors import ConfigError
from app.logging import get_logger
from app.mappers.config import load_mapping_set
from app.mappers.spec import ObjectMapping
from app.settings import Settings
from app.sync.pull import PageProgress, PassInterrupted, PullEngine, PullResult
from app.sync.run_scope import RunSpec, build_result
from app.wiring.budget import record_observed

# Re-exported for the callers that still import it from here (app.wiring.recompute); its home is
# app.wiring.gc_passes, which loads nothing of the sync's wiring.
from app.wiring.gc_passes import fewer_gc_passes

log = get_logger("crmsync.sync")


class SyncInterrupted(KeyboardInterrupt):  # a KeyboardInterrupt: an uncaught one still stops
    """SIGINT / SIGTERM stopped the command: ``results`` has every pass, the interrupted one
    ``cancelled`` and those not started after it ``cancelled`` with no run."""

    def __init__(self, results: list[PullResult]) -> None:
        super().__init__("interrupted")
        self.results = results


@dataclass(frozen=True)
class _Plan:
    """One CRM's validated work: its mappings and the objects to pull, parents first."""

    crm: CrmName
    mappings: dict[str, ObjectMapping]
    objects: list[str]


def run_sync(
    settings: Settings,
    session_factory: sessionmaker[Session],
    *,
    kind: SyncKind,
    crms: Sequence[CrmName] | None = None,
    objects: Sequence[str] | None = None,
    since: datetime | None = None,
    triggered_by: str = "cli",
    on_page: Callable[[PageProgress], None] | None = None,
    restart: bool = False,
) -> list[PullResult]:
    """One pass of ``kind`` over the given (or all configured) CRMs and objects.

    All configuration is checked before any pass starts (:class:`ConfigError`). After that a
    failing pass, or CRM, is recorded in the results and the others still run; SIGINT/SIGTERM
    stops the command with :class:`SyncInterrupted`. A backfill continues the CRM's open
    backfill (``restart``: begins a new one); see :mod:`app.sync.backfill`.
    """
    plans = plan_sync(settings, crms, objects)
    with fewer_gc_passes():
        return _run_sync(
            settings, session_factory, kind, plans, since, triggered_by, on_page, restart
        )


def plan_sync(
    settings: Settings, crms: Sequence[CrmName] | None, objects: Sequence[str] | None
) -> list[_Plan]:
    """Validate every CRM and object of the command up front; raise one :class:`ConfigError`."""
    chosen = list(crms) if crms else settings.enabled_crms
    if not chosen:
        raise ConfigError(
            "no CRM configured: set CRMSYNC_SALESFORCE_INSTANCE_URL with credentials "
            "or CRMSYNC_HUBSPOT_ACCESS_TOKEN (or start `crmsync sandbox --env-file .env`)"
        )
    problems: list[str] = []
    plans: list[_Plan] = []
    for crm in chosen:
        if crm not in settings.enabled_crms:
            problems.append(f"{crm} is not configured: its URL or credentials are missing")
            continue
        mapping_set = load_mapping_set(
            crm, settings.mapping_file, default_currency=settings.default_currency
        )
        mappings = {m.crm_object: m for m in mapping_set}
        wanted = list(objects) if objects else list(mapping_set.object_names)
        unknown = [o for o in wanted if o not in mappings]
        if unknown:
            known = ", ".join(mapping_set.object_names)
            problems.append(f"unknown {crm} object(s) {', '.join(unknown)}; known: {known}")
            continue
        ordered = [o for o in mapping_set.object_names if o in wanted]
        plans.append(_Plan(crm, mappings, ordered))
    if problems:
        raise ConfigError("; ".join(problems))
    return plans


def _not_started(crm: str, object_name: str, kind: SyncKind, reason: str) -> PullResult:
    return build_result(RunSpec(str(kind), crm, object_name), RunStatus.CANCELLED, error=reason)


def _run_sync(
    settings: Settings,
    session_factory: sessionmaker[Session],
    kind: SyncKind,
    plans: Sequence[_Plan],
    since: datetime | None,
    triggered_by: str,
    on_page: Callable[[PageProgress], None] | None,
    restart: bool,
) -> list[PullResult]:
    results: list[PullResult] = []
    store = SqlSyncStore(session_factory)
    on_page = remember_expected(session_factory, on_page)
    todo = [(plan, name) for plan in plans for name in plan.objects]
    try:
        for plan in plans:
            _run_crm(settings, store, plan, kind, since, triggered_by, on_page, restart, results)
    except KeyboardInterrupt as exc:
        if isinstance(exc, PassInterrupted):
            results.append(exc.result)
        done = {(r.crm, r.object_name) for r in results}
        results.extend(
            _not_started(plan.crm, name, kind, "not started: the command was interrupted")
            for plan, name in todo
            if (plan.crm, name) not in done
        )
        raise SyncInterrupted(results) from exc
    return results


def _run_crm(
    settings: Settings,
    store: SqlSyncStore,
    plan: _Plan,
    kind: SyncKind,
    since: datetime | None,
    triggered_by: str,
    on_page: Callable[[PageProgress], None] | None,
    restart: bool,
    results: list[PullResult],
) -> None:
    """Pull one CRM's objects into ``results``; a failure is recorded and the next one runs."""
    try:
        # The pass's own client: its run counts its calls (app.crm.usage).
        client = usage.for_runs(build_client(plan.crm, settings))
    except Exception as exc:
        log.exception("sync.crm.unavailable", crm=plan.crm)
        message = f"not started: {plan.crm} client: {type(exc).__name__}: {exc}"
        for name in plan.objects:
            results.append(_failed(plan.crm, name, kind, message))
        return
    try:
        engine = PullEngine(store, client, plan.mappings, settings.sync, on_page=on_page)
        backfill = kind is SyncKind.BACKFILL
        if backfill:
            engine.plan_backfill(plan.objects, since=since, restart=restart)
        for object_name in plan.objects:
            try:
                results.append(
                    engine.backfill(object_name, triggered_by=triggered_by)
                    if backfill
                    else engine.pull(object_name, kind=kind, since=since, triggered_by=triggered_by)
                )
            except Exception as exc:  # the engine records its own failures; this is the rest
                log.exception("sync.run.crashed", crm=plan.crm, object=object_name)
                results.append(_failed(plan.crm, object_name, kind, f"{type(exc).__name__}: {exc}"))
    finally:
        _keep_budget(store, plan.crm, client)
        client.close()


def _keep_budget(store: SqlSyncStore, crm: CrmName, client: object) -> None:
    """Keep the daily API limit the client read from its responses (the budget guard's)."""
    budget = getattr(client, "budget", None)
    if not isinstance(budget, ApiBudget):
        return
    try:
        record_observed(store.session_factory, crm, budget)
    except Exception as exc:  # bookkeeping only: never fail the pass for it
        log.warning("budget.record_failed", crm=crm, error=f"{type(exc).__name__}: {exc}")


def remember_expected(
    session_factory: sessionmaker[Session],
    on_page: Callable[[PageProgress], None] | None,
) -> Callable[[PageProgress], None]:
    """``on_page`` that also stores, once per pass, how many records the CRM said the pass
    will read (``sync_runs.params["expected"]``): what the admin API's ETA divides by."""
    recorded: set[tuple[str, str, str]] = set()

    def on_progress(progress: PageProgress) -> None:
        key = (progress.crm, progress.object_name, progress.kind)
        if progress.expected is not None and key not in recorded:
            recorded.add(key)
            with session_factory() as session:
                runs.record_expected(session, *key, progress.expected)
        if on_page is not None:
            on_page(progress)

    return on_progress


def _failed(crm: str, object_name: str, kind: SyncKind, message: str) -> PullResult:
    return build_result(RunSpec(str(kind), crm, object_name), RunStatus.FAILED, error=message)

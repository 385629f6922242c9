"""The API budget guard from settings: what other code calls (docs/budget.md).

* :func:`budget_status`: used / left per CRM, from the database only (no API call): for
  ``GET /api/v1/status``, ``/metrics`` and the jobs.
* :func:`record_observed`: keep the limit a client saw in its responses' headers
  (``Sforce-Limit-Info``, ``X-HubSpot-RateLimit-Daily*``); the pull calls it after each CRM.
* :func:`refresh_limit`: ask the CRM when no limit is known or the last is older than an hour.
* :func:`check_backfill`: estimate a backfill's calls (one count call per object) and refuse
  when they would exceed the share (:class:`OverBudgetError`, exit 2) unless allowed.
* :func:`scheduled_wait`: for a job, whether it must wait for budget, and until when.
* :class:`RunBudgetGate`: the same question at every commit point of a job's pass
  (:func:`app.sync.run_scope.budget_gated`): a pass whose CRM's share is spent stops there.
* :func:`store_usage` / :func:`install_usage_store`: store the calls this process made outside
  any run (:mod:`app.crm.usage`), so the guard counts them too.

Acknowledging a webhook never goes through here: the webhook routes store and answer at once;
only the work queued after them is budgeted.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy.orm import Session, sessionmaker

from app.core.types import CRM_NAMES, CrmName
from app.crm import usage
from app.crm.base import ReadFrom
from app.crm.budget import ApiBudget, read_daily_budget
from app.crm.factory import build_client
from app.db import budget_store
from app.db.base import utcnow
from app.domain.budget import BudgetState, backfill_calls, frees_at, used_in_window
from app.errors import ConfigError
from app.logging import get_logger
from app.mappers.config import load_mapping_set
from app.settings import Settings

log = get_logger("crmsync.budget")

#: How old a CRM-reported limit may be before the guard asks again.
LIMIT_MAX_AGE = timedelta(hours=1)


class OverBudgetError(ConfigError):
    """A backfill would spend more than crmsync's share of the daily API budget."""


def store_usage(factory: sessionmaker[Session]) -> None:
    """Store the calls this process made outside any run (``api_usage``); never raises (what
    could not be stored stays pending for the next time)."""
    taken = usage.take()
    if not any(taken.values()):
        return
    try:
        with factory() as session:
            budget_store.add_usage(session, taken)
    except Exception as exc:
        usage.restore(taken)
        log.warning("budget.usage_unstored", calls=taken, error=f"{type(exc).__name__}: {exc}")


def install_usage_store(factory: sessionmaker[Session]) -> Callable[[], None]:
    """From now on, store this process's outside-run calls as soon as a few are pending (a
    long webhook batch does not wait for its job's end). Returns the call that undoes it."""
    mine = functools.partial(store_usage, factory)
    previous = usage.install(mine)

    def uninstall() -> None:
        store_usage(factory)
        usage.install(previous)

    return uninstall


def state_for(
    settings: Settings, session: Session, crm: CrmName, now: datetime | None = None
) -> BudgetState:
    """One CRM's budget from the database and the settings."""
    now = now or utcnow()
    config = settings.budget(crm)
    stored = budget_store.load_limit(session, crm)
    limit, source, org_used = None, None, None
    if config.daily_limit is not None:
        limit, source = config.daily_limit, "configured"
    elif stored is not None and stored.daily_limit is not None:
        limit, source = stored.daily_limit, stored.source
    if stored is not None and stored.observed_at > now - LIMIT_MAX_AGE:
        org_used = stored.org_used
    used = used_in_window(budget_store.own_usage(session, crm, now), now)
    return BudgetState(crm, limit, config.budget_share, used, org_used, source)


def budget_status(
    settings: Settings, factory: sessionmaker[Session], crms: Sequence[CrmName] | None = None
) -> dict[str, BudgetState]:
    """Used / left per configured CRM (``crms``: those only). No API call."""
    store_usage(factory)
    with factory() as session:
        return {crm: state_for(settings, session, crm) for crm in (crms or settings.enabled_crms)}


def record_observed(factory: sessionmaker[Session], crm: CrmName, budget: ApiBudget) -> None:
    """Keep the daily limit and org usage a client read from its responses' headers."""
    if budget.max is None:
        return
    with factory() as session:
        budget_store.save_limit(session, crm, budget.max, budget.used, "headers")


def refresh_limit(
    settings: Settings, factory: sessionmaker[Session], crm: CrmName, *, force: bool = False
) -> None:
    """Ask the CRM for its daily limit unless configured or known within the hour."""
    if settings.budget(crm).daily_limit is not None:
        return
    with factory() as session:
        stored = budget_store.load_limit(session, crm)
        if not force and stored is not None and stored.observed_at > utcnow() - LIMIT_MAX_AGE:
            return
    try:
        client = build_client(crm, settings)
        try:
            budget = read_daily_budget(client)
        finally:
            client.close()
    except Exception as exc:  # the guard then works from what it knew (or not at all)
        log.warning("budget.limit_unread", crm=crm, error=f"{type(exc).__name__}: {exc}")
        store_usage(factory)
        return
    with factory() as session:
        budget_store.save_limit(session, crm, budget.max, budget.used, "limits")
    store_usage(factory)


@dataclass(frozen=True)
class BackfillEstimate:
    crm: str
    calls: int
    rows: dict[str, int | None]
    state: BudgetState

    @property
    def over(self) -> bool:
        return not self.state.can_spend(self.calls)

    def message(self) -> str:
        left = self.state.left
        return (
            f"a {self.crm} backfill needs about {self.calls} API calls, more than the "
            f"{left} left of crmsync's share ({self.state.share:g} of {self.state.limit} a day, "
            f"{self.state.used} used in the last 24 h); run it later, raise "
            f"CRMSYNC_{self.crm.upper()}__BUDGET_SHARE, or pass --allow-over-budget "
            "(API: allow_over_budget) to insist"
        )


def estimate_backfill(
    settings: Settings,
    factory: sessionmaker[Session],
    crm: CrmName,
    objects: Sequence[str] | None,
    since: datetime | None,
) -> BackfillEstimate:
    """Count what a backfill of ``objects`` (all mapped) would read: one count call each.

    Nothing to guard, so no count, when no share is set (:meth:`Settings.budget_guarded`) or
    no limit is known (a HubSpot OAuth app, a CRM that did not say)."""
    if settings.budget_guarded(crm):
        refresh_limit(settings, factory, crm)
    with factory() as session:
        state = state_for(settings, session, crm)
    if state.limit is None or not settings.budget_guarded(crm):
        return BackfillEstimate(crm, 0, {}, state)
    mapping_set = load_mapping_set(
        crm, settings.mapping_file, default_currency=settings.default_currency
    )
    names = list(objects) if objects else list(mapping_set.object_names)
    page = settings.sync.page_size if crm == "salesforce" else settings.sync.hubspot_page_size
    bulk = settings.sync.bulk_threshold if crm == "salesforce" else None
    rows: dict[str, int | None] = {}
    calls = 0
    client = build_client(crm, settings)
    try:
        for name in names:
            expected = client.estimate_changes(name, ReadFrom(lower=since))
            rows[name] = expected
            calls += backfill_calls(crm, expected or 0, page_size=page, bulk_threshold=bulk)
    finally:
        client.close()
        store_usage(factory)
    return BackfillEstimate(crm, calls, rows, state)


def check_backfill(
    settings: Settings,
    factory: sessionmaker[Session],
    crms: Sequence[CrmName] | None,
    objects: Sequence[str] | None,
    since: datetime | None,
) -> list[BackfillEstimate]:
    """Estimate each CRM's backfill; raise :class:`OverBudgetError` for one over its share."""
    estimates = [
        estimate_backfill(settings, factory, crm, objects, since)
        for crm in (crms or settings.enabled_crms)
    ]
    over = [e for e in estimates if e.over]
    for estimate in estimates:
        log.info(
            "budget.backfill.estimate",
            crm=estimate.crm,
            calls=estimate.calls,
            rows=estimate.rows,
            left=estimate.state.left,
        )
    if over:
        raise OverBudgetError("; ".join(e.message() for e in over))
    return estimates


def scheduled_wait(
    settings: Settings, factory: sessionmaker[Session], crms: Sequence[CrmName], need: int = 1
) -> datetime | None:
    """When a job for ``crms`` may start: None now, else the time budget frees (``need`` calls
    left in every CRM's share). Reads the database only."""
    store_usage(factory)
    now = utcnow()
    latest: datetime | None = None
    with factory() as session:
        for crm in crms:
            state = state_for(settings, session, crm, now)
            if state.can_spend(need) or state.allowed is None:
                continue
            usage = budget_store.own_usage(session, crm, now)
            when = frees_at(usage, state.allowed, need, now) or now + timedelta(hours=24)
            if state.org_used is not None and state.limit is not None:
                # The org as a whole is out: its 24 h window frees at least an hour on.
                when = max(when, now + LIMIT_MAX_AGE)
            latest = when if latest is None else max(latest, when)
    return latest


def pass_need(settings: Settings) -> int:
    """Calls a pass may make between two commit points: its next page and the pages it reads
    ahead (``CRMSYNC_SYNC__PREFETCH_PAGES``). A job starts, and goes on after a page, only
    while this many are left, so the pages in flight never take it over its share."""
    return 1 + settings.sync.prefetch_pages


class RunBudgetGate:
    """The budget guard at a job's commit points (:class:`app.sync.run_scope.BudgetGate`).

    Reads the budget (the database only, no API call) after each committed page or chunk;
    every run's calls are stored with its page, so other workers' runs count too. While at
    least :attr:`PLENTY` calls were left at its last look (or no limit is known), it looks again
    only :attr:`RECHECK` seconds later: no CRM serves crmsync that many calls in a second, and a
    page of a fast stream then costs no query (a look is about a millisecond)."""

    PLENTY = 1000
    RECHECK = 1.0

    def __init__(
        self,
        settings: Settings,
        factory: sessionmaker[Session],
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.settings = settings
        self.factory = factory
        self.need = pass_need(settings)
        self.clock = clock
        self._plenty_at: dict[str, float] = {}

    def stop_reason(self, crm: str) -> str | None:
        name = next((c for c in CRM_NAMES if c == crm), None)
        if name is None:
            return None  # the CS database ("cs"): no API budget
        now = self.clock()
        seen = self._plenty_at.get(name)
        if seen is not None and now - seen < self.RECHECK:
            return None
        self._plenty_at.pop(name, None)
        store_usage(self.factory)
        with self.factory() as session:
            state = state_for(self.settings, session, name)
        if state.left is None or state.left >= self.PLENTY:
            self._plenty_at[name] = now
            return None
        if state.can_spend(self.need):
            return None
        until = scheduled_wait(self.settings, self.factory, [name], self.need)
        if until is None:
            return None
        log.info("budget.run.spent", crm=crm, until=until.isoformat())
        return f"until about {until.isoformat(timespec='minutes')}"

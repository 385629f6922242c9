"""Prometheus metrics (``GET /metrics``; docs/jobs.md, "Metrics").

Two kinds:

* **Read at scrape time from the database** (:class:`DatabaseCollector`), so every API replica
  and worker reports the same truth: records synced, sync lag per object, API calls in the last
  24 h and budget left per CRM, open errors by category, webhook inbox depth by status, and the
  job queue's depth.
* **Observed in the process** (module-level histograms in the default registry): job durations
  (each worker process observes its own; ``crmsync worker --metrics-port`` serves them) and the
  webhook-to-onboarding latency, which the closed-won processing observes with
  :func:`observe_webhook_to_onboarding`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import datetime

from prometheus_client import REGISTRY, CollectorRegistry, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from app.core.runs import RunStatus
from app.db.base import utcnow
from app.db.models import SyncErrorRecord, SyncRun, WebhookEvent
from app.logging import get_logger
from app.settings import Settings

log = get_logger("crmsync.metrics")

JOB_DURATION = Histogram(
    "crmsync_job_duration_seconds",
    "Duration of background jobs, by kind (run, webhook, notice, retry_error) and outcome.",
    ["kind", "outcome"],
    buckets=(0.1, 0.5, 1, 5, 15, 60, 300, 900, 3600, 4 * 3600),
)

WEBHOOK_TO_ONBOARDING = Histogram(
    "crmsync_webhook_to_onboarding_seconds",
    "From a closed-won webhook's arrival (received_at) to its onboarding plan being created.",
    buckets=(0.5, 1, 2, 5, 10, 30, 60, 300, 900, 3600),
)


def observe_job(kind: str, seconds: float, outcome: str) -> None:
    JOB_DURATION.labels(kind=kind, outcome=outcome).observe(seconds)


def observe_webhook_to_onboarding(received_at: datetime, onboarded_at: datetime) -> None:
    """Record one closed-won event's latency (both aware datetimes)."""
    WEBHOOK_TO_ONBOARDING.observe(max(0.0, (onboarded_at - received_at).total_seconds()))


class DatabaseCollector(Collector):
    """Gauges and counters read from the database when Prometheus scrapes."""

    def __init__(
        self,
        settings: Settings,
        factory: sessionmaker[Session],
        queue_depth: Callable[[], int] | None = None,
    ) -> None:
        self.settings = settings
        self.factory = factory
        self.queue_depth = queue_depth

    def collect(self) -> Iterator[Metric]:
        with self.factory() as session:
            yield from self._records(session)
            yield from self._lag(session)
            yield from self._errors(session)
            yield from self._inbox(session)
            yield from self._runs(session)
        yield from self._budget()
        if self.queue_depth is not None:
            depth = GaugeMetricFamily("crmsync_queue_depth", "Job messages waiting in the broker.")
            try:
                depth.add_metric([], float(self.queue_depth()))
            except Exception as exc:  # the broker is down: no sample rather than a failed scrape
                log.warning("metrics.queue_depth_failed", error=f"{type(exc).__name__}: {exc}")
            yield depth

    def _records(self, session: Session) -> Iterator[Metric]:
        synced = CounterMetricFamily(
            "crmsync_records_synced",
            "Records written by sync runs, by CRM, object, kind and outcome.",
            labels=["crm", "object", "kind", "outcome"],
        )
        rows = session.execute(
            select(
                SyncRun.crm,
                SyncRun.object,
                SyncRun.kind,
                func.sum(SyncRun.created_count),
                func.sum(SyncRun.updated_count),
                func.sum(SyncRun.deleted_count),
                func.sum(SyncRun.failed_count),
                func.sum(SyncRun.api_calls),
            ).group_by(SyncRun.crm, SyncRun.object, SyncRun.kind)
        ).all()
        calls = CounterMetricFamily(
            "crmsync_api_calls", "API calls made by sync runs.", labels=["crm", "object", "kind"]
        )
        for crm, obj, kind, created, updated, deleted, failed, api in rows:
            for outcome, value in (
                ("created", created),
                ("updated", updated),
                ("deleted", deleted),
                ("failed", failed),
            ):
                synced.add_metric([crm, obj, kind, outcome], float(value or 0))
            calls.add_metric([crm, obj, kind], float(api or 0))
        yield synced
        yield calls

    def _lag(self, session: Session) -> Iterator[Metric]:
        lag = GaugeMetricFamily(
            "crmsync_sync_lag_seconds",
            "Seconds since the last successful pull or backfill of each CRM object started: every "
            "CRM change made before then is in CS (the same lag as GET /api/v1/status).",
            labels=["crm", "object"],
        )
        now = utcnow()
        rows = session.execute(
            select(SyncRun.crm, SyncRun.object, func.max(SyncRun.started_at))
            .where(
                SyncRun.kind.in_(["pull", "backfill"]),
                SyncRun.status.in_([RunStatus.SUCCEEDED, RunStatus.PARTIAL]),
            )
            .group_by(SyncRun.crm, SyncRun.object)
        ).all()
        for crm, obj, started in rows:
            if started is not None:
                lag.add_metric([crm, obj], max(0.0, (now - started).total_seconds()))
        yield lag

    def _errors(self, session: Session) -> Iterator[Metric]:
        errors = GaugeMetricFamily(
            "crmsync_sync_errors_open",
            "Unresolved sync errors, by CRM, object, direction and category.",
            labels=["crm", "object", "direction", "category"],
        )
        rows = session.execute(
            select(
                SyncErrorRecord.crm,
                SyncErrorRecord.object,
                SyncErrorRecord.direction,
                SyncErrorRecord.category,
                func.count(),
            )
            .where(SyncErrorRecord.resolved_at.is_(None))
            .group_by(
                SyncErrorRecord.crm,
                SyncErrorRecord.object,
                SyncErrorRecord.direction,
                SyncErrorRecord.category,
            )
        ).all()
        for crm, obj, direction, category, count in rows:
            errors.add_metric([crm, obj, direction, category], float(count))
        yield errors

    def _inbox(self, session: Session) -> Iterator[Metric]:
        inbox = GaugeMetricFamily(
            "crmsync_webhook_inbox", "Webhook inbox events by status.", labels=["status"]
        )
        rows = session.execute(
            select(WebhookEvent.status, func.count()).group_by(WebhookEvent.status)
        ).all()
        for status, count in rows:
            inbox.add_metric([status], float(count))
        yield inbox

    def _runs(self, session: Session) -> Iterator[Metric]:
        active = GaugeMetricFamily(
            "crmsync_runs",
            "Sync runs queued or in progress, by kind and status.",
            labels=["kind", "status"],
        )
        rows = session.execute(
            select(SyncRun.kind, SyncRun.status, func.count())
            .where(SyncRun.status.in_([RunStatus.QUEUED, RunStatus.RUNNING, RunStatus.CANCELLING]))
            .group_by(SyncRun.kind, SyncRun.status)
        ).all()
        for kind, status, count in rows:
            active.add_metric([kind, status], float(count))
        yield active

    def _budget(self) -> Iterator[Metric]:
        from app.wiring.budget import budget_status

        used = GaugeMetricFamily(
            "crmsync_api_budget_used", "crmsync's own API calls in the last 24 h.", labels=["crm"]
        )
        left = GaugeMetricFamily(
            "crmsync_api_budget_left",
            "API calls crmsync may still make in the rolling 24 h (its share minus its use).",
            labels=["crm"],
        )
        for crm, state in budget_status(self.settings, self.factory).items():
            used.add_metric([crm], float(state.used))
            if state.left is not None:
                left.add_metric([crm], float(state.left))
        yield used
        yield left


def render(
    settings: Settings,
    factory: sessionmaker[Session],
    queue_depth: Callable[[], int] | None = None,
) -> bytes:
    """The exposition text: this process's histograms and the database's state."""
    scraped = CollectorRegistry(auto_describe=False)
    scraped.register(DatabaseCollector(settings, factory, queue_depth))
    return generate_latest(REGISTRY) + generate_latest(scraped)

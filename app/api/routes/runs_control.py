"""Run control: trigger a run, cancel a run (``/api/v1/sync/runs``; docs/jobs.md).

``POST /api/v1/sync/runs`` validates the request, creates one ``queued`` ``sync_runs`` row per
object (all of the CRM's objects, parents first, when ``object`` is left out) and enqueues each
id; it answers 202 with the run ids. A worker picks each row up (:mod:`app.jobs.runs`). If the
broker cannot be reached the rows stay queued and the sweeper enqueues them once it can: the
answer says ``"enqueued": false``, the runs are not lost. A backfill with ``partitions`` > 1
is a parent that its worker splits into child runs, one per stamp range
(:mod:`app.wiring.partitioned`).

``POST /api/v1/sync/runs/{id}/cancel``: a queued run is cancelled at once; a running one is
marked ``cancelling`` and stops after its current page, its cursor at that page (202). A run
already finished answers 409, an unknown one 404.

Bad input answers 422 in FastAPI's validation shape naming the field
(``{"detail": [{"loc": ["body", "object"], "msg": ..., "type": ...}]}``).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, Literal

from fastapi import APIRouter, HTTPException, Path
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field

from app.api.auth import PrincipalDep, needs
from app.api.deps import JobsDep, SessionDep, SettingsDep
from app.api.paging import invalid
from app.core.access import Role
from app.core.runs import RunStatus
from app.db import job_store, runs
from app.db.audit import record_audit
from app.jobs.runs import API_KINDS
from app.logging import get_logger
from app.mappers.config import load_mapping_set
from app.mappers.errors import MappingConfigError
from app.settings import Settings
from app.sync.partitions import MAX_PARTITIONS

router = APIRouter(prefix="/api/v1/sync", tags=["runs"])
log = get_logger("crmsync.api.runs")


class RunRequest(BaseModel):
    """What to run. ``crm`` is required except for ``recompute`` (which covers the CS side)."""

    model_config = ConfigDict(extra="forbid")

    kind: Literal["backfill", "incremental", "push", "recompute"]
    crm: Literal["salesforce", "hubspot"] | None = None
    object: str | None = Field(None, description="One CRM object; all of them when left out.")
    since: datetime | None = Field(
        None, description="backfill / incremental: read records changed since then."
    )
    restart: bool = Field(False, description="backfill: begin a new one, even if one is open.")
    partitions: int = Field(
        1,
        ge=1,
        le=MAX_PARTITIONS,
        description="backfill: split it into up to this many stamp ranges that different "
        "workers run at once, each with its own checkpoint (docs/jobs.md); 1: one pass.",
    )
    push: bool = Field(False, description="recompute: push the changed fields to every CRM.")
    allow_over_budget: bool = Field(
        False,
        description="Start even when the run would exceed crmsync's share of the daily API "
        "budget (docs/budget.md).",
    )


class RunsQueued(BaseModel):
    run_id: int
    run_ids: list[int]
    status: str = "queued"
    enqueued: bool = True


class CancelAnswer(BaseModel):
    run_id: int
    status: str


def _invalid(field: str, message: str, value: Any) -> JSONResponse:
    """The API's 422 naming a body field (app.api.paging.invalid)."""
    return invalid(field, message, value, where="body")


def plan_run(
    body: RunRequest, settings: Settings
) -> tuple[list[tuple[str, str]], dict[str, Any]] | JSONResponse:
    """The (crm, object) runs ``body`` asks for and their parameters, or the 422 naming the
    field. Shared by :func:`trigger_run` and the console's backfill estimate, which checks a
    request exactly as the API would before it counts the calls."""
    params: dict[str, Any] = {}
    if body.since is not None:
        if body.kind not in ("backfill", "incremental"):
            return _invalid(
                "since",
                f"since applies to backfill and incremental, not {body.kind}",
                str(body.since),
            )
        since = body.since if body.since.tzinfo else body.since.replace(tzinfo=UTC)
        if since > datetime.now(UTC):
            return _invalid("since", "since is in the future", str(body.since))
        params["since"] = since.isoformat()
    if body.restart:
        if body.kind != "backfill":
            return _invalid("restart", "restart applies to backfill only", True)
        params["restart"] = True
    if body.partitions > 1:
        if body.kind != "backfill":
            return _invalid("partitions", "partitions applies to backfill only", body.partitions)
        params["partitions"] = body.partitions
    if body.allow_over_budget:
        params["allow_over_budget"] = True
    if body.kind == "recompute":
        if body.object not in (None, "accounts"):
            return _invalid("object", "recompute covers accounts; leave object out", body.object)
        params["push"] = body.push
        targets = [("cs", "accounts")]
    else:
        if body.push:
            return _invalid("push", "push applies to recompute only", True)
        if body.crm is None:
            return _invalid("crm", f"crm is required for {body.kind}", None)
        if body.crm not in settings.enabled_crms:
            return _invalid(
                "crm", f"{body.crm} is not configured: its URL or credentials are missing", body.crm
            )
        try:
            mapping_set = load_mapping_set(
                body.crm, settings.mapping_file, default_currency=settings.default_currency
            )
        except MappingConfigError as exc:
            return _invalid("crm", f"the mapping file is invalid: {exc}", body.crm)
        known = list(mapping_set.object_names)
        if body.kind == "push":
            known = [m.crm_object for m in mapping_set if m.outbound_fields]
        if body.object is not None and body.object not in known:
            return _invalid(
                "object",
                f"unknown {body.kind} object for {body.crm}; known: {', '.join(known)}",
                body.object,
            )
        objects = [body.object] if body.object is not None else known
        targets = [(body.crm, o) for o in objects]
    return targets, params


@router.post(
    "/runs",
    status_code=202,
    response_model=RunsQueued,
    summary="Trigger a run (backfill, incremental, push, recompute)",
    responses={422: {"description": "a field is missing or invalid; the body names it"}},
    **needs(Role.OPERATOR),
)
def trigger_run(
    body: RunRequest,
    session: SessionDep,
    settings: SettingsDep,
    jobs: JobsDep,
    principal: PrincipalDep,
) -> RunsQueued | JSONResponse:
    kind = API_KINDS[body.kind]
    planned = plan_run(body, settings)
    if isinstance(planned, JSONResponse):
        return planned
    targets, params = planned
    ids: list[int] = []
    for crm, object_name in targets:
        run_id, _ = job_store.queue_run(
            session, kind=kind, crm=crm, object_name=object_name, triggered_by="api", params=params
        )
        ids.append(run_id)
        record_audit(
            session,
            principal.actor,
            "sync_run.trigger",
            f"sync_run:{run_id}",
            {"kind": body.kind, "crm": crm, "object": object_name, "params": params},
        )
    session.commit()
    enqueued = True
    for run_id in ids:
        try:
            jobs.enqueue_run(run_id)
        except Exception as exc:  # the broker is down: the sweeper enqueues the queued rows
            log.warning(
                "api.runs.enqueue_failed", run_id=run_id, error=f"{type(exc).__name__}: {exc}"
            )
            enqueued = False
    log.info("api.runs.queued", kind=kind, run_ids=ids, enqueued=enqueued)
    return RunsQueued(run_id=ids[0], run_ids=ids, enqueued=enqueued)


@router.post(
    "/runs/{run_id}/cancel",
    status_code=202,
    response_model=CancelAnswer,
    summary="Cancel a run: a queued one at once, a running one after its current page",
    responses={404: {"description": "no such run"}, 409: {"description": "already finished"}},
    **needs(Role.OPERATOR),
)
def cancel_run(
    session: SessionDep, principal: PrincipalDep, run_id: int = Path(ge=1)
) -> CancelAnswer:
    status = runs.request_cancel(session, run_id)
    if status is None:
        raise HTTPException(status_code=404, detail=f"run {run_id} not found")
    if status not in (RunStatus.CANCELLING, RunStatus.CANCELLED) or (
        status == RunStatus.CANCELLED and not _cancelled_now(session, run_id)
    ):
        raise HTTPException(status_code=409, detail=f"run {run_id} already finished ({status})")
    record_audit(
        session, principal.actor, "sync_run.cancel", f"sync_run:{run_id}", {"status": status}
    )
    session.commit()
    log.info("api.runs.cancel", run_id=run_id, status=status)
    return CancelAnswer(run_id=run_id, status=status)


def _cancelled_now(session: Any, run_id: int) -> bool:
    from app.db.models import SyncRun

    row = session.get(SyncRun, run_id)
    return row is not None and (row.error or "").startswith("cancelled on request")

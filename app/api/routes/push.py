"""``GET /api/v1/push/preview?crm=X[&object=O][&limit=N][&offset=K]``: what ``crmsync push``
would write.

The same preview as ``crmsync push --crm X --dry-run`` (:func:`app.wiring.push.run_push` with
``dry_run``): per object the records to write with each field's old -> new value and reason,
the records counted (unchanged, agreed, skipped, errors), and ``planned_calls``, the exact number
of API calls the push will make without faults. It reads the CS database only: no CRM call.

The counts and ``planned_calls`` always cover the whole push; ``records`` lists ``limit`` records
per object from ``offset`` (the push's order: creates, retries, then changes by CS stamp), so a
client pages through a long preview (``truncated``: more follow). The plan is made again for
each request: a page reflects the data at that moment.

A bad ``crm`` or ``object`` answers 422 in FastAPI's validation shape, naming the parameter
(``{"detail": [{"loc": ["query", "crm"], "msg": ..., "type": ...}]}``).
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query, Request

from app.api.auth import needs
from app.api.deps import SettingsDep
from app.api.paging import invalid
from app.core.access import Role
from app.errors import ConfigError
from app.wiring.push import push_objects, run_push

router = APIRouter(prefix="/api/v1/push", tags=["push"])


_invalid = invalid  # the API's 422 naming the parameter (app.api.paging)


@router.get("/preview", **needs(Role.VIEWER))
def preview(
    request: Request,
    settings: SettingsDep,
    crm: Annotated[Literal["salesforce", "hubspot"], Query(description="The CRM to push to.")],
    object_name: Annotated[
        list[str] | None, Query(alias="object", description="Objects (default: all).")
    ] = None,
    limit: Annotated[int, Query(ge=0, le=10_000, description="Records listed per object.")] = 200,
    offset: Annotated[
        int,
        Query(
            ge=0,
            le=10_000_000,
            description="Records of each object to pass over before listing (paging; the "
            "counts and planned_calls always cover the whole push).",
        ),
    ] = 0,
) -> Any:
    """Per record old -> new and the exact API calls of the next push (no CRM call)."""
    if crm not in settings.enabled_crms:
        return _invalid("crm", f"{crm} is not configured: its URL or credentials are missing", crm)
    try:
        push_objects(settings, crm, object_name)
    except ConfigError as exc:
        return _invalid("object", str(exc), object_name)
    outcome = run_push(
        settings,
        crm,
        object_name,
        dry_run=True,
        session_factory=request.app.state.session_factory,
        triggered_by="api",
    )
    return outcome.summary(limit, offset)

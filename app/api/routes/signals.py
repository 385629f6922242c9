"""``POST /api/v1/signals/{kind}``: signals from the usage feed, helpdesk, survey tool and
billing (issue #18 item 1).

The body is ``{"rows": [...]}``, at most 10,000 rows of one kind (``usage``, ``tickets``,
``nps``, ``surveys``, ``touchpoints``, ``invoices``, ``success_criteria``; columns per kind in
docs/signals.md). Each row is validated on its own and names its account by exactly one of
``account_id`` (CS id), ``sf_id``, ``hs_id`` or ``domain``. The good rows are stored
(:func:`app.db.signal_store.ingest`, the same path as ``crmsync signals import``), even when
others are refused. Idempotent: a row sent again is stored once (its key: docs/signals.md).

Answers:

* **200** every row stored: ``{"kind", "received", "stored", "created", "updated", "rejected":
  0, "accounts", "stored_rows": [[first, last], ...], "rejected_rows": [], "errors": []}``;
* **422** some rows refused: the same document (the good rows *are* stored, listed in
  ``stored_rows``) plus ``detail``, one entry per bad field in FastAPI's validation shape:
  ``{"loc": ["body", "rows", <index>, "<field>"], "index", "field", "msg", "type", "input"}``;
* **422** a body that is not ``{"rows": [...]}``, more than 10,000 rows, or an unknown ``kind``
  (FastAPI's own shape, naming ``body.rows`` or ``path.kind``).
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Path, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict
from sqlalchemy.orm import Session, sessionmaker

from app.api.auth import needs
from app.core.access import Role
from app.db.signal_store import ingest
from app.domain.signal_rows import MAX_BATCH

router = APIRouter(prefix="/api/v1/signals", tags=["signals"])

KindIn = Literal[
    "usage", "tickets", "nps", "surveys", "touchpoints", "invoices", "success_criteria"
]


class SignalBatch(BaseModel):
    """One batch of rows of the path's kind; each row is validated on its own."""

    model_config = ConfigDict(extra="forbid")

    rows: list[Any]


@router.post("/{kind}", **needs(Role.OPERATOR))
def post_signals(
    request: Request,
    kind: Annotated[KindIn, Path(description="The kind of signal the rows are.")],
    batch: SignalBatch,
) -> JSONResponse:
    """Store a batch of signal rows; the good ones even when some are refused."""
    if len(batch.rows) > MAX_BATCH:
        return JSONResponse(
            status_code=422,
            content={
                "detail": [
                    {
                        "loc": ["body", "rows"],
                        "msg": f"{len(batch.rows):,} rows; a batch holds at most {MAX_BATCH:,}",
                        "type": "too_long",
                    }
                ]
            },
        )
    factory: sessionmaker[Session] = request.app.state.session_factory
    result = ingest(factory, kind, batch.rows)
    content = result.as_dict()
    if result.errors:
        content["detail"] = content["errors"]
        return JSONResponse(status_code=422, content=content)
    return JSONResponse(status_code=200, content=content)

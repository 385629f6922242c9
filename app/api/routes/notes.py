"""Handover notes written on the CS side, and pushed to the CRM (issue #17 item 7).

``POST /api/v1/accounts/{id}/notes`` and ``POST /api/v1/opportunities/{id}/notes`` store a note
first (a ``handover_notes`` row with its ``crmsync_id``, its changed columns stamped through
:func:`app.db.cs_writes.stamp_cs_change`) and commit it; only then is it pushed
(:func:`app.wiring.notes.push_note`). The answer is the stored note with its push status per CRM:
**201** when every CRM it belongs in has it, **202** when it stays queued for the next push (the
CRM is not configured or failed): a push failure never loses the note.

``PATCH /api/v1/notes/{id}`` edits the title and the body; the changed columns are stamped, so the
edit pushes (and wins a later conflict under ``newest_wins`` while it is the newer one).
``GET /api/v1/notes/{id}`` reads a note back.

Bad input answers 422 in FastAPI's validation shape, ``{"detail": [{"loc": ["body", "<field>"],
"msg": ..., "type": ...}]}``, naming the field; an unknown account, opportunity or note 404
``{"detail": "..."}``. The body a note is stored with is a handover note
(:func:`app.mappers.notes.compose_note`): see docs/notes.md.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, HTTPException, Path, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field, StringConstraints
from sqlalchemy.orm import Session, sessionmaker

from app.api.auth import needs
from app.api.deps import SessionDep, SettingsDep
from app.core.access import Role
from app.db.cs_writes import stamp_cs_change
from app.db.models import Account, HandoverNote, Opportunity
from app.mappers.handover import parse_handover
from app.mappers.notes import BODY_MAX, STRUCTURED, compose_note
from app.wiring.notes import NotePush, push_note

router = APIRouter(prefix="/api/v1", tags=["notes"])

Text255 = Annotated[str, StringConstraints(max_length=255)]
Item = Annotated[str, StringConstraints(min_length=1, max_length=1000)]


class ContactIn(BaseModel):
    """One person of the handover (domain.md 6.2)."""

    model_config = ConfigDict(extra="forbid")

    role: Literal[
        "primary", "secondary", "champion", "decision_maker", "technical", "executive_sponsor"
    ]
    name: Text255 | None = None
    email: Text255 | None = None
    title: Text255 | None = None


class SoldIn(BaseModel):
    """What was sold, as :func:`app.mappers.handover.parse_handover` structures it."""

    model_config = ConfigDict(extra="forbid")

    plan: Text255 | None = None
    products: list[Text255] | None = None
    seats: Annotated[int, Field(ge=0, le=10_000_000)] | None = None
    currency: Annotated[str, StringConstraints(pattern=r"^[A-Z]{3}$")] | None = None
    arr: Annotated[float, Field(ge=0)] | None = None
    mrr: Annotated[float, Field(ge=0)] | None = None
    term_start_on: Text255 | None = None
    term_end_on: Text255 | None = None
    billing: Text255 | None = None
    auto_renew: bool | None = None
    services: list[Text255] | None = None
    why_they_bought: Annotated[str, StringConstraints(max_length=2000)] | None = None


class NoteIn(BaseModel):
    """A handover note to store and push. ``body`` is free text or a whole handover body; the
    structured columns, when given, are rendered into the body (see docs/notes.md)."""

    model_config = ConfigDict(extra="forbid")

    title: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=255)]
    body: Annotated[str, StringConstraints(max_length=BODY_MAX)] | None = None
    author: Text255 | None = None
    sold: SoldIn | None = None
    contacts: list[ContactIn] | None = None
    goals: list[Item] | None = None
    success_criteria: list[Item] | None = None
    special_terms: Annotated[str, StringConstraints(max_length=2000)] | None = None
    risks: list[Item] | None = None
    fit: Literal["good", "stretch", "bad"] | None = None
    timeline: Annotated[str, StringConstraints(max_length=2000)] | None = None

    def structured(self) -> dict[str, Any]:
        data = self.model_dump(include=set(STRUCTURED), exclude_none=True)
        if "sold" in data:
            data["sold"] = {k: v for k, v in data["sold"].items() if v is not None}
        if "contacts" in data:
            data["contacts"] = [
                {k: v for k, v in c.items() if v is not None} for c in data["contacts"]
            ]
        return data


class NotePatch(BaseModel):
    """An edit: the title, the body, or both."""

    model_config = ConfigDict(extra="forbid")

    title: (
        Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=255)]
        | None
    ) = None
    body: Annotated[str, StringConstraints(max_length=BODY_MAX)] | None = None


class PushStatusOut(BaseModel):
    crm: str
    status: Literal["pushed", "queued"]
    crm_id: str | None = None
    message: str | None = None


class NoteOut(BaseModel):
    """A stored note and, after a write, where it stands in each CRM it belongs in."""

    id: int
    crmsync_id: str | None
    account_id: int | None
    opportunity_id: int | None
    title: str | None
    body: str | None
    author: str | None
    sold: dict[str, Any]
    contacts: list[dict[str, Any]]
    goals: list[str]
    success_criteria: list[str]
    special_terms: str | None
    risks: list[str]
    fit: str | None
    timeline: str | None
    origin: str
    sf_id: str | None
    hs_id: str | None
    sf_parent_id: str | None
    hs_company_id: str | None
    hs_deal_id: str | None
    cs_changed_at: datetime | None
    created_at: datetime
    updated_at: datetime
    push: list[PushStatusOut] = []


_NOTE_COLUMNS = tuple(NoteOut.model_fields)


def _out(note: HandoverNote, pushes: list[NotePush] | None = None) -> dict[str, Any]:
    data = {name: getattr(note, name) for name in _NOTE_COLUMNS if name != "push"}
    data["push"] = [p.as_dict() for p in pushes or ()]
    return NoteOut.model_validate(data).model_dump(mode="json")


def _field_error(field: str, message: str, value: Any = None) -> HTTPException:
    """A 422 in FastAPI's own validation shape, naming ``field`` of the request body."""
    return HTTPException(
        status_code=422,
        detail=[{"type": "value_error", "loc": ["body", field], "msg": message, "input": value}],
    )


def _factory(request: Request) -> sessionmaker[Session]:
    factory: sessionmaker[Session] = request.app.state.session_factory
    return factory


def _answer(note: HandoverNote, pushes: list[NotePush], created: bool) -> JSONResponse:
    everywhere = bool(pushes) and all(p.status == "pushed" for p in pushes)
    status = (201 if created else 200) if everywhere else 202
    return JSONResponse(status_code=status, content=_out(note, pushes))


def _compose(note_in: NoteIn, opportunity_crm_id: str | None) -> tuple[str, dict[str, Any]]:
    structured = note_in.structured()
    if structured and note_in.body and parse_handover(note_in.body).is_handover:
        raise _field_error(
            "body",
            "the body is a whole handover note already: send the structured fields inside it, "
            "or beside a free-text body, not both",
        )
    composed = compose_note(
        note_in.title, note_in.body, structured, opportunity_crm_id=opportunity_crm_id
    )
    if len(composed.body) > BODY_MAX:
        raise _field_error(
            "body",
            f"the note body with its handover lines is {len(composed.body)} characters; "
            f"a CRM note holds at most {BODY_MAX}",
        )
    return composed.body, dict(composed.columns)


def _store(
    session: Session,
    note_in: NoteIn,
    *,
    account: Account | None,
    opportunity: Opportunity | None,
) -> HandoverNote:
    opp_crm_id = None if opportunity is None else (opportunity.sf_id or opportunity.hs_id)
    body, columns = _compose(note_in, opp_crm_id)
    now = datetime.now(UTC)
    note = HandoverNote(
        crmsync_id=str(uuid.uuid4()),
        account_id=account.id if account is not None else None,
        opportunity_id=opportunity.id if opportunity is not None else None,
        title=note_in.title,
        body=body,
        author=note_in.author,
        origin="cs",
        created_at=now,
        updated_at=now,
        **columns,
    )
    if opportunity is not None:
        note.sf_parent_id = opportunity.sf_id
        note.hs_deal_id = opportunity.hs_id
        note.hs_company_id = opportunity.hs_company_id
    elif account is not None:
        note.sf_parent_id = account.sf_id
        note.hs_company_id = account.hs_id
    session.add(note)
    stamp_cs_change(note, ["title", "body", *columns], now)
    session.commit()
    return note


def _account(session: Session, account_id: int) -> Account:
    account = session.get(Account, account_id)
    if account is None or account.deleted_at is not None:
        raise HTTPException(status_code=404, detail=f"account {account_id} not found")
    return account


def _opportunity(session: Session, opportunity_id: int) -> Opportunity:
    opportunity = session.get(Opportunity, opportunity_id)
    if opportunity is None or opportunity.deleted_at is not None:
        raise HTTPException(status_code=404, detail=f"opportunity {opportunity_id} not found")
    return opportunity


@router.post(
    "/accounts/{account_id}/notes",
    summary="Store a handover note on an account, then push it",
    status_code=201,
    response_model=NoteOut,
    responses={202: {"model": NoteOut, "description": "Stored; queued for the next push"}},
    **needs(Role.OPERATOR),
)
def post_account_note(
    account_id: Annotated[int, Path(ge=1)],
    note_in: NoteIn,
    session: SessionDep,
    settings: SettingsDep,
    request: Request,
) -> JSONResponse:
    account = _account(session, account_id)
    note = _store(session, note_in, account=account, opportunity=None)
    pushes = push_note(settings, _factory(request), note.id)
    session.refresh(note)
    return _answer(note, pushes, created=True)


@router.post(
    "/opportunities/{opportunity_id}/notes",
    summary="Store a handover note on an opportunity, then push it",
    status_code=201,
    response_model=NoteOut,
    responses={202: {"model": NoteOut, "description": "Stored; queued for the next push"}},
    **needs(Role.OPERATOR),
)
def post_opportunity_note(
    opportunity_id: Annotated[int, Path(ge=1)],
    note_in: NoteIn,
    session: SessionDep,
    settings: SettingsDep,
    request: Request,
) -> JSONResponse:
    opportunity = _opportunity(session, opportunity_id)
    account = session.get(Account, opportunity.account_id) if opportunity.account_id else None
    note = _store(session, note_in, account=account, opportunity=opportunity)
    pushes = push_note(settings, _factory(request), note.id)
    session.refresh(note)
    return _answer(note, pushes, created=True)


def _note(session: Session, note_id: int) -> HandoverNote:
    note = session.get(HandoverNote, note_id)
    if note is None or note.deleted_at is not None:
        raise HTTPException(status_code=404, detail=f"note {note_id} not found")
    return note


@router.get(
    "/notes/{note_id}",
    summary="Read a handover note",
    response_model=NoteOut,
    **needs(Role.VIEWER),
)
def get_note(note_id: Annotated[int, Path(ge=1)], session: SessionDep) -> dict[str, Any]:
    return _out(_note(session, note_id))


def _retitle(body: str, old: str | None, new: str) -> str:
    """``body`` with its ``Handover: <old title>`` first line naming ``new`` instead."""
    first, sep, rest = body.partition("\n")
    if old is not None and first.strip() == f"Handover: {old}":
        return f"Handover: {new}{sep}{rest}"
    return body


@router.patch(
    "/notes/{note_id}",
    summary="Edit a note's title or body; the edit is pushed",
    response_model=NoteOut,
    responses={202: {"model": NoteOut, "description": "Stored; queued for the next push"}},
    **needs(Role.OPERATOR),
)
def patch_note(
    note_id: Annotated[int, Path(ge=1)],
    patch: NotePatch,
    session: SessionDep,
    settings: SettingsDep,
    request: Request,
) -> JSONResponse:
    if patch.title is None and patch.body is None:
        raise _field_error("body", "nothing to change: send title, body or both")
    note = _note(session, note_id)
    old_body = note.body or ""
    parsed = parse_handover(old_body)
    # A HubSpot note has no title: its Handover: line names it.
    title = patch.title or note.title or parsed.deal_name or ""
    if patch.body is not None:
        kept = {c: getattr(note, c) for c in STRUCTURED}
        composed = compose_note(title, patch.body, kept, opportunity_crm_id=parsed.opportunity_id)
        body, columns = composed.body, dict(composed.columns)
    else:
        body = _retitle(old_body, note.title or parsed.deal_name, title)
        columns = parse_handover(body).columns()
    if len(body) > BODY_MAX:
        raise _field_error(
            "body",
            f"the note body with its handover lines is {len(body)} characters; "
            f"a CRM note holds at most {BODY_MAX}",
        )
    new_values: dict[str, Any] = {"body": body, **columns}
    if patch.title is not None:
        new_values["title"] = patch.title
    changed = [c for c, v in new_values.items() if getattr(note, c) != v]
    if not changed:
        return JSONResponse(status_code=200, content=_out(note))
    now = datetime.now(UTC)
    for column in changed:
        setattr(note, column, new_values[column])
    note.updated_at = now
    stamp_cs_change(note, changed, now)
    session.commit()
    pushes = push_note(settings, _factory(request), note.id)
    session.refresh(note)
    return _answer(note, pushes, created=False)

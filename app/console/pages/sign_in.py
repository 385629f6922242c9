"""Sign in with an API key (exchanged for a session cookie), sign out, and ``/console/``.

The key is checked by :func:`app.db.api_keys.authenticate`, the API's own check, and the
sign-in and sign-out are in the audit log as the key (``console.sign_in``/``console.sign_out``).
"""

from __future__ import annotations

import hmac
import secrets
from typing import Annotated

from fastapi import APIRouter, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from app.console.auth import (
    COOKIE,
    CSRF_FIELD,
    SIGN_IN_COOKIE,
    Viewer,
    bootstrap_key,
    safe_next,
)
from app.console.web import render
from app.db.api_keys import Refusal, authenticate
from app.db.audit import record_audit
from app.db.console_sessions import create_session, end_session
from app.settings import Settings

router = APIRouter(prefix="/console", include_in_schema=False)


@router.get("")
@router.get("/")
def home(user: Viewer) -> RedirectResponse:
    return RedirectResponse("/console/status", status_code=303)


def _sign_in_page(
    request: Request, next_url: str, error: str | None = None, status_code: int = 200
) -> HTMLResponse:
    settings: Settings = request.app.state.settings
    token = request.cookies.get(SIGN_IN_COOKIE) or secrets.token_urlsafe(24)
    response = render(
        request,
        "sign_in.html",
        {
            "next": safe_next(next_url),
            "signin_csrf": token,
            "errors": {"api_key": error} if error else {},
        },
        status_code=status_code,
    )
    response.set_cookie(
        SIGN_IN_COOKIE,
        token,
        httponly=True,
        samesite="strict",
        secure=settings.console_secure_cookie,
        path="/console",
    )
    return response


@router.get("/sign-in", response_class=HTMLResponse)
def sign_in_form(request: Request, next: str = "/console/") -> HTMLResponse:
    return _sign_in_page(request, next)


@router.post("/sign-in", response_model=None)
def sign_in(
    request: Request,
    api_key: Annotated[str, Form(max_length=200)] = "",
    csrf_token: Annotated[str, Form(alias=CSRF_FIELD, max_length=200)] = "",
    next: Annotated[str, Form(max_length=500)] = "/console/",
) -> Response:
    expected = request.cookies.get(SIGN_IN_COOKIE, "")
    if not expected or not hmac.compare_digest(csrf_token.encode(), expected.encode()):
        return _sign_in_page(
            request, next, "the form expired: sign in again from this page", status_code=403
        )
    key = api_key.strip()
    if not key:
        return _sign_in_page(request, next, "paste an API key (crmsync keys create)", 422)
    settings: Settings = request.app.state.settings
    with request.app.state.session_factory() as session:
        found = authenticate(session, key, bootstrap_key=bootstrap_key(settings))
        if isinstance(found, Refusal):
            return _sign_in_page(request, next, found.message, status_code=401)
        token = create_session(
            session,
            found,
            bootstrap_key=bootstrap_key(settings),
            hours=settings.console.session_hours,
        )
        record_audit(session, found.actor, "console.sign_in", None, {"role": found.role.value})
        session.commit()
    response = RedirectResponse(safe_next(next), status_code=303)
    response.set_cookie(
        COOKIE,
        token,
        max_age=settings.console.session_hours * 3600,
        httponly=True,
        samesite="strict",
        secure=settings.console_secure_cookie,
        path="/console",
    )
    response.delete_cookie(SIGN_IN_COOKIE, path="/console")
    return response


@router.post("/sign-out")
def sign_out(request: Request, user: Viewer) -> RedirectResponse:
    token = request.cookies.get(COOKIE, "")
    with request.app.state.session_factory() as session:
        end_session(session, token)
        record_audit(session, user.principal.actor, "console.sign_out", None)
        session.commit()
    response = RedirectResponse("/console/sign-in", status_code=303)
    response.delete_cookie(COOKIE, path="/console")
    return response

"""The console's router (``/console``), its static files and its error pages.

A page module has ``router = APIRouter()`` with paths under ``/console`` and is included in
:data:`router` below (one line per module; docs/console.md, /work notes for console-cs).
"""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from starlette.types import Scope

from app.console.auth import ConsoleForbidden, SignInRequired, sign_in_url
from app.console.pages import (
    accounts,
    errors,
    inbox,
    keys,
    onboarding,
    push_preview,
    runs,
    sign_in,
    status,
)
from app.console.web import render

STATIC = Path(__file__).parent / "static"
#: Static files are named without a version, so a day's cache and ``?v=<app version>`` on
#: every link (base.html): a new release is fetched again, a page view costs no request.
STATIC_CACHE = "public, max-age=86400"

router = APIRouter()
router.include_router(sign_in.router)
router.include_router(status.router)
router.include_router(runs.router)
router.include_router(errors.router)
router.include_router(inbox.router)
router.include_router(keys.router)
# console-cs: the CS pages (accounts, onboarding, push preview) are included here.
router.include_router(accounts.router)
router.include_router(onboarding.router)
router.include_router(push_preview.router)


class CachedStatic(StaticFiles):
    """StaticFiles with a Cache-Control header (Starlette's sends only ETag/Last-Modified)."""

    async def get_response(self, path: str, scope: Scope) -> Response:
        response = await super().get_response(path, scope)
        if response.status_code in (200, 304):
            response.headers["Cache-Control"] = STATIC_CACHE
            response.headers["X-Content-Type-Options"] = "nosniff"
        return response


def install_console(app: FastAPI) -> None:
    """Mount the console on ``app``: pages, ``/console/static`` and its two error answers."""
    app.include_router(router)
    app.mount("/console/static", CachedStatic(directory=STATIC), name="console-static")

    async def on_sign_in_required(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, SignInRequired)
        target = sign_in_url(exc.next_url)
        if request.headers.get("HX-Request") == "true":
            # htmx would swap the sign-in page into a fragment: make it load the whole page.
            return Response(status_code=204, headers={"HX-Redirect": target})
        return RedirectResponse(target, status_code=303)

    async def on_forbidden(request: Request, exc: Exception) -> HTMLResponse:
        assert isinstance(exc, ConsoleForbidden)
        return render(request, "forbidden.html", {"message": exc.message}, status_code=403)

    app.add_exception_handler(SignInRequired, on_sign_in_required)
    app.add_exception_handler(ConsoleForbidden, on_forbidden)

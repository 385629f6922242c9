"""Who is signed in to the console, what their role lets them do, and CSRF.

* :func:`current_user` reads the session cookie (:mod:`app.db.console_sessions`); no valid
  session on a page is a redirect to the sign-in page (:class:`SignInRequired`).
* :func:`role` is the page's dependency:
  ``user: Annotated[ConsoleUser, Depends(role(Role.OPERATOR))]``.
  Too low a role is **403** whatever the template shows; on a POST it also checks the CSRF token
  (form field ``csrf_token`` or header ``X-CSRF-Token``), **403** on a mismatch.
* The CSRF token is an HMAC of the session token: nothing more to store, unguessable without
  the HttpOnly cookie, and it changes with each sign-in.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Annotated
from urllib.parse import quote

from fastapi import Depends, Request

from app.core.access import Role, allows
from app.db.api_keys import Principal
from app.db.console_sessions import load_session
from app.settings import Settings

COOKIE = "crmsync_console"
#: The sign-in form's CSRF cookie (double submit): there is no session yet to derive one from.
SIGN_IN_COOKIE = "crmsync_console_signin"
CSRF_FIELD = "csrf_token"
CSRF_HEADER = "X-CSRF-Token"


class SignInRequired(Exception):
    """No valid session: answered with a redirect to the sign-in page (then back to ``next``)."""

    def __init__(self, next_url: str) -> None:
        super().__init__(next_url)
        self.next_url = next_url


class ConsoleForbidden(Exception):
    """403: the role is too low, or the CSRF token is missing or wrong."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


@dataclass(frozen=True)
class ConsoleUser:
    """The signed-in key (as the API sees a caller) and this session's CSRF token."""

    principal: Principal
    csrf_token: str

    @property
    def role(self) -> Role:
        return self.principal.role

    def can(self, need: Role | str) -> bool:
        """For templates: whether to show an action (the server checks again on POST)."""
        return allows(self.principal.role, Role(need))


def csrf_for(token: str) -> str:
    return hmac.new(token.encode(), b"crmsync-console-csrf", hashlib.sha256).hexdigest()


def bootstrap_key(settings: Settings) -> str | None:
    key = settings.admin_bootstrap_key
    return key.get_secret_value() if key is not None else None


def current_user(request: Request) -> ConsoleUser | None:
    """The signed-in user, or None (no cookie, unknown or ended session)."""
    cached: ConsoleUser | None = getattr(request.state, "console_user", None)
    if cached is not None:
        return cached
    token = request.cookies.get(COOKIE)
    if not token:
        return None
    settings: Settings = request.app.state.settings
    with request.app.state.session_factory() as session:
        principal = load_session(session, token, bootstrap_key=bootstrap_key(settings))
    if principal is None:
        return None
    user = ConsoleUser(principal=principal, csrf_token=csrf_for(token))
    request.state.console_user = user
    request.state.principal = principal
    return user


def _here(request: Request) -> str:
    path = request.url.path
    if request.method == "GET" and request.url.query:
        path += "?" + request.url.query
    return path


async def check_csrf(request: Request, expected: str) -> None:
    """403 unless the POST carries ``expected`` (form field or header)."""
    sent = request.headers.get(CSRF_HEADER)
    if not sent:
        form = await request.form()
        value = form.get(CSRF_FIELD)
        sent = value if isinstance(value, str) else None
    if not sent or not hmac.compare_digest(sent.encode(), expected.encode()):
        raise ConsoleForbidden(
            "the form's security token is missing or out of date: reload the page and try again"
        )


def role(need: Role) -> Callable[[Request], Awaitable[ConsoleUser]]:
    """The dependency of a console route needing ``need``: the user, or a redirect to sign in
    (GET) / 403 (role too low; POST without the CSRF token)."""

    async def dependency(request: Request) -> ConsoleUser:
        user = current_user(request)
        if user is None:
            raise SignInRequired(_here(request))
        if not allows(user.role, need):
            raise ConsoleForbidden(
                f"{request.method} {request.url.path} needs the {need.value} role; the key "
                f"{user.principal.name!r} has {user.role.value}"
            )
        if request.method not in ("GET", "HEAD"):
            await check_csrf(request, user.csrf_token)
        return user

    return dependency


def sign_in_url(next_url: str) -> str:
    return "/console/sign-in?next=" + quote(next_url, safe="/")


def safe_next(next_url: str | None) -> str:
    """Only a console path: never an open redirect to another site."""
    if next_url and next_url.startswith("/console") and not next_url.startswith("//"):
        return next_url
    return "/console/"


#: The three role dependencies, for route signatures: ``def page(user: Viewer) -> ...``.
Viewer = Annotated[ConsoleUser, Depends(role(Role.VIEWER))]
Operator = Annotated[ConsoleUser, Depends(role(Role.OPERATOR))]
Admin = Annotated[ConsoleUser, Depends(role(Role.ADMIN))]

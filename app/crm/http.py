"""The ``requests.Session`` every Salesforce call goes through (crm-api.md §0 and A§2).

``REQUESTS_CA_BUNDLE``/``CURL_CA_BUNDLE`` beat ``Session.verify`` while ``trust_env`` is on
(psf/requests#3829), so with a CA bundle configured (the sandbox, a corporate CA) the session
turns ``trust_env`` off and verifies against that bundle. The cost: proxy variables and
``.netrc`` are ignored; without a CA bundle the environment is honoured as usual.

simple-salesforce passes no timeout, so :class:`TimeoutSession` adds the configured one to every
request that does not set its own.
"""

from __future__ import annotations

from typing import Any

import requests

from app.settings import Settings


class TimeoutSession(requests.Session):
    """A session that applies a default timeout to every request."""

    def __init__(self, timeout: float | tuple[float, float]) -> None:
        super().__init__()
        self.default_timeout = timeout

    def request(
        self, method: str | bytes, url: str | bytes, *args: Any, **kwargs: Any
    ) -> requests.Response:
        kwargs.setdefault("timeout", self.default_timeout)
        return super().request(method, url, *args, **kwargs)


def build_session(settings: Settings) -> requests.Session:
    """A session with the configured CA bundle, no environment CA override, and timeouts."""
    timeout = settings.sync.request_timeout_seconds
    session = TimeoutSession((min(10.0, timeout), timeout))
    if settings.ca_bundle is not None:
        session.trust_env = False
        session.verify = str(settings.ca_bundle)
    return session

"""What a running sandbox tells its users: URLs, credentials, the CA file.

The same facts go to the console (CLI), the info file (``var/sandbox.json``) and the env file
(``CRMSYNC_...`` settings that point crmsync at the sandbox).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

__all__ = [
    "ENV_FILE_HEADER",
    "HubSpotInfo",
    "SalesforceInfo",
    "SandboxInfo",
    "my_domain_url",
    "written_by_sandbox",
]

# The two names of the loopback interface that the test certificate covers (tls.py).
_LOOPBACK_NAMES = {"127.0.0.1": "localhost", "localhost": "127.0.0.1"}


def my_domain_url(login_url: str) -> str:
    """The sandbox org's instance URL, distinct from its login host as a My Domain is from
    ``login.salesforce.com``: ``https://127.0.0.1:PORT`` logs in, ``https://localhost:PORT``
    serves the data (same server; the certificate names both). Other hosts have no second name
    and keep one URL."""
    parts = urlsplit(login_url)
    other = _LOOPBACK_NAMES.get(parts.hostname or "")
    if other is None or parts.port is None:
        return login_url
    return f"{parts.scheme}://{other}:{parts.port}"


#: First line of every env file the sandbox writes: ``crmsync sandbox`` overwrites a file only
#: when it starts with this line (or the header of earlier versions), so a user's own ``.env``
#: with real tokens is never replaced without ``--force``.
ENV_FILE_HEADER = "# written by crmsync sandbox (rewritten on each start; do not edit)"
_OLD_ENV_FILE_HEADERS = ("# crmsync settings for the local sandbox",)


def written_by_sandbox(path: Path) -> bool:
    """True when ``path`` is missing, empty, or an env file the sandbox wrote itself."""
    try:
        with path.open(encoding="utf-8", errors="replace") as handle:
            text = handle.read(4096)
    except FileNotFoundError:
        return True
    first = text.lstrip("\ufeff").splitlines()[0].strip() if text.strip() else ""
    return not text.strip() or first in (ENV_FILE_HEADER, *_OLD_ENV_FILE_HEADERS)


@dataclass(frozen=True)
class SalesforceInfo:
    instance_url: str  # the org's My Domain: data calls (and the session id's instance)
    api_version: str
    access_token: str  # a session id, valid until /__sandbox/tokens/expire
    client_id: str
    client_secret: str
    organization_id: str
    login_url: str = ""  # where POST /services/oauth2/token goes (login.salesforce.com's role)
    username: str = ""  # the integration user (JWT ``sub``)
    refresh_token: str = ""  # refresh-token flow
    jwt_private_key_file: str | None = None  # signs JWT assertions (None: the user's own key)
    jwt_certificate_file: str = ""  # the certificate the sandbox's connected app checks


@dataclass(frozen=True)
class HubSpotInfo:
    base_url: str
    access_token: str  # private app token
    app_secret: str
    portal_id: int
    client_id: str = ""  # OAuth app
    client_secret: str = ""
    refresh_token: str = ""


@dataclass(frozen=True)
class SandboxInfo:
    salesforce: SalesforceInfo
    hubspot: HubSpotInfo
    ca_file: str
    control_url: str

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def env(self) -> dict[str, str]:
        """The crmsync settings that point it at this sandbox."""
        sf, hs = self.salesforce, self.hubspot
        return {
            "CRMSYNC_SALESFORCE_LOGIN_URL": sf.login_url or sf.instance_url,
            "CRMSYNC_SALESFORCE_INSTANCE_URL": sf.instance_url,
            "CRMSYNC_SALESFORCE_API_VERSION": sf.api_version,
            "CRMSYNC_SALESFORCE_CLIENT_ID": sf.client_id,
            "CRMSYNC_SALESFORCE_CLIENT_SECRET": sf.client_secret,
            "CRMSYNC_SALESFORCE_ACCESS_TOKEN": sf.access_token,
            "CRMSYNC_SALESFORCE_ORGANIZATION_ID": sf.organization_id,
            "CRMSYNC_HUBSPOT_BASE_URL": hs.base_url,
            "CRMSYNC_HUBSPOT_ACCESS_TOKEN": hs.access_token,
            "CRMSYNC_HUBSPOT_APP_SECRET": hs.app_secret,
            "CRMSYNC_CA_BUNDLE": self.ca_file,
        }

    def write_info_file(self, path: Path) -> None:
        """Write atomically (temp file + rename) so a reader polling for it never sees half."""
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(json.dumps(self.to_dict(), indent=2) + "\n")
        tmp.replace(path)

    def write_env_file(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        lines = [f"{name}={value}" for name, value in self.env().items()]
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(ENV_FILE_HEADER + "\n" + "\n".join(lines) + "\n")
        tmp.replace(path)

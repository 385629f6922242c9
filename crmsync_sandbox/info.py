"""What a running sandbox tells its users: URLs, credentials, the CA file.

The same facts go to the console (CLI), the info file (``var/sandbox.json``) and the env file
(``CRMSYNC_...`` settings that point crmsync at the sandbox).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

__all__ = ["ENV_FILE_HEADER", "HubSpotInfo", "SalesforceInfo", "SandboxInfo", "written_by_sandbox"]

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
    instance_url: str
    api_version: str
    access_token: str
    client_id: str
    client_secret: str
    organization_id: str


@dataclass(frozen=True)
class HubSpotInfo:
    base_url: str
    access_token: str
    app_secret: str
    portal_id: int


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

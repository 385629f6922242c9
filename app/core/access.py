"""Who may call what on the admin API: three roles, each allowed what the one below may do.

* ``viewer`` reads (runs, errors, inbox, status, audit, accounts, previews);
* ``operator`` also triggers, retries, resolves, replays and writes CS data (notes);
* ``admin`` also manages API keys.

Pure names shared by the database (``admin_api_keys.role``), the API dependency and the CLI.
"""

from __future__ import annotations

from enum import StrEnum


class Role(StrEnum):
    VIEWER = "viewer"
    OPERATOR = "operator"
    ADMIN = "admin"


_RANK = {Role.VIEWER: 0, Role.OPERATOR: 1, Role.ADMIN: 2}


def allows(have: Role, need: Role) -> bool:
    """Whether a key of role ``have`` may call a route that needs ``need``."""
    return _RANK[have] >= _RANK[need]

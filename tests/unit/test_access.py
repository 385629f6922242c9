"""The role order: each role may do what the roles below it may."""

from __future__ import annotations

import pytest

from app.core.access import Role, allows


@pytest.mark.parametrize(
    ("have", "need", "allowed"),
    [
        (Role.VIEWER, Role.VIEWER, True),
        (Role.VIEWER, Role.OPERATOR, False),
        (Role.VIEWER, Role.ADMIN, False),
        (Role.OPERATOR, Role.VIEWER, True),
        (Role.OPERATOR, Role.OPERATOR, True),
        (Role.OPERATOR, Role.ADMIN, False),
        (Role.ADMIN, Role.VIEWER, True),
        (Role.ADMIN, Role.OPERATOR, True),
        (Role.ADMIN, Role.ADMIN, True),
    ],
)
def test_allows(have: Role, need: Role, allowed: bool) -> None:
    assert allows(have, need) is allowed

"""Padding a page's rows to one column set (app/db/bulk.py ``uniform``): one statement per group."""

from __future__ import annotations

from typing import Any

from app.db import bulk
from app.db.base import Base
from app.db.models import Account  # noqa: F401  (registers the table)

ACCOUNTS = Base.metadata.tables["accounts"]


def test_missing_columns_keep_the_current_value_or_take_the_insert_default() -> None:
    current = {"sf_id": "001B", "name": "Old", "arr": 5, "flags": ["x"]}
    pending: list[tuple[dict[str, Any] | None, dict[str, Any]]] = [
        (None, {"sf_id": "001A", "name": "New", "arr": 1}),
        (current, {"sf_id": "001B", "name": "Renamed", "flags": ["y"]}),
    ]
    columns, rows = bulk.uniform(ACCOUNTS, pending)
    assert columns == ["arr", "flags", "name", "sf_id"]  # the union, sorted: one plan per set
    assert rows[0]["flags"] == []  # a create takes the insert default
    assert rows[1]["arr"] == 5  # an update writes the stored value back
    assert rows[1]["flags"] == ["y"]  # what the row sets wins
    assert rows[0] is pending[0][1]  # padded in place: the caller reports the row as offered


def test_required_columns_are_always_written() -> None:
    columns, rows = bulk.uniform(ACCOUNTS, [(None, {"sf_id": "001A"})])
    assert "name" in bulk.required_columns(ACCOUNTS)
    assert columns == ["name", "sf_id"]
    assert rows == [{"sf_id": "001A", "name": None}]  # the database refuses it, named


def test_nothing_to_pad() -> None:
    assert bulk.uniform(ACCOUNTS, []) == ([], [])

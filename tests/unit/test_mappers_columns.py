"""The mappers' column constants match app.db.models, and the mappers stay pure."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
from sqlalchemy import BigInteger, Integer, Numeric, String

from app.db import models  # noqa: F401  (registers the tables on Base.metadata)
from app.db.base import Base
from app.mappers.columns import (
    CS_COLUMNS,
    INTEGER_BITS,
    NOT_NULL_DEFAULTS,
    NUMERIC_SIZES,
    PLACEHOLDER_SOURCES,
    REQUIRED_COLUMNS,
    RESERVED_COLUMNS,
    STRING_LENGTHS,
    is_mappable,
)

TABLES = sorted(CS_COLUMNS)
ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("table", TABLES)
def test_columns_match_models(table: str) -> None:
    columns = Base.metadata.tables[table].columns
    assert {c.name for c in columns} == CS_COLUMNS[table]
    lengths = {
        c.name: c.type.length
        for c in columns
        if isinstance(c.type, String) and c.type.length is not None
    }
    assert lengths == dict(STRING_LENGTHS[table])


@pytest.mark.parametrize("table", TABLES)
def test_numeric_sizes_match_models(table: str) -> None:
    """The range checks of the mapping are derived from these: they must be the models' types."""
    columns = [c for c in Base.metadata.tables[table].columns if is_mappable(table, c.name)]
    numeric = {
        c.name: (c.type.precision, c.type.scale)
        for c in columns
        if isinstance(c.type, Numeric) and not isinstance(c.type, Integer)
    }
    assert numeric == dict(NUMERIC_SIZES[table])
    bits = {
        c.name: 64 if isinstance(c.type, BigInteger) else 32
        for c in columns
        if isinstance(c.type, Integer)
    }
    assert bits == dict(INTEGER_BITS[table])


@pytest.mark.parametrize("table", TABLES)
def test_placeholders_cover_the_required_columns(table: str) -> None:
    assert set(PLACEHOLDER_SOURCES[table]) == REQUIRED_COLUMNS[table]
    for sources in PLACEHOLDER_SOURCES[table].values():
        assert set(sources) <= CS_COLUMNS[table]


@pytest.mark.parametrize("table", TABLES)
def test_not_null_columns_are_covered(table: str) -> None:
    not_null = {c.name for c in Base.metadata.tables[table].columns if not c.nullable}
    covered = set(NOT_NULL_DEFAULTS[table]) | REQUIRED_COLUMNS[table] | RESERVED_COLUMNS
    assert not_null - {"flags"} <= covered


FORBIDDEN = (
    "app.db",
    "app.crm",
    "app.api",
    "app.jobs",
    "app.sync",
    "crmsync_sandbox",
    "sqlalchemy",
    "requests",
    "httpx",
    "simple_salesforce",
    "hubspot",
    "fastapi",
)
PURE_FILES = [*sorted((ROOT / "app" / "mappers").glob("*.py")), ROOT / "app/sync/cursor.py"]


@pytest.mark.parametrize("path", PURE_FILES, ids=lambda p: p.name)
def test_pure_modules_import_no_io(path: Path) -> None:
    allowed = {"app.crm.base"} if path.name == "cursor.py" else set()
    if path.name == "push_plan.py":
        allowed = {"app.crm.writes"}  # pure types: the planner's output is WriteOps
    imported: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            imported |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            imported.add(node.module)
    bad = {
        name
        for name in imported - allowed
        if any(name == f or name.startswith(f + ".") for f in FORBIDDEN)
    }
    assert not bad, f"{path.name} imports {sorted(bad)}"

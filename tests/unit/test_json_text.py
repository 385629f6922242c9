"""``app.db.types.json_text`` (the bulk writers' JSON encoder) reads back as the value
``json.dumps`` (SQLAlchemy's encoder) wrote, and refuses what ``json.dumps`` refuses."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from app.db.types import json_text

_scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**63 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text()
)
_keys = st.text() | st.integers(min_value=-(2**63), max_value=2**63 - 1)
_documents = st.recursive(
    _scalars,
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.tuples(inner, inner)
        | st.dictionaries(_keys, inner, max_size=4)
    ),
    max_leaves=20,
)


@given(_documents)
def test_reads_back_as_json_dumps_wrote(value: Any) -> None:
    assert json.loads(json_text(value)) == json.loads(json.dumps(value))


def test_a_snapshot_like_document() -> None:
    doc = {"components": {"usage": {"value": 62.5, "inputs": {"é": [1, 2.0]}}}, 3: None}
    assert json.loads(json_text(doc)) == json.loads(json.dumps(doc))


@pytest.mark.parametrize(
    "value", [date(2026, 1, 2), datetime(2026, 1, 2, tzinfo=UTC), Decimal("1.5"), {1, 2}]
)
def test_refuses_what_json_dumps_refuses(value: Any) -> None:
    with pytest.raises(TypeError):
        json.dumps(value)
    with pytest.raises(TypeError):
        json_text({"x": value})

"""The ledger hash: equal values hash equal across the types they take between CRM and CS."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta, timezone
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from app.mappers.ledger import canonical, value_hash


@pytest.mark.parametrize(
    ("a", "b"),
    [
        (Decimal("1.50"), 1.5),
        (Decimal("100"), 100),
        (Decimal("0.00"), 0),
        (Decimal("-0"), 0),
        (None, ""),
        (None, "   "),
        (datetime(2024, 3, 2, 8, 15, 30), datetime(2024, 3, 2, 8, 15, 30, tzinfo=UTC)),
        (
            datetime(2024, 3, 2, 9, 15, 30, tzinfo=timezone(timedelta(hours=1))),
            datetime(2024, 3, 2, 8, 15, 30, tzinfo=UTC),
        ),
        ([1, "a"], (Decimal(1), "a")),
        ({"b": 1, "a": [2]}, {"a": (2,), "b": Decimal("1.0")}),
    ],
)
def test_equal_values_hash_equal(a: Any, b: Any) -> None:
    assert value_hash(a) == value_hash(b)


@pytest.mark.parametrize(
    ("a", "b"),
    [
        (True, 1),
        (False, 0),
        (False, None),
        ("1", 1),
        (date(2024, 3, 2), datetime(2024, 3, 2, tzinfo=UTC)),
        ("2024-03-02", date(2024, 3, 2)),
        ("Acme", "acme"),
        ("a ", "a"),
        ([1, 2], [2, 1]),
        (Decimal("1.5"), Decimal("1.50001")),
    ],
)
def test_different_values_hash_differently(a: Any, b: Any) -> None:
    assert value_hash(a) != value_hash(b)


def test_hash_fits_the_ledger_column() -> None:
    assert len(value_hash("x" * 10_000)) == 64


@given(st.decimals(allow_nan=False, allow_infinity=False, places=4))
def test_a_decimal_and_its_string_round_trip_hash_equal(value: Decimal) -> None:
    assert value_hash(value) == value_hash(Decimal(str(value)))
    assert canonical(value) == canonical(value.normalize())

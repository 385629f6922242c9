"""The CSV side of ``crmsync signals import`` (issue #18 item 1), without a process: the header
checks that refuse a whole file before anything is stored, and how cells become row values."""

from __future__ import annotations

import csv
import io

import pytest

from app.cli.signals_import import HeaderError, check_header, read_batches


@pytest.mark.parametrize(
    ("header", "words"),
    [
        ("domain,active_users_30d", "'observed_on' is missing"),
        ("domain,observed_on,active_users_30d,colour", "'colour' is not a usage column"),
        ("observed_on,active_users_30d", "no account column"),
        ("domain,domain,observed_on,active_users_30d", "named twice"),
        ("", "the file is empty"),
    ],
)
def test_a_header_that_cannot_carry_the_rows_is_refused(header: str, words: str) -> None:
    row = next(csv.reader(io.StringIO(header)), None)
    with pytest.raises(HeaderError, match=words):
        check_header("usage", row)


def test_a_good_header_keeps_its_order() -> None:
    names = check_header("tickets", [" hs_id", "opened_at ", "external_id"])
    assert names == ["hs_id", "opened_at", "external_id"]


def test_cells_become_rows_with_line_numbers() -> None:
    text = 'a,b\n1,\n\n"x\ny",2\n3,4,5\n'
    reader = csv.reader(io.StringIO(text))
    next(reader)
    batches = list(read_batches(reader, ["a", "b"], size=2))
    assert [lines for _rows, lines in batches] == [[2, 5], [6]]
    rows = [r for rows, _lines in batches for r in rows]
    assert rows[0] == {"a": "1"}  # an empty cell is a value not given
    assert rows[1] == {"a": "x\ny", "b": "2"}  # a quoted cell over two lines: its last line
    assert rows[2] == {"a": "3", "b": "4", "(extra cell)": "5"}  # refused by the row model

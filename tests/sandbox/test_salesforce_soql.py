"""SOQL parser and compiler: pure tests, no server."""

from __future__ import annotations

import sqlite3
import threading
from datetime import UTC, date, datetime

import pytest

from crmsync_sandbox.salesforce import soql
from crmsync_sandbox.salesforce.compiler import SoqlError, compile_query
from crmsync_sandbox.salesforce.schema import build_objects, id18, make_id

NOW = datetime(2024, 5, 10, 12, 0, tzinfo=UTC)


def test_parse_full_statement() -> None:
    q = soql.parse(
        "select Id, Account.Name from Opportunity where (Amount > 10 or not Name like 'a%') "
        "and StageName in ('Closed Won', 'It\\'s') order by Name desc nulls last, Id "
        "limit 5 offset 3"
    )
    assert q.from_object == "Opportunity"
    assert q.select[1] == soql.FieldRef(("Account", "Name"), 1, 12)
    assert isinstance(q.where, soql.And)
    in_cond = q.where.items[1]
    assert isinstance(in_cond, soql.In)
    assert in_cond.values == (soql.Quoted("Closed Won"), soql.Quoted("It's"))
    assert q.order_by[0].descending
    assert q.order_by[0].nulls_last
    assert q.order_by[1].field.path == ("Id",)
    assert not q.order_by[1].descending
    assert (q.limit, q.offset) == (5, 3)


def test_parse_literals() -> None:
    q = soql.parse(
        "SELECT COUNT() FROM Account WHERE SystemModstamp >= 2024-01-01T10:00:00+02:00 "
        "AND Contract_End__c = 2024-02-29 AND CreatedDate = LAST_N_DAYS:30 AND X = TODAY "
        "AND Y != null AND Z = false AND N NOT IN (1, 2.5)"
    )
    assert q.is_count
    assert isinstance(q.where, soql.And)
    values = [getattr(c, "value", None) for c in q.where.items]
    assert values[0] == datetime(2024, 1, 1, 8, 0, tzinfo=UTC)
    assert values[1] == date(2024, 2, 29)
    assert values[2] == soql.DateLiteral("LAST_N_DAYS", 30)
    assert values[3] == soql.DateLiteral("TODAY")
    assert values[4] == soql.Null()
    assert values[5] is False
    last = q.where.items[6]
    assert isinstance(last, soql.In)
    assert last.negated
    assert last.values == (1, 2.5)


def test_keywords_do_not_swallow_field_names() -> None:
    q = soql.parse("SELECT Notes__c, Order__c FROM Account WHERE Nullable__c = NULL ORDER BY Descx")
    assert [s.path for s in q.select if isinstance(s, soql.FieldRef)] == [
        ("Notes__c",),
        ("Order__c",),
    ]


@pytest.mark.parametrize(
    "text",
    [
        "SELECT FROM Account",
        "SELECT Id FROM Account GROUP BY Name",
        'SELECT Id FROM Account WHERE Name = "double"',
        "SELECT Id FROM Account WHERE",
        "SELECT Id, (SELECT Id FROM Contacts) FROM Account",
        "SELECT Id FROM Account LIMIT x",
    ],
)
def test_malformed(text: str) -> None:
    with pytest.raises(soql.SoqlSyntaxError) as info:
        soql.parse(text)
    assert "ERROR at Row:1:Column:" in info.value.message


@pytest.fixture(scope="module")
def objects() -> dict[str, object]:
    return build_objects({"Account": {"Extra__c": "double"}})  # type: ignore[return-value]


def _compile(text: str, objects: object) -> object:
    return compile_query(text, objects, NOW)  # type: ignore[arg-type]


def test_unknown_field_message(objects: object) -> None:
    with pytest.raises(SoqlError) as info:
        _compile("SELECT Idd FROM Account", objects)
    assert info.value.code == "INVALID_FIELD"
    assert info.value.message.startswith(
        "\nSELECT Idd FROM Account\n       ^\nERROR at Row:1:Column:8\n"
        "No such column 'Idd' on entity 'Account'. If you are attempting to use a custom field"
    )


def test_unknown_object_and_relationship(objects: object) -> None:
    with pytest.raises(SoqlError) as info:
        _compile("SELECT Id FROM Widget", objects)
    assert info.value.code == "INVALID_TYPE"
    assert "sObject type 'Widget' is not supported" in info.value.message
    with pytest.raises(SoqlError) as info:
        _compile("SELECT Foo.Name FROM Opportunity", objects)
    assert info.value.code == "INVALID_FIELD"
    assert "Didn't understand relationship 'Foo'" in info.value.message


def test_type_checks_and_offset(objects: object) -> None:
    with pytest.raises(SoqlError) as info:
        _compile("SELECT Id FROM Account WHERE SystemModstamp > '2024-01-01'", objects)
    assert info.value.code == "INVALID_FIELD"
    assert "must be of type dateTime" in info.value.message
    with pytest.raises(SoqlError) as info:
        _compile("SELECT Id FROM Account OFFSET 2001", objects)
    assert info.value.code == "NUMBER_OUTSIDE_VALID_RANGE"
    compiled = _compile("SELECT Id, Extra__c FROM Account OFFSET 2000", objects)
    assert compiled.offset == 2000  # type: ignore[attr-defined]


def test_compiles_to_parameterised_sql_using_the_stamp_index(objects: object) -> None:
    from crmsync_sandbox.salesforce.store import Store

    class Ctx:
        db = sqlite3.connect(":memory:")
        lock = threading.RLock()

    store = Store(Ctx(), objects)  # type: ignore[arg-type]
    store.create_tables()
    compiled = _compile(
        "SELECT Id FROM Account WHERE SystemModstamp >= 2024-01-01T00:00:00Z "
        "ORDER BY SystemModstamp, Id",
        objects,
    )
    sql, params = compiled.rows_sql(False, 2001)  # type: ignore[attr-defined]
    assert "?" in sql
    assert "2024-01-01T00:00:00.000+0000" in params
    plan = " ".join(str(r) for r in Ctx.db.execute("EXPLAIN QUERY PLAN " + sql, params))
    assert "sf_account_stamp" in plan
    assert "TEMP B-TREE" not in plan


def test_ids_have_checksums() -> None:
    assert id18("001000000000001") == "001000000000001AAA"
    assert make_id("001", 1, seeded=True) == make_id("001", 1, seeded=True)
    assert len(make_id("006", 123456, seeded=False)) == 18

"""Where the real CRM refuses data or changes related records, the sandbox does the same, so tests
meet the errors users meet: required and over-long text, deleting an Account with children, and
dates of the year 0001 printed with four digits."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import requests

from crmsync_sandbox import Sandbox
from crmsync_sandbox.hubspot.schema import iso_from_ms, ms_from_text
from crmsync_sandbox.salesforce.schema import csv_value, make_custom_field, render_datetime
from crmsync_sandbox.salesforce.store import check_size


def _sf(sandbox: Sandbox, session: requests.Session, method: str, path: str, **kw: Any) -> Any:
    info = sandbox.info.salesforce
    url = f"{info.instance_url}/services/data/v{info.api_version}/{path}"
    headers = {"Authorization": f"Bearer {info.access_token}"}
    return session.request(method, url, headers=headers, timeout=30, **kw)


def _create(sandbox: Sandbox, session: requests.Session, obj: str, body: dict[str, Any]) -> str:
    response = _sf(sandbox, session, "POST", f"sobjects/{obj}", json=body)
    assert response.status_code == 201, response.text
    return str(response.json()["id"])


def test_an_empty_account_name_is_refused_as_salesforce_does(
    sandbox: Sandbox, sf_session: requests.Session
) -> None:
    response = _sf(sandbox, sf_session, "POST", "sobjects/Account", json={"Name": ""})
    assert response.status_code == 400
    assert response.json() == [
        {
            "message": "Required fields are missing: [Name]",
            "errorCode": "REQUIRED_FIELD_MISSING",
            "fields": ["Name"],
        }
    ]


def test_clearing_an_account_name_is_refused(
    sandbox: Sandbox, sf_session: requests.Session
) -> None:
    account = _create(sandbox, sf_session, "Account", {"Name": "Keep me"})
    response = _sf(sandbox, sf_session, "PATCH", f"sobjects/Account/{account}", json={"Name": ""})
    assert response.status_code == 400
    assert response.json()[0]["errorCode"] == "REQUIRED_FIELD_MISSING"


def test_text_longer_than_its_declared_length_is_string_too_long(
    sandbox: Sandbox, sf_session: requests.Session
) -> None:
    assert _create(sandbox, sf_session, "Account", {"Name": "N" * 255})
    name = "N" * 256
    response = _sf(sandbox, sf_session, "POST", "sobjects/Account", json={"Name": name})
    assert response.status_code == 400
    assert response.json() == [
        {
            "message": f"Account Name: data value too large: {name} (max length=255)",
            "errorCode": "STRING_TOO_LONG",
            "fields": ["Name"],
        }
    ]
    # Every text field has its limit, not only Name (BillingCountry is 80 long).
    body = {"Name": "Short", "BillingCountry": "C" * 81}
    response = _sf(sandbox, sf_session, "POST", "sobjects/Account", json=body)
    assert response.status_code == 400
    assert response.json()[0]["errorCode"] == "STRING_TOO_LONG"
    assert response.json()[0]["fields"] == ["BillingCountry"]


def test_collections_report_string_too_long_per_record(
    sandbox: Sandbox, sf_session: requests.Session
) -> None:
    records = [
        {"attributes": {"type": "Account"}, "Name": "Fine"},
        {"attributes": {"type": "Opportunity"}, "Name": "O" * 121, "StageName": "Prospecting"},
    ]
    response = _sf(sandbox, sf_session, "POST", "composite/sobjects", json={"records": records})
    assert response.status_code == 200
    first, second = response.json()
    assert first["success"] is True
    assert second["success"] is False
    assert second["errors"][0]["statusCode"] == "STRING_TOO_LONG"
    assert second["errors"][0]["message"].endswith("(max length=120)")


def test_an_int_field_holds_at_most_nine_digits(
    sandbox: Sandbox, sf_session: requests.Session
) -> None:
    body = {"Name": "Big", "NumberOfEmployees": 10**9}
    response = _sf(sandbox, sf_session, "POST", "sobjects/Account", json=body)
    assert response.status_code == 400
    assert response.json()[0]["errorCode"] == "NUMBER_OUTSIDE_VALID_RANGE"
    assert response.json()[0]["fields"] == ["NumberOfEmployees"]


def test_deleting_an_account_deletes_its_opportunities_and_notes(
    sandbox: Sandbox, sf_session: requests.Session
) -> None:
    account = _create(sandbox, sf_session, "Account", {"Name": "Cascade Ltd"})
    other = _create(sandbox, sf_session, "Account", {"Name": "Bystander Ltd"})
    opportunity = _create(
        sandbox,
        sf_session,
        "Opportunity",
        {
            "Name": "Deal",
            "StageName": "Prospecting",
            "CloseDate": "2030-01-01",
            "AccountId": account,
        },
    )
    kept = _create(
        sandbox,
        sf_session,
        "Opportunity",
        {
            "Name": "Other",
            "StageName": "Prospecting",
            "CloseDate": "2030-01-01",
            "AccountId": other,
        },
    )
    note = _create(sandbox, sf_session, "Note", {"Title": "Hi", "ParentId": account})

    assert _sf(sandbox, sf_session, "DELETE", f"sobjects/Account/{account}").status_code == 204

    read = _sf(sandbox, sf_session, "GET", f"sobjects/Opportunity/{opportunity}")
    assert read.status_code == 404
    assert read.json()[0]["errorCode"] == "ENTITY_IS_DELETED"
    query = f"SELECT Id, IsDeleted FROM Opportunity WHERE Id IN ('{opportunity}', '{kept}')"
    live = _sf(sandbox, sf_session, "GET", "query", params={"q": query}).json()["records"]
    assert [r["Id"] for r in live] == [kept]
    every = _sf(sandbox, sf_session, "GET", "queryAll", params={"q": query}).json()["records"]
    assert {r["Id"]: r["IsDeleted"] for r in every} == {opportunity: True, kept: False}
    note_query = f"SELECT Id, IsDeleted FROM Note WHERE Id = '{note}'"
    notes = _sf(sandbox, sf_session, "GET", "queryAll", params={"q": note_query}).json()
    assert notes["records"][0]["IsDeleted"] is True


def test_datetimes_of_the_year_0001_have_four_digit_years() -> None:
    first = datetime(1, 1, 1, tzinfo=UTC)
    assert render_datetime(first) == "0001-01-01T00:00:00.000+0000"
    stamp = make_custom_field("Moment__c", "datetime")
    assert csv_value(stamp, render_datetime(first)) == "0001-01-01T00:00:00.000Z"
    assert iso_from_ms(ms_from_text("0001-01-01T00:00:00Z")) == "0001-01-01T00:00:00.000Z"
    assert iso_from_ms(ms_from_text("2024-03-02T08:15:30.123Z")) == "2024-03-02T08:15:30.123Z"


def test_a_year_0001_datetime_round_trips_through_the_salesforce_api(
    sandbox: Sandbox, sf_session: requests.Session
) -> None:
    sandbox.control(
        "POST",
        "/salesforce/fields",
        json={"object": "Account", "name": "Moment__c", "type": "datetime"},
    )
    body = {"Name": "Old", "Moment__c": "0001-01-01T00:00:00.000+0000"}
    account = _create(sandbox, sf_session, "Account", body)
    read = _sf(sandbox, sf_session, "GET", f"sobjects/Account/{account}")
    assert read.json()["Moment__c"] == "0001-01-01T00:00:00.000+0000"


def test_a_year_0001_datetime_round_trips_through_the_hubspot_api(sandbox: Sandbox) -> None:
    info = sandbox.info.hubspot
    with sandbox.session() as session:
        response = session.post(
            f"{info.base_url}/crm/v3/objects/deals",
            json={"properties": {"dealname": "Old", "closedate": "0001-01-01T00:00:00Z"}},
            headers={"Authorization": f"Bearer {info.access_token}"},
            timeout=30,
        )
    assert response.status_code == 201, response.text
    assert response.json()["properties"]["closedate"] == "0001-01-01T00:00:00.000Z"


def test_the_seed_holds_only_values_salesforce_would_accept(sandbox: Sandbox) -> None:
    """The seed is written past the validation; it must still fit the declared sizes."""
    emulator = sandbox.ctx.emulators["salesforce"]
    checked = 0
    for obj in emulator.objects.values():
        sized = [f for f in obj.fields.values() if f.length or f.type == "int"]
        columns = ", ".join(f'"{f.name}"' for f in sized)
        with sandbox.ctx.lock:
            rows = sandbox.ctx.db.execute(f"SELECT {columns} FROM {obj.table}").fetchall()
        for row in rows:
            for f, value in zip(sized, row, strict=True):
                check_size(f, value)
                checked += 1
        for name in obj.required:
            with sandbox.ctx.lock:
                empty = sandbox.ctx.db.execute(
                    f'SELECT COUNT(*) FROM {obj.table} WHERE "{name}" IS NULL OR "{name}" = \'\''
                ).fetchone()[0]
            assert empty == 0, (obj.name, name)
    assert checked > 500

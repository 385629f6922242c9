"""HubSpot emulator: auth, CRM v3 object list/get/create/update/archive/merge, webhooks trigger.

Driven with hubspot-api-client over HTTPS (trustme CA), as crmsync's adapter will drive it.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import urllib3
from hubspot.crm.companies import ApiException as CompaniesApiException
from hubspot.crm.deals import ApiException as DealsApiException
from hubspot.crm.objects.notes import ApiException as NotesApiException
from hubspot_harness import TIMEOUT, MiniPlan, Running, serve


@pytest.fixture(scope="module")
def hs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Running]:
    with serve(tmp_path_factory.mktemp("hs"), plan=MiniPlan(accounts=30)) as running:
        yield running


def _err(exc: Any) -> dict[str, Any]:
    body: dict[str, Any] = json.loads(exc.body)
    return body


def test_bad_token_gets_documented_401(hs: Running) -> None:
    api = hs.client(token="pat-na1-wrong")
    with pytest.raises(CompaniesApiException) as info:
        api.crm.companies.basic_api.get_page(limit=1, _request_timeout=TIMEOUT)
    assert info.value.status == 401
    body = _err(info.value)
    assert body["category"] == "INVALID_AUTHENTICATION"
    assert body["message"].startswith("Authentication credentials not found.")
    assert info.value.headers["X-HubSpot-Auth-Failure"] == "401 Unauthorized"


def test_list_pages_to_the_end_with_opaque_cursor(hs: Running) -> None:
    api = hs.client()
    seen: list[str] = []
    after = None
    pages = 0
    while True:
        page = api.crm.deals.basic_api.get_page(
            limit=7, after=after, properties=["dealname", "dealstage"], _request_timeout=TIMEOUT
        )
        pages += 1
        seen.extend(r.id for r in page.results)
        if page.paging is None:
            break
        after = page.paging.next.after
        assert not after.isdigit()  # opaque
    assert len(seen) == 60 == len(set(seen))
    assert pages == 9
    assert seen == sorted(seen)
    first = api.crm.deals.basic_api.get_page(limit=1, _request_timeout=TIMEOUT).results[0]
    # default deal properties when none are requested
    assert set(first.properties) >= {"dealname", "amount", "pipeline", "dealstage", "closedate"}


def test_properties_comma_joined_and_unknown_ignored(hs: Running) -> None:
    pool = urllib3.PoolManager(ca_certs=hs.ca_file)
    resp = pool.request(
        "GET",
        f"{hs.base_url}/crm/v3/objects/companies?limit=2&properties=name,arr&properties=nope"
        "&archived=FALSE",
        headers={"Authorization": f"Bearer {hs.token}"},
    )
    assert resp.status == 200
    body = resp.json()
    props = body["results"][0]["properties"]
    assert set(props) == {"name", "arr", "createdate", "hs_lastmodifieddate", "hs_object_id"}
    assert props["createdate"].endswith("Z")
    assert len(props["createdate"]) == 24


def test_get_by_id_and_by_unique_id_property(hs: Running) -> None:
    api = hs.client()
    company = api.crm.companies.basic_api.get_by_id(
        "10000000003", properties=["name", "contract_end_date"], _request_timeout=TIMEOUT
    )
    assert company.properties["name"] == "Company 3 Alpha"
    assert company.properties["contract_end_date"] == "2025-01-01"
    api.crm.companies.basic_api.update(
        "10000000003", {"properties": {"crmsync_id": "acc-3"}}, _request_timeout=TIMEOUT
    )
    again = api.crm.companies.basic_api.get_by_id(
        "acc-3", id_property="crmsync_id", properties=["crmsync_id"], _request_timeout=TIMEOUT
    )
    assert again.id == "10000000003"
    with pytest.raises(CompaniesApiException) as info:
        api.crm.companies.basic_api.get_by_id("999", _request_timeout=TIMEOUT)
    assert info.value.status == 404
    assert _err(info.value)["category"] == "OBJECT_NOT_FOUND"


def test_update_moves_lastmodified_clears_and_validates(hs: Running) -> None:
    api = hs.client()
    before = api.crm.companies.basic_api.get_by_id(
        "10000000004", properties=["plan"], _request_timeout=TIMEOUT
    )
    updated = api.crm.companies.basic_api.update(
        "10000000004",
        {
            "properties": {
                "plan": "",
                "crmsync_health_score": "71.5",
                "crmsync_renewal_date": "2025-02-01",
            }
        },
        _request_timeout=TIMEOUT,
    )
    assert updated.updated_at > before.updated_at
    assert (
        updated.properties["hs_lastmodifieddate"]
        == updated.updated_at.strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"
    )
    got = api.crm.companies.basic_api.get_by_id(
        "10000000004", properties=["plan", "crmsync_renewal_date"], _request_timeout=TIMEOUT
    )
    assert got.properties["plan"] is None
    assert got.properties["crmsync_renewal_date"] == "2025-02-01"

    with pytest.raises(CompaniesApiException) as info:
        api.crm.companies.basic_api.update(
            "10000000004", {"properties": {"no_such_prop": "x"}}, _request_timeout=TIMEOUT
        )
    assert info.value.status == 400
    body = _err(info.value)
    assert body["category"] == "VALIDATION_ERROR"
    assert "PROPERTY_DOESNT_EXIST" in body["message"]
    assert body["errors"][0]["code"] == "PROPERTY_DOESNT_EXIST"

    with pytest.raises(CompaniesApiException) as info:  # date not at midnight UTC
        api.crm.companies.basic_api.update(
            "10000000004",
            {"properties": {"crmsync_renewal_date": "1430438400001"}},
            _request_timeout=TIMEOUT,
        )
    assert info.value.status == 400
    ok = api.crm.companies.basic_api.update(
        "10000000004",
        {"properties": {"crmsync_renewal_date": "1430438400000"}},
        _request_timeout=TIMEOUT,
    )
    assert ok.properties["crmsync_renewal_date"] == "2015-05-01"


def test_create_with_inline_associations_and_archive(hs: Running) -> None:
    api = hs.client()
    note = api.crm.objects.notes.basic_api.create(
        {
            "properties": {"hs_note_body": "hi", "hs_timestamp": "2024-01-01T00:00:00Z"},
            "associations": [
                {
                    "to": {"id": "10000000005"},
                    "types": [{"associationCategory": "HUBSPOT_DEFINED", "associationTypeId": 190}],
                }
            ],
        },
        _request_timeout=TIMEOUT,
    )
    assert note.properties["hs_timestamp"] == "2024-01-01T00:00:00.000Z"
    linked = api.crm.associations.v4.basic_api.get_page(
        "companies", "10000000005", "notes", _request_timeout=TIMEOUT
    )
    assert note.id in [str(r.to_object_id) for r in linked.results]
    assert any(
        t.type_id == 189
        for r in linked.results
        if r.to_object_id == note.id
        for t in r.association_types
    )

    created = api.crm.companies.basic_api.create(
        {"properties": {"name": "Doomed", "domain": "doomed.test"}}, _request_timeout=TIMEOUT
    )
    assert int(created.id) > 10000000030
    api.crm.companies.basic_api.archive(created.id, _request_timeout=TIMEOUT)
    with pytest.raises(CompaniesApiException) as info:
        api.crm.companies.basic_api.get_by_id(created.id, _request_timeout=TIMEOUT)
    assert info.value.status == 404
    archived = api.crm.companies.basic_api.get_page(
        limit=100, archived=True, _request_timeout=TIMEOUT
    )
    hit = [r for r in archived.results if r.id == created.id]
    assert hit
    assert hit[0].archived is True
    assert hit[0].archived_at is not None


def test_note_without_timestamp_is_rejected(hs: Running) -> None:
    api = hs.client()
    with pytest.raises(NotesApiException) as info:
        api.crm.objects.notes.basic_api.create(
            {"properties": {"hs_note_body": "x"}}, _request_timeout=TIMEOUT
        )
    assert info.value.status == 400


def test_closed_won_update_emits_webhook_and_derives_flags(hs: Running) -> None:
    api = hs.client()
    deal = api.crm.deals.basic_api.update(
        "20000000001", {"properties": {"dealstage": "closedwon"}}, _request_timeout=TIMEOUT
    )
    assert deal.properties["hs_is_closed"] == "true"
    assert deal.properties["hs_is_closed_won"] == "true"
    events = [e for e in hs.outbox.events if e["objectId"] == 20000000001]
    assert len(events) == 1
    event = events[0]
    assert event["subscriptionType"] == "deal.propertyChange"
    assert event["propertyName"] == "dealstage"
    assert event["propertyValue"] == "closedwon"
    assert event["changeSource"] == "API"
    assert isinstance(event["occurredAt"], int)
    # no second event when it is already closed won
    api.crm.deals.basic_api.update(
        "20000000001", {"properties": {"dealstage": "closedwon"}}, _request_timeout=TIMEOUT
    )
    assert len([e for e in hs.outbox.events if e["objectId"] == 20000000001]) == 1

    hs.em.close_won("20000000002")
    ev = [e for e in hs.outbox.events if e["objectId"] == 20000000002]
    assert ev
    assert ev[0]["changeSource"] == "CRM_UI"
    assert hs.em.read_record("deals", "20000000002")["hs_is_closed_won"] == "true"  # type: ignore[index]

    with pytest.raises(DealsApiException) as info:
        api.crm.deals.basic_api.update(
            "20000000003", {"properties": {"dealstage": "won-ish"}}, _request_timeout=TIMEOUT
        )
    assert info.value.status == 400


def test_single_write_faults(hs: Running) -> None:
    api = hs.client()
    hs.faults.set_record_fault("hubspot", "companies", ["10000000006"], "lock")
    hs.faults.set_record_fault("hubspot", "companies", ["10000000007"], "validation")
    with pytest.raises(CompaniesApiException) as info:
        api.crm.companies.basic_api.update(
            "10000000006", {"properties": {"plan": "x"}}, _request_timeout=TIMEOUT
        )
    assert info.value.status == 423
    with pytest.raises(CompaniesApiException) as info:
        api.crm.companies.basic_api.update(
            "10000000007", {"properties": {"plan": "x"}}, _request_timeout=TIMEOUT
        )
    assert info.value.status == 400
    assert _err(info.value)["category"] == "VALIDATION_ERROR"


def test_merge_loser_vanishes_winner_records_it(hs: Running) -> None:
    api = hs.client()
    winner = api.crm.companies.basic_api.merge(
        {"primaryObjectId": "10000000010", "objectIdToMerge": "10000000011"},
        _request_timeout=TIMEOUT,
    )
    assert winner.id == "10000000010"
    assert winner.properties["hs_merged_object_ids"] == "10000000011"
    with pytest.raises(CompaniesApiException) as info:
        api.crm.companies.basic_api.get_by_id("10000000011", _request_timeout=TIMEOUT)
    assert info.value.status == 404
    archived = api.crm.companies.basic_api.get_page(
        limit=100, archived=True, _request_timeout=TIMEOUT
    )
    assert "10000000011" not in [r.id for r in archived.results]
    deals = api.crm.associations.v4.basic_api.get_page(
        "companies", "10000000010", "deals", _request_timeout=TIMEOUT
    )
    assert len(deals.results) == 4  # its own two and the loser's two


def test_touch_and_read_record(tmp_path: Path) -> None:
    with serve(tmp_path, plan=MiniPlan(accounts=3)) as hs:
        at = datetime(2024, 5, 5, 12, 0, 0, 123000, tzinfo=UTC)
        ids = hs.em.touch("companies", ids=None, count=2, at=at)
        assert ids == ["10000000001", "10000000002"]
        rec = hs.em.read_record("companies", "10000000002")
        assert rec is not None
        assert rec["hs_lastmodifieddate"] == "2024-05-05T12:00:00.123Z"
        assert hs.em.is_seeded()
        hs.em.declare_field("company", "new_field", "double")
        api = hs.client()
        got = api.crm.companies.basic_api.update(
            "10000000001", {"properties": {"new_field": "1.5"}}, _request_timeout=TIMEOUT
        )
        assert got.properties["new_field"] == "1.5"
        note = hs.em.read_record("notes", next(iter(_note_ids(hs))))
        assert note is not None
        assert "Opportunity: 2000000" in str(note["hs_note_body"])


def _note_ids(hs: Running) -> list[str]:
    rows = hs.ctx.db.execute("SELECT id FROM hs_notes").fetchall()
    return [str(r[0]) for r in rows]

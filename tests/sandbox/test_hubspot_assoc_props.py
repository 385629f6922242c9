"""HubSpot emulator: associations v4 and properties (list, create, 409, unique, groups)."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest
from hubspot.crm.associations.v4 import ApiException as AssocApiException
from hubspot.crm.properties import ApiException as PropsApiException
from hubspot_harness import TIMEOUT, MiniPlan, Running, serve


@pytest.fixture(scope="module")
def hs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Running]:
    with serve(tmp_path_factory.mktemp("hs"), plan=MiniPlan(accounts=12)) as running:
        yield running


def test_batch_read_deal_to_company_and_note_links(hs: Running) -> None:
    api = hs.client()
    data, status, _ = api.crm.associations.v4.batch_api.get_page_with_http_info(
        "deals",
        "companies",
        {"inputs": [{"id": "20000000001"}, {"id": "20000000004"}]},
        _request_timeout=TIMEOUT,
    )
    assert status == 200
    by_from = {r._from.id: r.to for r in data.results}
    assert [t.to_object_id for t in by_from["20000000004"]] == ["10000000002"]
    types = {(t.category, t.type_id, t.label) for t in by_from["20000000001"][0].association_types}
    assert types == {("HUBSPOT_DEFINED", 341, None), ("HUBSPOT_DEFINED", 5, "Primary")}
    # reverse direction carries the reverse type ids
    back = api.crm.associations.v4.batch_api.get_page(
        "companies", "deals", {"inputs": [{"id": "10000000001"}]}, _request_timeout=TIMEOUT
    )
    assert [t.to_object_id for t in back.results[0].to] == ["20000000001", "20000000002"]
    assert {t.type_id for t in back.results[0].to[0].association_types} == {342, 6}
    # seeded notes hang on their company (190) and deal (214)
    won_deals = hs.ctx.db.execute(
        "SELECT id FROM hs_deals WHERE props LIKE '%closedwon%'"
    ).fetchall()
    deal_id = str(won_deals[0][0])
    notes = api.crm.associations.v4.batch_api.get_page(
        "deals", "notes", {"inputs": [{"id": deal_id}]}, _request_timeout=TIMEOUT
    )
    note_id = notes.results[0].to[0].to_object_id
    assert notes.results[0].to[0].association_types[0].type_id == 213
    fwd = api.crm.associations.v4.basic_api.get_page(
        "notes", note_id, "deals", _request_timeout=TIMEOUT
    )
    assert fwd.results[0].association_types[0].type_id == 214


def test_batch_read_without_associations_is_207(hs: Running) -> None:
    api = hs.client()
    note = api.crm.objects.notes.basic_api.create(
        {"properties": {"hs_note_body": "lonely", "hs_timestamp": "1704067200000"}},
        _request_timeout=TIMEOUT,
    )
    data, status, _ = api.crm.associations.v4.batch_api.get_page_with_http_info(
        "notes", "companies", {"inputs": [{"id": note.id}]}, _request_timeout=TIMEOUT
    )
    assert status == 207
    assert data.results == []
    assert data.errors[0].context == {"fromObjectId": [note.id]}


def test_default_labelled_and_delete(hs: Running) -> None:
    api = hs.client()
    note = api.crm.objects.notes.basic_api.create(
        {"properties": {"hs_note_body": "x", "hs_timestamp": "2024-01-01T00:00:00Z"}},
        _request_timeout=TIMEOUT,
    )
    made = api.crm.associations.v4.basic_api.create_default(
        "notes", note.id, "companies", "10000000003", _request_timeout=TIMEOUT
    )
    assert made.status == "COMPLETE"
    assert made.results[0].association_spec.association_type_id == 190
    labelled = api.crm.associations.v4.basic_api.create(
        "notes",
        note.id,
        "deals",
        "20000000005",
        [{"associationCategory": "HUBSPOT_DEFINED", "associationTypeId": 214}],
        _request_timeout=TIMEOUT,
    )
    assert str(labelled.to_object_id) == "20000000005"
    listed = api.crm.associations.v4.basic_api.get_page(
        "notes", note.id, "companies", _request_timeout=TIMEOUT
    )
    assert [r.to_object_id for r in listed.results] == ["10000000003"]
    api.crm.associations.v4.basic_api.archive(
        "notes", note.id, "companies", "10000000003", _request_timeout=TIMEOUT
    )
    listed = api.crm.associations.v4.basic_api.get_page(
        "notes", note.id, "companies", _request_timeout=TIMEOUT
    )
    assert listed.results == []
    with pytest.raises(AssocApiException) as info:
        api.crm.associations.v4.basic_api.create_default(
            "notes", note.id, "companies", "123", _request_timeout=TIMEOUT
        )
    assert info.value.status == 400


def test_association_list_paging(hs: Running) -> None:
    api = hs.client()
    page = api.crm.associations.v4.basic_api.get_page(
        "companies", "10000000001", "deals", limit=1, _request_timeout=TIMEOUT
    )
    assert [r.to_object_id for r in page.results] == ["20000000001"]
    nxt = api.crm.associations.v4.basic_api.get_page(
        "companies",
        "10000000001",
        "deals",
        limit=1,
        after=page.paging.next.after,
        _request_timeout=TIMEOUT,
    )
    assert [r.to_object_id for r in nxt.results] == ["20000000002"]
    assert nxt.paging is None


def test_properties_list_create_conflict_and_unique(hs: Running) -> None:
    api = hs.client()
    listed = api.crm.properties.core_api.get_all("companies", _request_timeout=TIMEOUT)
    names = {p.name: p for p in listed.results}
    assert names["crmsync_id"].has_unique_value is True
    assert names["hs_lastmodifieddate"].type == "datetime"
    assert names["contract_end_date"].type == "date"
    created = api.crm.properties.core_api.create(
        "deals",
        {
            "name": "crmsync_deal_key",
            "label": "crmsync deal key",
            "type": "string",
            "fieldType": "text",
            "groupName": "dealinformation",
            "hasUniqueValue": True,
        },
        _request_timeout=TIMEOUT,
    )
    assert created.has_unique_value is True
    with pytest.raises(PropsApiException) as info:
        api.crm.properties.core_api.create(
            "deals",
            {
                "name": "crmsync_deal_key",
                "label": "again",
                "type": "string",
                "fieldType": "text",
                "groupName": "dealinformation",
            },
            _request_timeout=TIMEOUT,
        )
    assert info.value.status == 409
    body = json.loads(info.value.body)
    assert body["category"] == "OBJECT_ALREADY_EXISTS"
    assert body["message"] == "Property named 'crmsync_deal_key' already exists."
    # the new unique property is usable as idProperty
    up = api.crm.deals.batch_api.upsert(
        {
            "inputs": [
                {"id": "dk-1", "idProperty": "crmsync_deal_key", "properties": {"dealname": "K"}}
            ]
        },
        _request_timeout=TIMEOUT,
    )
    assert up.results[0].new is True
    got = api.crm.deals.basic_api.get_by_id(
        "dk-1", id_property="crmsync_deal_key", properties=["dealname"], _request_timeout=TIMEOUT
    )
    assert got.properties["dealname"] == "K"
    one = api.crm.properties.core_api.get_by_name("deals", "dealstage", _request_timeout=TIMEOUT)
    assert "closedwon" in [o.value for o in one.options]


def test_property_groups(hs: Running) -> None:
    api = hs.client()
    made = api.crm.properties.groups_api.create(
        "companies",
        {"name": "crmsync", "label": "crmsync", "displayOrder": 3},
        _request_timeout=TIMEOUT,
    )
    assert made.name == "crmsync"
    groups = api.crm.properties.groups_api.get_all("companies", _request_timeout=TIMEOUT)
    assert {"companyinformation", "crmsync"} <= {g.name for g in groups.results}
    with pytest.raises(PropsApiException) as info:
        api.crm.properties.groups_api.create(
            "companies", {"name": "crmsync", "label": "x"}, _request_timeout=TIMEOUT
        )
    assert info.value.status == 409

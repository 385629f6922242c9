"""What third-party HubSpot clients call besides crmsync's own traffic (issue 16, item 5):
contacts as a standard object, schemas, ``associations=`` inline, v4 batch association create and
archive, property PATCH, owners by id. Through hubspot-api-client over HTTPS."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
import urllib3
from hubspot.crm.contacts import ApiException as ContactsApiException
from hubspot.crm.deals import ApiException as DealsApiException
from hubspot.crm.owners import ApiException as OwnersApiException
from hubspot.crm.properties import ApiException as PropsApiException
from hubspot_harness import TIMEOUT, MiniPlan, Running, serve

DEAL = "20000000001"  # first seeded deal, on company 10000000001
COMPANY = "10000000001"


@pytest.fixture(scope="module")
def hs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Running]:
    with serve(tmp_path_factory.mktemp("hs"), plan=MiniPlan(accounts=6)) as running:
        yield running


@pytest.fixture
def api(hs: Running) -> Any:
    return hs.client()


def _error(body: str) -> dict[str, Any]:
    answer: dict[str, Any] = json.loads(body)
    assert answer["status"] == "error"
    assert isinstance(answer["correlationId"], str)
    return answer


# -- contacts ---------------------------------------------------------------------------------


def test_contacts_answer_as_a_standard_object(api: Any) -> None:
    empty = api.crm.contacts.basic_api.get_page(limit=10, _request_timeout=TIMEOUT)
    assert empty.results == []
    names = {p.name for p in api.crm.properties.core_api.get_all("contacts").results}
    assert {"firstname", "lastname", "email", "lastmodifieddate", "createdate"} <= names

    made = api.crm.contacts.basic_api.create(
        {"properties": {"email": "ada@example.test", "firstname": "Ada", "lastname": "L"}},
        _request_timeout=TIMEOUT,
    )
    assert made.id.startswith("4")
    assert made.properties["lastmodifieddate"] == made.updated_at.isoformat(
        timespec="milliseconds"
    ).replace("+00:00", "Z")
    got = api.crm.contacts.basic_api.get_by_id(made.id, _request_timeout=TIMEOUT)
    assert set(got.properties) == {
        "createdate",
        "email",
        "firstname",
        "hs_object_id",
        "lastmodifieddate",
        "lastname",
    }
    by_email = api.crm.contacts.basic_api.get_by_id(
        "ada@example.test", id_property="email", _request_timeout=TIMEOUT
    )
    assert by_email.id == made.id

    found = api.crm.contacts.search_api.do_search(
        {
            "filterGroups": [
                {
                    "filters": [
                        {"propertyName": "email", "operator": "EQ", "value": "ada@example.test"}
                    ]
                }
            ],
            "sorts": [{"propertyName": "lastmodifieddate", "direction": "DESCENDING"}],
        },
        _request_timeout=TIMEOUT,
    )
    assert [r.id for r in found.results] == [made.id]

    with pytest.raises(ContactsApiException) as info:
        api.crm.contacts.basic_api.create(
            {"properties": {"email": "ada@example.test"}}, _request_timeout=TIMEOUT
        )
    assert info.value.status == 409
    answer = _error(info.value.body)
    assert answer["category"] == "CONFLICT"
    assert answer["message"] == f"Contact already exists. Existing ID: {made.id}"

    api.crm.associations.v4.basic_api.create_default(
        "contacts", made.id, "companies", COMPANY, _request_timeout=TIMEOUT
    )
    links = api.crm.associations.v4.basic_api.get_page(
        "contacts", made.id, "companies", _request_timeout=TIMEOUT
    )
    assert [(r.to_object_id, r.association_types[0].type_id) for r in links.results] == [
        (COMPANY, 279)
    ]
    back = api.crm.associations.v4.batch_api.get_page(
        "companies", "contacts", {"inputs": [{"id": COMPANY}]}, _request_timeout=TIMEOUT
    )
    assert back.results[0].to[0].to_object_id == made.id
    assert back.results[0].to[0].association_types[0].type_id == 280


# -- schemas ----------------------------------------------------------------------------------


def test_schemas_list_no_custom_objects(api: Any, hs: Running) -> None:
    assert api.crm.schemas.core_api.get_all(_request_timeout=TIMEOUT).results == []
    pool = urllib3.PoolManager(ca_certs=hs.ca_file)
    response = pool.request(
        "GET", f"{hs.base_url}/crm/v3/schemas", headers={"Authorization": f"Bearer {hs.token}"}
    )
    assert response.status == 200
    assert json.loads(response.data) == {"results": []}


# -- associations= inline ---------------------------------------------------------------------


def test_get_answers_associations_inline(api: Any) -> None:
    deal = api.crm.deals.basic_api.get_by_id(
        DEAL, associations=["companies", "notes"], _request_timeout=TIMEOUT
    )
    companies = deal.associations["companies"].results
    assert {(a.id, a.type) for a in companies} == {
        (COMPANY, "deal_to_company"),
        (COMPANY, "deal_to_company_unlabeled"),
    }
    plain = api.crm.deals.basic_api.get_by_id(DEAL, _request_timeout=TIMEOUT)
    assert plain.associations is None


def test_list_answers_associations_inline_only_where_links_exist(api: Any) -> None:
    page = api.crm.companies.basic_api.get_page(
        limit=3, associations=["deals"], _request_timeout=TIMEOUT
    )
    first = page.results[0]
    assert first.id == COMPANY
    primary = [a.id for a in first.associations["deals"].results if a.type == "company_to_deal"]
    assert primary == ["20000000001", "20000000002"]  # MiniPlan: two deals per company
    lonely = api.crm.companies.basic_api.create(
        {"properties": {"name": "No deals"}}, _request_timeout=TIMEOUT
    )
    again = api.crm.companies.basic_api.get_by_id(
        lonely.id, associations=["deals"], _request_timeout=TIMEOUT
    )
    assert again.associations is None


def test_an_unknown_type_in_associations_is_refused(api: Any) -> None:
    with pytest.raises(DealsApiException) as info:
        api.crm.deals.basic_api.get_by_id(DEAL, associations=["widgets"], _request_timeout=TIMEOUT)
    assert info.value.status == 400
    answer = _error(info.value.body)
    assert answer["category"] == "VALIDATION_ERROR"
    assert answer["message"] == "Unable to infer object type from: widgets"


# -- v4 batch association create / archive ----------------------------------------------------


def test_v4_batch_create_and_archive(api: Any) -> None:
    note = api.crm.objects.notes.basic_api.create(
        {"properties": {"hs_note_body": "x", "hs_timestamp": "2024-01-01T00:00:00Z"}},
        _request_timeout=TIMEOUT,
    )
    made, status, _ = api.crm.associations.v4.batch_api.create_with_http_info(
        "notes",
        "companies",
        {
            "inputs": [
                {
                    "from": {"id": note.id},
                    "to": {"id": COMPANY},
                    "types": [{"associationCategory": "HUBSPOT_DEFINED", "associationTypeId": 190}],
                },
                {
                    "from": {"id": note.id},
                    "to": {"id": "10000009999"},
                    "types": [{"associationCategory": "HUBSPOT_DEFINED", "associationTypeId": 190}],
                },
                {
                    "from": {"id": note.id},
                    "to": {"id": COMPANY},
                    "types": [{"associationCategory": "HUBSPOT_DEFINED", "associationTypeId": 341}],
                },
            ]
        },
        _request_timeout=TIMEOUT,
    )
    assert status == 207
    assert [(r.from_object_id, r.to_object_id) for r in made.results] == [(note.id, COMPANY)]
    assert made.results[0].from_object_type_id == "0-46"
    assert sorted(e.sub_category for e in made.errors) == [
        "crm.associations.INVALID_ASSOCIATION_TYPE",
        "crm.associations.INVALID_OBJECT_IDS",
    ]
    linked = api.crm.associations.v4.basic_api.get_page(
        "notes", note.id, "companies", _request_timeout=TIMEOUT
    )
    assert [r.to_object_id for r in linked.results] == [COMPANY]

    _, status, _ = api.crm.associations.v4.batch_api.archive_with_http_info(
        "notes",
        "companies",
        {"inputs": [{"from": {"id": note.id}, "to": [{"id": COMPANY}]}]},
        _request_timeout=TIMEOUT,
    )
    assert status == 204
    gone = api.crm.associations.v4.basic_api.get_page(
        "notes", note.id, "companies", _request_timeout=TIMEOUT
    )
    assert gone.results == []


# -- property PATCH ---------------------------------------------------------------------------


def test_property_patch_adds_enumeration_options(api: Any) -> None:
    current = api.crm.properties.core_api.get_by_name("deals", "dealtype")
    options = [{"label": o.label, "value": o.value} for o in current.options]
    updated = api.crm.properties.core_api.update(
        "deals",
        "dealtype",
        {"options": [*options, {"label": "Upsell tier", "value": "upsell"}], "label": "Kind"},
        _request_timeout=TIMEOUT,
    )
    assert updated.label == "Kind"
    assert [(o.label, o.value) for o in updated.options][-1] == ("Upsell tier", "upsell")
    reread = api.crm.properties.core_api.get_by_name("deals", "dealtype")
    assert [o.value for o in reread.options][-1] == "upsell"
    deal = api.crm.deals.basic_api.update(
        DEAL, {"properties": {"dealtype": "upsell"}}, _request_timeout=TIMEOUT
    )
    assert deal.properties["dealtype"] == "upsell"
    with pytest.raises(DealsApiException) as info:
        api.crm.deals.basic_api.update(
            DEAL, {"properties": {"dealtype": "nonsense"}}, _request_timeout=TIMEOUT
        )
    assert info.value.status == 400


@pytest.mark.parametrize(
    ("name", "body", "status", "field"),
    [
        ("plan", {"options": [{"label": "A", "value": "a"}]}, 400, "options"),
        (
            "dealtype",
            {"options": [{"label": "A", "value": "a"}, {"label": "B", "value": "a"}]},
            400,
            "options[1].value",
        ),
        ("hs_object_id", {"label": "Record id"}, 400, "hs_object_id"),
        ("dealname", {"type": "number", "fieldType": "number"}, 400, "type"),
        ("dealname", {"groupName": "nope"}, 400, "groupName"),
        ("no_such_property", {"label": "x"}, 404, None),
    ],
)
def test_property_patch_validation(
    api: Any, name: str, body: dict[str, Any], status: int, field: str | None
) -> None:
    object_type = "companies" if name == "plan" else "deals"
    with pytest.raises(PropsApiException) as info:
        api.crm.properties.core_api.update(object_type, name, body, _request_timeout=TIMEOUT)
    assert info.value.status == status
    answer = _error(info.value.body)
    if field is None:
        assert answer["category"] == "OBJECT_NOT_FOUND"
    else:
        assert answer["category"] == "VALIDATION_ERROR"
        assert answer["errors"][0]["in"] == field


# -- owners by id -----------------------------------------------------------------------------


def test_owner_by_id_and_unknown_owner(api: Any) -> None:
    first = api.crm.owners.owners_api.get_page(limit=1, _request_timeout=TIMEOUT).results[0]
    same = api.crm.owners.owners_api.get_by_id(int(first.id), _request_timeout=TIMEOUT)
    assert (same.id, same.email) == (first.id, first.email)
    by_user = api.crm.owners.owners_api.get_by_id(
        first.user_id, id_property="userId", _request_timeout=TIMEOUT
    )
    assert by_user.id == first.id
    with pytest.raises(OwnersApiException) as info:
        api.crm.owners.owners_api.get_by_id(123, _request_timeout=TIMEOUT)
    assert info.value.status == 404
    answer = _error(info.value.body)
    assert answer["category"] == "OBJECT_NOT_FOUND"

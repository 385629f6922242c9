"""HubSpot batch input limits: association batch reads (v3 and v4) take up to 1,000 ids, object
batch reads 100; one more is refused whole with HubSpot's own 400 (issue 16, item 4)."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest
from hubspot.crm.associations import ApiException as V3ApiException
from hubspot.crm.associations.v4 import ApiException as V4ApiException
from hubspot.crm.companies import ApiException as CompaniesApiException
from hubspot_harness import TIMEOUT, MiniPlan, Running, serve

DEALS = 2 * 12  # MiniPlan: two deals per company
TOO_MANY = (
    "The maximum number of inputs supported in a batch is {n}. "
    "Please reduce the number of items and try again"
)


@pytest.fixture(scope="module")
def hs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Running]:
    with serve(tmp_path_factory.mktemp("hs"), plan=MiniPlan(accounts=12)) as running:
        yield running


def _deal_ids(n: int) -> list[str]:
    """``n`` distinct deal ids: the seeded ones first, then ids that do not exist."""
    return [str(20_000_000_001 + i) for i in range(n)]


def _assert_too_many(body: str, limit: int) -> None:
    answer = json.loads(body)
    assert answer["status"] == "error"
    assert answer["category"] == "VALIDATION_ERROR"
    assert answer["message"] == TOO_MANY.format(n=limit)
    assert isinstance(answer["correlationId"], str)


def test_v4_association_batch_read_takes_1000_ids(hs: Running) -> None:
    api = hs.client()
    inputs = [{"id": i} for i in _deal_ids(1000)]
    data, status, _ = api.crm.associations.v4.batch_api.get_page_with_http_info(
        "deals", "companies", {"inputs": inputs}, _request_timeout=TIMEOUT
    )
    assert status == 207  # the ids past the seeded deals have no associations
    assert len(data.results) == DEALS
    assert data.num_errors == 1000 - DEALS
    assert {r._from.id for r in data.results} == set(_deal_ids(DEALS))


def test_v4_association_batch_read_refuses_1001_ids(hs: Running) -> None:
    api = hs.client()
    with pytest.raises(V4ApiException) as info:
        api.crm.associations.v4.batch_api.get_page(
            "deals",
            "companies",
            {"inputs": [{"id": i} for i in _deal_ids(1001)]},
            _request_timeout=TIMEOUT,
        )
    assert info.value.status == 400
    _assert_too_many(info.value.body, 1000)


def test_v3_association_batch_read_takes_1000_ids_with_v3_type_names(hs: Running) -> None:
    api = hs.client()
    data = api.crm.associations.batch_api.read(
        "deals",
        "companies",
        {"inputs": [{"id": i} for i in _deal_ids(1000)]},
        _request_timeout=TIMEOUT,
    )
    assert len(data.results) == DEALS
    first = next(r for r in data.results if r._from.id == "20000000001")
    assert {(t.id, t.type) for t in first.to} == {
        ("10000000001", "deal_to_company"),
        ("10000000001", "deal_to_company_unlabeled"),
    }
    assert data.errors[0].sub_category == "crm.associations.NO_ASSOCIATIONS_FOUND"


def test_v3_association_batch_read_refuses_1001_ids(hs: Running) -> None:
    api = hs.client()
    with pytest.raises(V3ApiException) as info:
        api.crm.associations.batch_api.read(
            "deals",
            "companies",
            {"inputs": [{"id": i} for i in _deal_ids(1001)]},
            _request_timeout=TIMEOUT,
        )
    assert info.value.status == 400
    _assert_too_many(info.value.body, 1000)


def test_object_batch_read_stays_capped_at_100(hs: Running) -> None:
    api = hs.client()
    ids = [str(10_000_000_001 + i) for i in range(101)]
    ok = api.crm.companies.batch_api.read(
        {"inputs": [{"id": i} for i in ids[:100]], "properties": ["name"]},
        _request_timeout=TIMEOUT,
    )
    assert len(ok.results) == 12
    with pytest.raises(CompaniesApiException) as info:
        api.crm.companies.batch_api.read(
            {"inputs": [{"id": i} for i in ids], "properties": ["name"]},
            _request_timeout=TIMEOUT,
        )
    assert info.value.status == 400
    _assert_too_many(info.value.body, 100)

"""``GET /api/v1/accounts`` (filters, keyset cursor), ``/accounts/{id}`` (components with their
inputs, reasons, tier, renewal, lifecycle) and ``/accounts/{id}/health/history``, on the values a
recompute wrote; 4xx answers name the parameter."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine, update
from sqlalchemy.orm import Session, sessionmaker

from app.db.engine import make_session_factory
from app.db.models import Account, Csm, UsageSnapshot
from app.main import create_app
from app.settings import Settings
from app.wiring.recompute import run_recompute
from tests.support.api import api_client

TODAY = datetime.now(UTC).date()


def settings(database_url: str) -> Settings:
    return Settings(_env_file=None, database_url=database_url)  # type: ignore[call-arg]


@pytest.fixture
def factory(engine: Engine) -> sessionmaker[Session]:
    return make_session_factory(engine)


@pytest.fixture
def ids(database_url: str, factory: sessionmaker[Session]) -> dict[str, Any]:
    """12 accounts over tiers and renewal windows, recomputed; 4 owned by one CSM."""
    with factory() as s, s.begin():
        csm = Csm(name="Cara", email="cara@example.com")
        s.add(csm)
        s.flush()
        made = []
        for i in range(12):
            a = Account(
                name=f"A{i:02d}",
                arr=Decimal([2_000, 10_000, 30_000, 150_000][i % 4]),
                licensed_seats=20,
                customer_since_on=TODAY - timedelta(days=500),
                contract_end_on=TODAY + timedelta(days=[40, 120, 300][i % 3]),
                csm_id=csm.id if i < 4 else None,
            )
            s.add(a)
            s.flush()
            made.append(a.id)
            if i % 2 == 0:  # usage for half of them; dormant for every fourth
                s.add(
                    UsageSnapshot(
                        account_id=a.id,
                        observed_on=TODAY - timedelta(days=1),
                        active_users_30d=0 if i % 4 == 0 else 18,
                        logins_30d=0 if i % 4 == 0 else 200,
                        licensed_seats=20,
                        key_features_used_30d=4,
                        key_features_defined=5,
                    )
                )
        csm_id = csm.id
    run_recompute(settings(database_url), session_factory=factory)
    return {"accounts": made, "csm": csm_id}


@pytest.fixture
def client(database_url: str) -> Iterator[TestClient]:
    with api_client(create_app(settings(database_url)), role="viewer") as c:
        yield c


def all_pages(client: TestClient, params: dict[str, Any]) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = []
    cursor = None
    for _ in range(20):
        query = dict(params, **({"cursor": cursor} if cursor else {}))
        r = client.get("/api/v1/accounts", params=query)
        assert r.status_code == 200, r.text
        body = r.json()
        items.extend(body["items"])
        cursor = body["next_cursor"]
        if cursor is None:
            return items
    raise AssertionError("no last page")


def test_pages_cover_every_account_once_in_id_order(
    client: TestClient, ids: dict[str, Any]
) -> None:
    items = all_pages(client, {"limit": 5})
    assert [i["id"] for i in items] == ids["accounts"]
    first = client.get("/api/v1/accounts", params={"limit": 5}).json()
    assert len(first["items"]) == 5
    assert first["next_cursor"]


@pytest.mark.parametrize(
    ("params", "check"),
    [
        ({"tier": "key"}, lambda i: i["tier"] == "key"),
        ({"tier": ["tech", "low"]}, lambda i: i["tier"] in ("tech", "low")),
        ({"band": "unknown"}, lambda i: i["health"]["band"] == "unknown"),
        ({"renewal_window": "in_window"}, lambda i: i["renewal"]["window"] == "in_window"),
        ({"lifecycle_stage": "renewal"}, lambda i: i["lifecycle"]["stage"] == "renewal"),
        ({"lifecycle_stage": "steady"}, lambda i: i["lifecycle"]["stage"] == "steady"),
    ],
)
def test_filters_return_exactly_the_matching_accounts(
    client: TestClient, ids: dict[str, Any], params: dict[str, Any], check: Any
) -> None:
    everything = all_pages(client, {"limit": 500})
    expected = [i["id"] for i in everything if check(i)]
    assert expected, "the fixture has accounts of this kind"
    got = all_pages(client, {**params, "limit": 2})
    assert [i["id"] for i in got] == expected


def test_csm_filter(client: TestClient, ids: dict[str, Any]) -> None:
    got = all_pages(client, {"csm_id": ids["csm"], "limit": 3})
    assert [i["id"] for i in got] == ids["accounts"][:4]


def test_search_by_name_or_domain_prefix_case_insensitive(
    client: TestClient, factory: sessionmaker[Session]
) -> None:
    with factory() as s, s.begin():
        for name, domain in [
            ("Acme Corp", "acme.com"),
            ("acme_labs", "labs.example"),
            ("Beta 100%", "beta.io"),
            ("Zeta", "www-acme.net"),
            ("Omega", None),
            ("Ärger GmbH", "aerger.de"),
        ]:
            s.add(Account(name=name, domain=domain))

    def names(q: str, **more: Any) -> list[str]:
        return [i["name"] for i in all_pages(client, {"q": q, "limit": 1, **more})]

    assert names("acme") == ["Acme Corp", "acme_labs"]
    assert names("ACME C") == ["Acme Corp"]
    assert names("acme_") == ["acme_labs"]  # _ and % are not wildcards
    assert names("beta 100%") == ["Beta 100%"]
    assert names("a%") == []
    assert names("https://www.Beta.IO/pricing") == ["Beta 100%"]
    assert names("www-acme") == ["Zeta"]  # the domain starts with it
    assert names("cme") == []  # a prefix, not a substring
    assert names("acme", tier="key") == []  # with the other filters
    r = client.get("/api/v1/accounts", params={"q": "acme", "limit": 1})
    cursor = r.json()["next_cursor"]
    other = client.get("/api/v1/accounts", params={"q": "beta", "cursor": cursor})
    assert other.status_code == 422
    assert other.json()["detail"][0]["loc"] == ["query", "cursor"]


def test_bad_input_names_the_parameter(client: TestClient, ids: dict[str, Any]) -> None:
    for params, name in [
        ({"band": "purple"}, "band"),
        ({"tier": "gold"}, "tier"),
        ({"renewal_window": "soon"}, "renewal_window"),
        ({"limit": 0}, "limit"),
        ({"cursor": "not-a-cursor!"}, "cursor"),
    ]:
        r = client.get("/api/v1/accounts", params=params)
        assert r.status_code == 422, params
        assert r.json()["detail"][0]["loc"][:2] == ["query", name]  # (a list: then its index)
    cursor = client.get("/api/v1/accounts", params={"limit": 2}).json()["next_cursor"]
    r = client.get("/api/v1/accounts", params={"limit": 2, "cursor": cursor, "tier": "key"})
    assert r.status_code == 422
    assert "other filters" in r.json()["detail"][0]["msg"]
    r = client.get(f"/api/v1/accounts/{ids['accounts'][0]}/health/history?since=2026-02-30")
    assert r.status_code == 422
    assert r.json()["detail"][0]["loc"] == ["query", "since"]
    assert client.get("/api/v1/accounts/999999").json() == {"detail": "account 999999 not found"}
    assert client.get("/api/v1/accounts/999999/health/history").status_code == 404


def test_detail_has_components_with_inputs_reasons_tier_renewal_lifecycle(
    client: TestClient, ids: dict[str, Any]
) -> None:
    dormant = ids["accounts"][0]
    r = client.get(f"/api/v1/accounts/{dormant}")
    assert r.status_code == 200, r.text
    body = r.json()
    usage = body["health"]["components"]["usage"]
    assert usage["value"] == 0
    assert usage["inputs"]["active_users_30d"] == 0
    assert "dormant" in usage["flags"]
    assert "dormant" in body["flags"]
    assert next(x["code"] for x in body["health"]["reasons_detail"]) == "dormant"
    assert body["health"]["computed_on"] == TODAY.isoformat()
    assert body["tier_detail"]["arr"] == "2000.00"
    assert body["tier"] == "tech"
    assert body["renewal"]["days_to_renewal"] == 40
    assert body["renewal"]["window"] == "in_window"
    assert body["renewal"]["prep_on"] == (TODAY + timedelta(days=40 - 90)).isoformat()
    assert body["lifecycle"]["stage"] == "renewal"
    assert [h["stage"] for h in body["lifecycle"]["history"]] == ["renewal"]


def test_history_newest_first_within_since_until(
    database_url: str,
    client: TestClient,
    factory: sessionmaker[Session],
    ids: dict[str, Any],
) -> None:
    account = ids["accounts"][1]
    for days in (3, 2):
        with factory() as s, s.begin():
            s.execute(update(Account).values(health_computed_at=None))
        run_recompute(
            settings(database_url),
            session_factory=factory,
            as_of=TODAY - timedelta(days=days),
        )
    r = client.get(f"/api/v1/accounts/{account}/health/history")
    days = [i["computed_on"] for i in r.json()["items"]]
    assert days == [(TODAY - timedelta(days=d)).isoformat() for d in (0, 2, 3)]
    since = (TODAY - timedelta(days=2)).isoformat()
    r = client.get(f"/api/v1/accounts/{account}/health/history", params={"since": since})
    assert [i["computed_on"] for i in r.json()["items"]] == days[:2]
    assert r.json()["items"][0]["model_version"]

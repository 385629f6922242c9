"""Access to /api/v1: a key on every route, the role each route declares, 401/403 as JSON,
revoked and expired keys, the bootstrap key, key management over the API, and the audit log."""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from app.main import create_app
from app.settings import Settings
from tests.support.api import api_client, make_key

BOOTSTRAP = "bootstrap-key-for-tests-0123456789"


@pytest.fixture
def app(database_url: str) -> FastAPI:
    settings = Settings(  # type: ignore[call-arg]
        _env_file=None, database_url=database_url, admin_bootstrap_key=BOOTSTRAP
    )
    return create_app(settings)


@pytest.fixture
def anon(app: FastAPI) -> Iterator[TestClient]:
    with TestClient(app) as client:
        yield client


def _operations(client: TestClient) -> list[tuple[str, str, dict[str, Any]]]:
    spec = client.get("/openapi.json").json()
    return [
        (method.upper(), path, op)
        for path, item in spec["paths"].items()
        for method, op in item.items()
        if method in {"get", "post", "put", "patch", "delete"}
    ]


def test_every_api_v1_route_needs_a_key_and_declares_its_role(anon: TestClient) -> None:
    operations = [(m, p, op) for m, p, op in _operations(anon) if p.startswith("/api/v1")]
    assert len(operations) >= 10
    for method, path, op in operations:
        assert op.get("x-crmsync-role") in {"viewer", "operator", "admin"}, (method, path)
        assert {"bearer": []} in op["security"]
        assert {"apiKey": []} in op["security"]
        url = re.sub(r"\{[^}]+\}", "1", path)
        response = anon.request(method, url, json={})
        assert response.status_code == 401, (method, path, response.text)
        assert response.json()["reason"] == "missing_key"
        assert response.headers["www-authenticate"] == "Bearer"


def test_probes_and_docs_need_no_key(anon: TestClient) -> None:
    assert anon.get("/healthz").status_code == 200
    assert anon.get("/readyz").status_code == 200
    assert anon.get("/openapi.json").status_code == 200
    paths = [p for _m, p, _op in _operations(anon) if not p.startswith("/api/v1")]
    assert "/healthz" in paths


def test_missing_unknown_key_is_401_json(anon: TestClient) -> None:
    r = anon.get("/api/v1/audit")
    assert r.status_code == 401
    assert "Authorization: Bearer" in r.json()["detail"]
    r = anon.get("/api/v1/audit", headers={"Authorization": "Bearer crmsync_nope"})
    assert r.status_code == 401
    assert r.json()["reason"] == "unknown"
    r = anon.get("/api/v1/audit", headers={"Authorization": "Basic dXNlcjpwdw=="})
    assert (r.status_code, r.json()["reason"]) == (401, "missing_key")


def test_key_in_either_header(app: FastAPI, anon: TestClient) -> None:
    key = make_key(app, "viewer")
    assert anon.get("/api/v1/audit", headers={"X-API-Key": key}).status_code == 200
    assert anon.get("/api/v1/audit", headers={"Authorization": f"Bearer {key}"}).status_code == 200


@pytest.mark.parametrize(
    ("role", "read", "write", "manage"),
    [("viewer", 200, 403, 403), ("operator", 200, 404, 403), ("admin", 200, 404, 200)],
)
def test_roles(app: FastAPI, role: str, read: int, write: int, manage: int) -> None:
    with api_client(app, role) as client:
        assert client.get("/api/v1/audit").status_code == read
        # A note write needs operator: past the role check, an unknown note is 404.
        assert client.patch("/api/v1/notes/99", json={"title": "x"}).status_code == write
        assert client.get("/api/v1/keys").status_code == manage


def test_wrong_role_is_403_naming_both_roles(app: FastAPI) -> None:
    with api_client(app, "viewer", name="reader") as client:
        r = client.post("/api/v1/keys", json={"name": "x", "role": "admin"})
    assert r.status_code == 403
    body = r.json()
    assert body["reason"] == "role"
    assert (body["role"], body["required_role"]) == ("viewer", "admin")
    assert "reader" in body["detail"]
    assert "admin role" in body["detail"]


def test_revoked_key_is_401(app: FastAPI, anon: TestClient) -> None:
    admin = {"Authorization": f"Bearer {make_key(app, 'admin')}"}
    created = anon.post("/api/v1/keys", json={"name": "ci", "role": "operator"}, headers=admin)
    assert created.status_code == 201
    key = created.json()["key"]
    assert key.startswith("crmsync_")
    assert anon.get("/api/v1/audit", headers={"X-API-Key": key}).status_code == 200
    revoked = anon.post(f"/api/v1/keys/{created.json()['id']}/revoke", headers=admin)
    assert revoked.json()["state"] == "revoked"
    r = anon.get("/api/v1/audit", headers={"X-API-Key": key})
    assert (r.status_code, r.json()["reason"]) == (401, "revoked")
    assert "revoked" in r.json()["detail"]


def test_expired_key_is_401(app: FastAPI, anon: TestClient) -> None:
    past = datetime.now(UTC) - timedelta(days=3)
    key = make_key(app, "admin", expires_in_days=2, now=past)
    r = anon.get("/api/v1/audit", headers={"X-API-Key": key})
    assert (r.status_code, r.json()["reason"]) == (401, "expired")
    fresh = make_key(app, "admin", expires_in_days=2)
    assert anon.get("/api/v1/audit", headers={"X-API-Key": fresh}).status_code == 200


def test_bootstrap_key_is_an_admin_and_creates_the_first_key(anon: TestClient) -> None:
    boot = {"Authorization": f"Bearer {BOOTSTRAP}"}
    r = anon.post(
        "/api/v1/keys",
        json={"name": "first-admin", "role": "admin", "expires_days": 30},
        headers=boot,
    )
    assert r.status_code == 201, r.text
    listed = anon.get("/api/v1/keys", headers={"X-API-Key": r.json()["key"]}).json()["items"]
    assert [(k["name"], k["role"], k["state"]) for k in listed] == [
        ("first-admin", "admin", "active")
    ]
    assert "key" not in listed[0]
    assert "key_hash" not in listed[0]
    audit = anon.get("/api/v1/audit", headers=boot).json()["items"]
    assert audit[0]["actor"] == "bootstrap"
    assert audit[0]["action"] == "api_key.create"


def test_no_bootstrap_key_unless_set(database_url: str) -> None:
    settings = Settings(_env_file=None, database_url=database_url)  # type: ignore[call-arg]
    with TestClient(create_app(settings)) as client:
        r = client.get("/api/v1/keys", headers={"X-API-Key": ""})
        assert r.status_code == 401
        r = client.get("/api/v1/keys", headers={"X-API-Key": BOOTSTRAP})
        assert (r.status_code, r.json()["reason"]) == (401, "unknown")


def test_key_create_errors_name_the_field(app: FastAPI) -> None:
    with api_client(app, "admin") as client:
        r = client.post("/api/v1/keys", json={"name": "a", "role": "root"})
        assert r.status_code == 422
        assert r.json()["detail"][0]["loc"] == ["body", "role"]
        assert (
            client.post("/api/v1/keys", json={"name": "dup", "role": "viewer"}).status_code == 201
        )
        r = client.post("/api/v1/keys", json={"name": "dup", "role": "viewer"})
        assert r.status_code == 422
        assert r.json()["detail"][0]["loc"] == ["body", "name"]
        assert client.post("/api/v1/keys/999/revoke").status_code == 404


def test_audit_pages_with_a_cursor(app: FastAPI) -> None:
    with api_client(app, "admin", name="boss") as client:
        for i in range(5):
            client.post("/api/v1/keys", json={"name": f"k{i}", "role": "viewer"})
        seen: list[int] = []
        cursor = None
        while True:
            params: dict[str, Any] = {"limit": 2, "action": "api_key.create"}
            if cursor:
                params["cursor"] = cursor
            page = client.get("/api/v1/audit", params=params).json()
            seen += [e["id"] for e in page["items"]]
            assert all(e["actor"] == "key:boss" for e in page["items"])
            cursor = page["next_cursor"]
            if cursor is None:
                break
        assert seen == sorted(seen, reverse=True)
        assert len(seen) == 5
        first = client.get("/api/v1/audit", params={"limit": 2}).json()["next_cursor"]
        r = client.get("/api/v1/audit", params={"cursor": first, "actor": "someone"})
        assert r.status_code == 422
        assert r.json()["detail"][0]["loc"] == ["query", "cursor"]

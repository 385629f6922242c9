"""``/healthz``, ``/readyz`` and the OpenAPI docs."""

from __future__ import annotations

from fastapi.testclient import TestClient

from app.main import create_app
from app.settings import Settings


def test_healthz_answers_without_a_database(tmp_path) -> None:  # type: ignore[no-untyped-def]
    app = create_app(Settings(database_url=f"sqlite:///{tmp_path}/never-created/x.db"))
    with TestClient(app) as client:
        assert client.get("/healthz").json() == {"status": "ok"}


def test_readyz_ok_on_a_migrated_database(database_url: str) -> None:
    with TestClient(create_app(Settings(database_url=database_url))) as client:
        response = client.get("/readyz")
    assert response.status_code == 200
    assert response.json()["status"] == "ready"


def test_readyz_503_when_not_migrated(empty_database_url: str) -> None:
    with TestClient(create_app(Settings(database_url=empty_database_url))) as client:
        response = client.get("/readyz")
    assert response.status_code == 503
    assert "crmsync db upgrade" in response.json()["reason"]


def test_readyz_503_when_database_unreachable() -> None:
    settings = Settings(database_url="postgresql+psycopg://nobody@127.0.0.1:1/none")
    with TestClient(create_app(settings)) as client:
        response = client.get("/readyz")
    assert response.status_code == 503
    assert "unreachable" in response.json()["reason"]


def test_openapi_docs_are_served(tmp_path) -> None:  # type: ignore[no-untyped-def]
    with TestClient(create_app(Settings(database_url=f"sqlite:///{tmp_path}/x.db"))) as client:
        assert client.get("/docs").status_code == 200
        paths = client.get("/openapi.json").json()["paths"]
    assert {"/healthz", "/readyz"} <= set(paths)

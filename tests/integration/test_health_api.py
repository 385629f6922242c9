"""``/healthz``, ``/readyz`` and the OpenAPI docs."""

from __future__ import annotations

from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import text

from app.db import migrate
from app.db.engine import make_engine
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


def test_readyz_503_names_the_revisions_when_the_schema_is_elsewhere(database_url: str) -> None:
    engine = make_engine(database_url)
    try:
        with engine.begin() as conn:
            conn.execute(text("UPDATE alembic_version SET version_num = '0000_older'"))
    finally:
        engine.dispose()
    with TestClient(create_app(Settings(database_url=database_url))) as client:
        response = client.get("/readyz")
    assert response.status_code == 503
    reason = response.json()["reason"]
    assert "0000_older" in reason
    assert migrate.head_revision(database_url) in reason
    assert "crmsync db upgrade" in reason


@pytest.mark.parametrize("folder", ["not-installed", "."], ids=["no-folder", "empty-folder"])
def test_readyz_503_not_500_when_migration_scripts_are_missing(
    folder: str, database_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """What an install without its migrations looked like: a clear reason, not a traceback."""
    monkeypatch.setattr(migrate, "MIGRATIONS_DIR", tmp_path / folder)
    with TestClient(create_app(Settings(database_url=database_url))) as client:
        response = client.get("/readyz")
    assert response.status_code == 503
    reason = response.json()["reason"]
    assert "migration scripts not found" in reason
    assert "reinstall" in reason


def test_readyz_503_not_500_when_migration_scripts_are_unreadable(
    database_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "versions").mkdir()
    (tmp_path / "versions" / "0001_broken.py").write_text("# no revision id in here\n")
    monkeypatch.setattr(migrate, "MIGRATIONS_DIR", tmp_path)
    with TestClient(create_app(Settings(database_url=database_url))) as client:
        response = client.get("/readyz")
    assert response.status_code == 503
    assert "cannot be read" in response.json()["reason"]


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

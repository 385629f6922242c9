"""The web console's sign-in, sessions, CSRF, roles and static files (app/console), on the test
database (SQLite or PostgreSQL)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import select

from app.db.api_keys import revoke_key
from app.db.models import AuditEntry, ConsoleSession
from app.main import create_app
from app.settings import Settings
from tests.support.api import make_key
from tests.support.console import console_client, csrf_token, sign_in


def _settings(database_url: str, tmp_path: Path, **extra: object) -> Settings:
    return Settings(  # type: ignore[call-arg]
        _env_file=None,
        database_url=database_url,
        data_dir=tmp_path,
        hubspot_base_url="https://127.0.0.1:9",
        hubspot_access_token="pat-test",
        webhooks={"embedded_worker": False},
        **extra,
    )


@pytest.fixture
def app(database_url: str, tmp_path: Path) -> FastAPI:
    return create_app(_settings(database_url, tmp_path))


@pytest.fixture
def viewer(app: FastAPI) -> Iterator[TestClient]:
    with console_client(app, "viewer", name="watcher") as client:
        yield client


def _audit(app: FastAPI, action: str) -> list[AuditEntry]:
    with app.state.session_factory() as s:
        return list(s.scalars(select(AuditEntry).where(AuditEntry.action == action)))


def test_a_page_without_a_session_redirects_to_sign_in_and_back(app: FastAPI) -> None:
    with TestClient(app) as client:
        answer = client.get("/console/status?x=1", follow_redirects=False)
        assert answer.status_code == 303
        assert answer.headers["location"] == "/console/sign-in?next=/console/status%3Fx%3D1"
        htmx = client.get("/console/status/panel", headers={"HX-Request": "true"})
        assert htmx.status_code == 204
        assert htmx.headers["HX-Redirect"].startswith("/console/sign-in?next=")


def test_sign_in_sets_a_strict_httponly_cookie_and_stores_only_its_hash(app: FastAPI) -> None:
    key = make_key(app, "viewer", name="watcher")
    with TestClient(app) as client:
        page = client.get("/console/sign-in")
        form_token = page.text.split('name="csrf_token" value="')[1].split('"')[0]
        answer = client.post(
            "/console/sign-in",
            data={"api_key": key, "csrf_token": form_token, "next": "/console/status"},
            follow_redirects=False,
        )
        assert answer.status_code == 303
        assert answer.headers["location"] == "/console/status"
        cookie = next(
            h for h in answer.headers.get_list("set-cookie") if h.startswith("crmsync_console=")
        )
        assert "HttpOnly" in cookie
        assert "SameSite=strict" in cookie
        assert "Path=/console" in cookie
        assert "Secure" not in cookie  # dev settings, no https public URL
        token = client.cookies.get("crmsync_console")
        assert token
        with app.state.session_factory() as s:
            stored = s.scalars(select(ConsoleSession)).all()
        assert len(stored) == 1
        assert stored[0].token_hash != token
        assert token not in str(stored[0].token_hash)
        page = client.get("/console/status")
        assert page.status_code == 200
        assert "watcher · viewer" in page.text
        assert page.headers["Cache-Control"] == "no-store"
    (entry,) = _audit(app, "console.sign_in")
    assert entry.actor == "key:watcher"


def test_the_cookie_is_secure_when_the_public_url_is_https(
    database_url: str, tmp_path: Path
) -> None:
    app = create_app(_settings(database_url, tmp_path, public_base_url="https://crm.example.com"))
    key = make_key(app, "viewer")
    with TestClient(app, base_url="https://testserver") as client:
        page = client.get("/console/sign-in")
        form_token = page.text.split('name="csrf_token" value="')[1].split('"')[0]
        answer = client.post(
            "/console/sign-in",
            data={"api_key": key, "csrf_token": form_token},
            follow_redirects=False,
        )
    cookie = next(
        h for h in answer.headers.get_list("set-cookie") if h.startswith("crmsync_console=")
    )
    assert "Secure" in cookie


@pytest.mark.parametrize(
    ("key", "status", "says"),
    [("crmsync_nope", 401, "not known"), ("", 422, "paste an API key")],
)
def test_a_bad_key_is_refused_next_to_the_field(
    app: FastAPI, key: str, status: int, says: str
) -> None:
    with TestClient(app) as client:
        page = client.get("/console/sign-in")
        form_token = page.text.split('name="csrf_token" value="')[1].split('"')[0]
        answer = client.post("/console/sign-in", data={"api_key": key, "csrf_token": form_token})
        assert answer.status_code == status
        assert 'class="field-error" id="err-api_key"' in answer.text
        assert says in answer.text
        assert client.cookies.get("crmsync_console") is None


def test_sign_in_without_the_forms_token_is_refused(app: FastAPI) -> None:
    key = make_key(app, "admin")
    with TestClient(app) as client:
        answer = client.post("/console/sign-in", data={"api_key": key, "csrf_token": "forged"})
        assert answer.status_code == 403
        assert client.cookies.get("crmsync_console") is None
    assert _audit(app, "console.sign_in") == []


def test_sign_out_needs_the_csrf_token_and_ends_the_session(
    app: FastAPI, viewer: TestClient
) -> None:
    forged = viewer.post("/console/sign-out", data={"csrf_token": "nope"})
    assert forged.status_code == 403
    assert viewer.get("/console/status", follow_redirects=False).status_code == 200
    answer = viewer.post(
        "/console/sign-out", data={"csrf_token": csrf_token(viewer)}, follow_redirects=False
    )
    assert answer.status_code == 303
    with app.state.session_factory() as s:
        assert s.scalars(select(ConsoleSession)).all() == []
    (entry,) = _audit(app, "console.sign_out")
    assert entry.actor == "key:watcher"


def test_an_old_cookie_is_useless_after_sign_out(app: FastAPI) -> None:
    with console_client(app, "viewer") as client:
        token = client.cookies.get("crmsync_console")
        client.post("/console/sign-out", data={"csrf_token": csrf_token(client)})
    with TestClient(app, cookies={"crmsync_console": token or ""}) as replay:
        assert replay.get("/console/status", follow_redirects=False).status_code == 303


def test_revoking_the_key_ends_its_sessions(app: FastAPI) -> None:
    key = make_key(app, "viewer", name="leaver")
    with TestClient(app) as client:
        sign_in(client, key)
        assert client.get("/console/status", follow_redirects=False).status_code == 200
        with app.state.session_factory() as s:
            row_id = s.scalar(select(ConsoleSession.key_id))
            assert row_id is not None
            revoke_key(s, row_id)
            s.commit()
        assert client.get("/console/status", follow_redirects=False).status_code == 303


def test_the_bootstrap_key_signs_in_as_admin_until_it_changes(
    database_url: str, tmp_path: Path
) -> None:
    app = create_app(_settings(database_url, tmp_path, admin_bootstrap_key="b" * 40))
    with TestClient(app) as client:
        sign_in(client, "b" * 40)
        assert "bootstrap · admin" in client.get("/console/status").text
        token = client.cookies.get("crmsync_console") or ""
    other = create_app(_settings(database_url, tmp_path, admin_bootstrap_key="c" * 40))
    with TestClient(other, cookies={"crmsync_console": token}) as client:
        assert client.get("/console/status", follow_redirects=False).status_code == 303


def test_the_next_parameter_never_leaves_the_console(app: FastAPI) -> None:
    key = make_key(app, "viewer")
    with TestClient(app) as client:
        page = client.get("/console/sign-in?next=https://evil.example/")
        assert 'name="next" value="/console/"' in page.text
        form_token = page.text.split('name="csrf_token" value="')[1].split('"')[0]
        answer = client.post(
            "/console/sign-in",
            data={"api_key": key, "csrf_token": form_token, "next": "//evil.example/"},
            follow_redirects=False,
        )
        assert answer.headers["location"] == "/console/"


def test_status_page_and_its_live_panel(viewer: TestClient) -> None:
    page = viewer.get("/console/status")
    assert page.status_code == 200
    assert 'hx-get="/console/status/panel"' in page.text
    assert "every 5s" in page.text
    assert "companies" in page.text  # the configured HubSpot objects, one row each
    assert "Job queue" in page.text
    panel = viewer.get("/console/status/panel", headers={"HX-Request": "true"})
    assert panel.status_code == 200
    assert "<html" not in panel.text
    assert 'datetime="' in panel.text
    assert ' UTC"' in panel.text
    # The viewer's nav has no Keys page (admin).
    assert 'href="/console/keys"' not in page.text


def test_static_files_are_served_with_cache_headers(app: FastAPI) -> None:
    with TestClient(app) as client:
        for name in ("htmx.min.js", "console.js", "console.css"):
            answer = client.get(f"/console/static/{name}")
            assert answer.status_code == 200, name
            assert answer.headers["Cache-Control"] == "public, max-age=86400"
        assert client.get("/console/static/nope.js").status_code == 404


def test_status_shows_the_api_budget_as_a_bar(database_url: str, tmp_path: Path) -> None:
    app = create_app(
        _settings(database_url, tmp_path, hubspot={"daily_limit": 1000, "budget_share": 0.5})
    )
    with console_client(app, "viewer") as client:
        page = client.get("/console/status")
    assert '<meter min="0" max="500" value="0"' in page.text
    assert "<strong>500</strong> left of 500" in page.text

"""``/docs`` and ``/redoc`` work without internet: every asset they load is served by the app.

FastAPI's defaults load Swagger UI and ReDoc from a CDN, which leaves the pages blank on a
disconnected network; crmsync serves the assets that the ``fastapi-offline`` package ships.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from app.main import create_app
from app.settings import Settings

# src= and href= attributes, and the spec URL that the page's script fetches.
ASSET = re.compile(r"""(?:src|href)=["']([^"']+)["']""")
SPEC = re.compile(r"""(?:url:\s*|spec-url=)["']([^"']+)["']""")


@pytest.fixture
def client(tmp_path: Path) -> Iterator[TestClient]:
    with TestClient(create_app(Settings(database_url=f"sqlite:///{tmp_path}/x.db"))) as c:
        yield c


@pytest.mark.parametrize(
    ("page", "library"),
    [("/docs", "SwaggerUIBundle"), ("/redoc", "Redoc")],
)
def test_docs_page_loads_every_asset_from_the_app(
    client: TestClient, page: str, library: str
) -> None:
    html = client.get(page)
    assert html.status_code == 200
    assert re.findall(r"https?://\S+", html.text) == []  # no CDN, no absolute URL at all
    assets = ASSET.findall(html.text)
    assert any(a.endswith(".js") for a in assets), assets
    for asset in assets:
        assert asset.startswith("/"), asset
        response = client.get(asset)
        assert response.status_code == 200, asset
    scripts = [client.get(a).text for a in assets if a.endswith(".js")]
    assert any(library in js for js in scripts)  # the real bundle, not a placeholder
    (spec,) = SPEC.findall(html.text)
    assert client.get(spec).json()["info"]["title"] == "crmsync"


def test_swagger_ui_styles_are_served_as_css(client: TestClient) -> None:
    css = [a for a in ASSET.findall(client.get("/docs").text) if a.endswith(".css")]
    assert css
    for asset in css:
        response = client.get(asset)
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/css")


def test_swagger_ui_does_not_call_the_online_validator(client: TestClient) -> None:
    assert '"validatorUrl": null' in client.get("/docs").text

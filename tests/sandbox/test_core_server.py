"""The sandbox server: HTTPS with the test CA, info/env files, control API, stats, tokens, clock."""

from __future__ import annotations

import json
import ssl
from pathlib import Path
from typing import Any

import pytest
import requests

from crmsync_sandbox import Sandbox, SandboxConfig

SF_QUERY = "/services/data/v59.0/query"
HS_LIST = "/crm/v3/objects/companies"


def _sf(core: Sandbox) -> dict[str, str]:
    return {"Authorization": f"Bearer {core.info.salesforce.access_token}"}


def _hs(core: Sandbox) -> dict[str, str]:
    return {"Authorization": f"Bearer {core.info.hubspot.access_token}"}


def test_serves_https_verified_against_the_test_ca(
    core: Sandbox, core_http: requests.Session
) -> None:
    base = core.info.salesforce.login_url
    assert base.startswith("https://127.0.0.1:")
    assert int(base.rsplit(":", 1)[1]) > 0
    assert core.info.hubspot.base_url == base
    assert core.info.control_url == base + "/__sandbox"
    # The org's instance is another name of the same server, as a My Domain is not the login
    # host; the certificate covers both names.
    assert core.info.salesforce.instance_url == base.replace("127.0.0.1", "localhost")
    assert core_http.get(
        core.info.salesforce.instance_url + SF_QUERY,
        params={"q": "SELECT Id FROM Account"},
        headers=_sf(core),
    ).ok

    response = core_http.get(
        base + SF_QUERY, params={"q": "SELECT Id FROM Account"}, headers=_sf(core)
    )
    assert response.status_code == 200

    # The certificate chains to ca.pem and nothing else: the system store rejects it.
    with requests.Session() as plain:
        plain.trust_env = False
        with pytest.raises(requests.exceptions.SSLError):
            plain.get(base + SF_QUERY)
    ca_text = Path(core.info.ca_file).read_text()
    assert "BEGIN CERTIFICATE" in ca_text
    context = ssl.create_default_context(cafile=core.info.ca_file)
    assert context.cert_store_stats()["x509_ca"] == 1


def test_emulators_got_the_seed_plan(core: Sandbox) -> None:
    fake = core.ctx.emulators["salesforce"]
    assert len(fake.seed_companies) == 3  # type: ignore[attr-defined]
    assert all(name for name in fake.seed_companies)  # type: ignore[attr-defined]


def test_control_rejects_bad_input_naming_the_field(core: Sandbox) -> None:
    cases = [
        ("POST", "/clock/advance", {"seconds": "soon"}, "seconds"),
        ("POST", "/clock/freeze", {"at": "yesterday"}, "at"),
        ("POST", "/tokens/expire", {"crm": "pipedrive"}, "crm"),
        ("POST", "/salesforce/touch", {"ids": ["a"]}, "object"),
        ("POST", "/salesforce/touch", {"object": "Account"}, "ids"),
        ("POST", "/zoho/close-won", {"id": "1"}, "crm"),
        ("PUT", "/faults", {"routes": [{"match": "GET /crm/*", "rate_limit": 2}]}, "routes[0]"),
        ("PUT", "/webhooks", {"batch_size": 500}, "batch_size"),
        ("PUT", "/webhooks", {"hubspot_url": "ftp://x"}, "hubspot_url"),
        (
            "POST",
            "/faults/records",
            {"crm": "hubspot", "object": "deals", "ids": ["1"], "kind": "x"},
            "kind",
        ),
    ]
    for method, path, body, field in cases:
        response = core.control_response(method, path, json=body)
        assert response.status_code == 400, (path, response.text)
        assert response.json()["field"] == field, (path, response.json())
    broken = core.control_response("POST", "/clock/advance", json=None)
    assert broken.status_code == 400
    assert (
        core.control_response("POST", "/salesforce/close-won", json={"id": "missing"}).status_code
        == 404
    )


def test_control_dispatches_to_the_emulators(core: Sandbox) -> None:
    sf = core.ctx.emulators["salesforce"]
    hs = core.ctx.emulators["hubspot"]
    at = "2025-03-01T12:00:00Z"
    answer = core.control(
        "POST", "/salesforce/touch", json={"object": "Account", "count": 3, "at": at}
    )
    assert answer["ids"] == ["id0", "id1", "id2"]
    object_name, ids, stamp = sf.touched[-1]  # type: ignore[attr-defined]
    assert (object_name, ids, stamp.isoformat()) == (
        "Account",
        ["id0", "id1", "id2"],
        "2025-03-01T12:00:00+00:00",
    )
    core.control("POST", "/hubspot/touch", json={"object": "deals", "ids": ["7", "8"]})
    assert hs.touched[-1][1] == ["7", "8"]  # type: ignore[attr-defined]
    core.control("POST", "/hubspot/close-won", json={"id": "512"})
    assert hs.closed_won[-1] == "512"  # type: ignore[attr-defined]
    core.control(
        "POST", "/salesforce/fields", json={"object": "Account", "name": "Foo__c", "type": "double"}
    )
    assert sf.fields[-1] == ("Account", "Foo__c", "double")  # type: ignore[attr-defined]
    info = core.control("GET", "/info")
    assert info["ca_file"] == core.info.ca_file


def test_stats_count_calls_by_route_template_and_status(
    core: Sandbox, core_http: requests.Session
) -> None:
    base = core.info.salesforce.instance_url
    core.control("POST", "/reset")
    for _ in range(3):
        core_http.get(base + SF_QUERY, params={"q": "x"}, headers=_sf(core))
    core_http.get(base + "/services/data/v59.0/query", headers={"Authorization": "Bearer nope"})
    core_http.get(base + HS_LIST, headers=_hs(core))
    core_http.patch(base + "/crm/v4/objects/deals/42", headers=_hs(core))  # mounted route
    core_http.get(base + "/crm/v9/nowhere", headers=_hs(core))
    core.control("GET", "/stats")  # the control API is not counted

    stats = core.control("GET", "/stats")
    sf_calls = stats["calls"]["salesforce"]
    assert sf_calls["GET /services/data/{version}/query"] == {"200": 3, "401": 1}
    hs_calls = stats["calls"]["hubspot"]
    assert hs_calls["GET /crm/v3/objects/{object_type}"] == {"200": 1}
    assert hs_calls["PATCH /crm/v4/objects/deals/{id}"] == {"204": 1}
    assert hs_calls["GET (unmatched)"] == {"404": 1}
    assert stats["calls_total"] == {"salesforce": 4, "hubspot": 3}
    assert stats["written"] == {"hubspot": {"deals": 1}}

    reset = core.control("POST", "/reset")
    assert reset == {"reset": True}
    assert core.ctx.emulators["hubspot"].rate_limit_resets >= 1  # type: ignore[attr-defined]
    assert core.control("GET", "/stats")["calls_total"] == {}


def test_expired_tokens_are_rejected_until_reissued_or_restored(
    core: Sandbox, core_http: requests.Session
) -> None:
    base = core.info.salesforce.instance_url
    query = base + SF_QUERY
    assert core_http.get(query, headers=_sf(core)).status_code == 200
    core.control("POST", "/tokens/expire", json={"crm": "salesforce"})
    expired = core_http.get(query, headers=_sf(core))
    assert expired.status_code == 401
    assert expired.json()[0]["errorCode"] == "INVALID_SESSION_ID"
    assert (
        core_http.get(base + HS_LIST, headers=_hs(core)).status_code == 200
    )  # other CRM unaffected
    fresh = core_http.post(base + "/services/oauth2/token").json()["access_token"]
    assert core_http.get(query, headers={"Authorization": f"Bearer {fresh}"}).status_code == 200
    assert core_http.get(query, headers=_sf(core)).status_code == 401  # static one still expired

    core.control("POST", "/tokens/expire", json={"crm": "hubspot"})
    assert core_http.get(base + HS_LIST, headers=_hs(core)).status_code == 401
    core.control("POST", "/tokens/restore", json={"crm": "hubspot"})
    assert core_http.get(base + HS_LIST, headers=_hs(core)).status_code == 200


def test_clock_freeze_reaches_the_emulators(core: Sandbox, core_http: requests.Session) -> None:
    base = core.info.salesforce.instance_url
    core.control("POST", "/clock/freeze", json={"at": "2024-02-29T10:00:00Z"})
    first = core_http.get(base + SF_QUERY, headers=_sf(core)).json()["now"]
    second = core_http.get(base + HS_LIST, headers=_hs(core)).json()["now"]
    assert first == second == "2024-02-29T10:00:00+00:00"
    core.control("POST", "/clock/advance", json={"seconds": 90})
    assert (
        core_http.get(base + SF_QUERY, headers=_sf(core)).json()["now"]
        == "2024-02-29T10:01:30+00:00"
    )
    core.control("POST", "/clock/unfreeze")
    assert not core.control("GET", "/clock")["frozen"]
    assert core_http.get(base + SF_QUERY, headers=_sf(core)).json()["now"] > "2025"


def test_state_dir_keeps_data_and_files(tmp_path: Path, fake_emulators: list[Any]) -> None:
    """With a state dir, the database and TLS files live there; info/env files are written."""
    info_file = tmp_path / "var" / "sandbox.json"
    env_file = tmp_path / "sandbox.env"
    config = SandboxConfig(accounts=5, state_dir=tmp_path / "state")
    with Sandbox(
        config, info_file=info_file, env_file=env_file, emulator_factories=fake_emulators
    ) as sb:
        data = json.loads(info_file.read_text())
        assert data == {
            "salesforce": {
                "instance_url": sb.info.salesforce.instance_url,
                "api_version": "59.0",
                "access_token": config.sf_access_token,
                "client_id": config.sf_client_id,
                "client_secret": config.sf_client_secret,
                "organization_id": config.sf_organization_id,
                "login_url": sb.info.salesforce.login_url,
                "username": config.sf_username,
                "refresh_token": config.sf_refresh_token,
                "jwt_private_key_file": str(tmp_path / "state" / "oauth" / "jwt-private-key.pem"),
                "jwt_certificate_file": str(tmp_path / "state" / "oauth" / "jwt-certificate.pem"),
            },
            "hubspot": {
                "base_url": sb.info.hubspot.base_url,
                "access_token": config.hs_access_token,
                "app_secret": config.hs_app_secret,
                "portal_id": config.hs_portal_id,
                "client_id": config.hs_client_id,
                "client_secret": config.hs_client_secret,
                "refresh_token": config.hs_refresh_token,
            },
            "ca_file": str(tmp_path / "state" / "tls" / "ca.pem"),
            "control_url": sb.info.salesforce.login_url + "/__sandbox",
        }
        env = dict(
            line.split("=", 1)
            for line in env_file.read_text().splitlines()
            if line and not line.startswith("#")
        )
        assert env == {
            "CRMSYNC_SALESFORCE_LOGIN_URL": sb.info.salesforce.login_url,
            "CRMSYNC_SALESFORCE_INSTANCE_URL": sb.info.salesforce.instance_url,
            "CRMSYNC_SALESFORCE_API_VERSION": "59.0",
            "CRMSYNC_SALESFORCE_CLIENT_ID": config.sf_client_id,
            "CRMSYNC_SALESFORCE_CLIENT_SECRET": config.sf_client_secret,
            "CRMSYNC_SALESFORCE_ACCESS_TOKEN": config.sf_access_token,
            "CRMSYNC_SALESFORCE_ORGANIZATION_ID": config.sf_organization_id,
            "CRMSYNC_HUBSPOT_BASE_URL": sb.info.hubspot.base_url,
            "CRMSYNC_HUBSPOT_ACCESS_TOKEN": config.hs_access_token,
            "CRMSYNC_HUBSPOT_APP_SECRET": config.hs_app_secret,
            "CRMSYNC_CA_BUNDLE": sb.info.ca_file,
        }
        assert sb.control("GET", "/stats")["calls_total"] == {}
    assert (tmp_path / "state" / "sandbox.db").exists()
    assert not sb.running

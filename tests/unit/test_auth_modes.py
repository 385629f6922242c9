"""Which login flow the settings choose, what each flow lacks, and the JWT audience: tables."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import SecretStr, ValidationError

from app.auth_modes import (
    HubSpotAuthFields,
    SalesforceAuthFields,
    hubspot_mode,
    hubspot_problems,
    jwt_audience,
    salesforce_login_url,
    salesforce_mode,
    salesforce_problems,
)
from app.settings import InsecureSettingsError, Settings

MY_DOMAIN = "https://acme.my.salesforce.com"
KEY = Path(__file__)  # any existing file stands for the key in the pure checks


@pytest.mark.parametrize(
    ("fields", "mode"),
    [
        (SalesforceAuthFields(), None),
        (SalesforceAuthFields(instance_url=MY_DOMAIN), None),
        (SalesforceAuthFields(client_id="c", username="u", private_key_file=KEY), "jwt"),
        (
            SalesforceAuthFields(client_id="c", client_secret=True, refresh_token=True),
            "refresh_token",
        ),
        (SalesforceAuthFields(client_id="c", client_secret=True), "client_credentials"),
        (SalesforceAuthFields(access_token=True, instance_url=MY_DOMAIN), "session"),
        # A token next to client credentials: client credentials, the token is tried first.
        (
            SalesforceAuthFields(client_id="c", client_secret=True, access_token=True),
            "client_credentials",
        ),
        # The explicit setting wins over inference.
        (SalesforceAuthFields(auth="session", client_id="c", access_token=True), "session"),
    ],
)
def test_salesforce_mode_is_the_setting_or_inferred(
    fields: SalesforceAuthFields, mode: str | None
) -> None:
    assert salesforce_mode(fields) == mode


@pytest.mark.parametrize(
    ("fields", "named"),
    [
        (SalesforceAuthFields(username="u"), "CRMSYNC_SALESFORCE_CLIENT_ID"),
        (SalesforceAuthFields(username="u", client_id="c"), "CRMSYNC_SALESFORCE_PRIVATE_KEY_FILE"),
        (SalesforceAuthFields(auth="jwt", client_id="c", private_key_file=KEY), "USERNAME"),
        (
            SalesforceAuthFields(client_id="c", username="u", private_key_file=Path("/no/key")),
            "PRIVATE_KEY_FILE: no file at /no/key",
        ),
        (SalesforceAuthFields(auth="refresh_token", client_id="c"), "REFRESH_TOKEN"),
        (SalesforceAuthFields(client_id="c"), "CRMSYNC_SALESFORCE_CLIENT_SECRET"),
        (SalesforceAuthFields(client_id="c", client_secret=True), "LOGIN_URL (your My Domain"),
        (
            SalesforceAuthFields(
                client_id="c", client_secret=True, login_url="https://login.salesforce.com"
            ),
            "does not serve the client credentials flow",
        ),
        (SalesforceAuthFields(access_token=True), "CRMSYNC_SALESFORCE_INSTANCE_URL"),
        (SalesforceAuthFields(auth="session", instance_url=MY_DOMAIN), "ACCESS_TOKEN"),
    ],
)
def test_salesforce_problems_name_the_missing_setting(
    fields: SalesforceAuthFields, named: str
) -> None:
    problems = salesforce_problems(fields)
    assert problems
    assert named in "; ".join(problems)


@pytest.mark.parametrize(
    "fields",
    [
        SalesforceAuthFields(),
        SalesforceAuthFields(instance_url=MY_DOMAIN),
        SalesforceAuthFields(client_id="c", username="u", private_key_file=KEY),
        SalesforceAuthFields(client_id="c", refresh_token=True),  # secret waived by the app
        SalesforceAuthFields(client_id="c", client_secret=True, instance_url=MY_DOMAIN),
        SalesforceAuthFields(access_token=True, instance_url=MY_DOMAIN),
    ],
)
def test_complete_flows_have_no_problems(fields: SalesforceAuthFields) -> None:
    assert salesforce_problems(fields) == []


@pytest.mark.parametrize(
    ("fields", "url"),
    [
        (SalesforceAuthFields(client_id="c", refresh_token=True), "https://login.salesforce.com"),
        (
            SalesforceAuthFields(
                client_id="c", refresh_token=True, login_url="https://test.salesforce.com"
            ),
            "https://test.salesforce.com",
        ),
        (
            SalesforceAuthFields(client_id="c", client_secret=True, instance_url=MY_DOMAIN),
            MY_DOMAIN,
        ),
        (SalesforceAuthFields(access_token=True, instance_url=MY_DOMAIN), None),
    ],
)
def test_login_url_defaults_per_flow(fields: SalesforceAuthFields, url: str | None) -> None:
    assert salesforce_login_url(fields, salesforce_mode(fields)) == url


@pytest.mark.parametrize(
    ("login", "audience"),
    [
        ("https://login.salesforce.com", "https://login.salesforce.com"),
        ("https://test.salesforce.com", "https://test.salesforce.com"),
        (MY_DOMAIN, "https://login.salesforce.com"),
        ("https://acme--uat.sandbox.my.salesforce.com", "https://test.salesforce.com"),
        ("https://acme.my.site.com/customers", "https://acme.my.site.com/customers"),
        ("https://127.0.0.1:8440/", "https://127.0.0.1:8440"),
    ],
)
def test_jwt_audience(login: str, audience: str) -> None:
    assert jwt_audience(login) == audience


@pytest.mark.parametrize(
    ("fields", "mode", "problem"),
    [
        (HubSpotAuthFields(), None, None),
        (HubSpotAuthFields(access_token=True), "private_app", None),
        (HubSpotAuthFields(client_id="c", client_secret=True, refresh_token=True), "oauth", None),
        (HubSpotAuthFields(refresh_token=True), "oauth", "CRMSYNC_HUBSPOT_CLIENT_ID"),
        (HubSpotAuthFields(client_id="c", client_secret=True), "oauth", "REFRESH_TOKEN"),
        (HubSpotAuthFields(auth="private_app"), "private_app", "CRMSYNC_HUBSPOT_ACCESS_TOKEN"),
    ],
)
def test_hubspot_mode_and_problems(
    fields: HubSpotAuthFields, mode: str | None, problem: str | None
) -> None:
    assert hubspot_mode(fields) == mode
    problems = "; ".join(hubspot_problems(fields))
    if problem is None:
        assert problems == ""
    else:
        assert problem in problems


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    import os

    for key in list(os.environ):
        if key.startswith("CRMSYNC_"):
            monkeypatch.delenv(key)
    monkeypatch.chdir(tmp_path)


@pytest.mark.usefixtures("clean_env")
def test_half_configured_flow_stops_settings_naming_the_setting(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("CRMSYNC_SALESFORCE_AUTH", "jwt")
    monkeypatch.setenv("CRMSYNC_SALESFORCE_CLIENT_ID", "cid")
    with pytest.raises(ValidationError) as info:
        Settings()
    message = str(info.value)
    assert "CRMSYNC_SALESFORCE_AUTH=jwt needs" in message
    assert "CRMSYNC_SALESFORCE_USERNAME" in message


@pytest.mark.usefixtures("clean_env")
def test_unknown_auth_value_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CRMSYNC_SALESFORCE_AUTH", "password")
    with pytest.raises(ValidationError) as info:
        Settings()
    assert info.value.errors()[0]["loc"] == ("salesforce_auth",)


@pytest.mark.usefixtures("clean_env")
def test_prod_refuses_a_session_id(monkeypatch: pytest.MonkeyPatch) -> None:
    for key, value in {
        "CRMSYNC_ENV": "prod",
        "CRMSYNC_SALESFORCE_INSTANCE_URL": MY_DOMAIN,
        "CRMSYNC_SALESFORCE_ACCESS_TOKEN": "00Dxx!real-token",
        "CRMSYNC_SALESFORCE_ORGANIZATION_ID": "00D000000000001",
    }.items():
        monkeypatch.setenv(key, value)
    with pytest.raises(InsecureSettingsError, match="session is for tests only"):
        Settings()


@pytest.mark.usefixtures("clean_env")
def test_prod_accepts_jwt(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    key = tmp_path / "key.pem"
    key.write_text("-----BEGIN PRIVATE KEY-----\n")
    for name, value in {
        "CRMSYNC_ENV": "prod",
        "CRMSYNC_SALESFORCE_CLIENT_ID": "3MVG9-consumer-key",
        "CRMSYNC_SALESFORCE_USERNAME": "integration@acme.com",
        "CRMSYNC_SALESFORCE_PRIVATE_KEY_FILE": str(key),
        "CRMSYNC_SALESFORCE_ORGANIZATION_ID": "00D000000000001",
    }.items():
        monkeypatch.setenv(name, value)
    settings = Settings()
    assert settings.salesforce_auth_mode == "jwt"
    assert settings.salesforce_token_url_base == "https://login.salesforce.com"
    assert settings.enabled_crms == ["salesforce"]


@pytest.mark.usefixtures("clean_env")
def test_settings_repr_hides_the_oauth_secrets() -> None:
    s = Settings(
        salesforce_client_id="cid",
        salesforce_client_secret=SecretStr("sf-client-topsecret"),
        salesforce_refresh_token=SecretStr("5Aep-topsecret"),
        hubspot_client_id="hid",
        hubspot_client_secret=SecretStr("hs-client-topsecret"),
        hubspot_refresh_token=SecretStr("na1-topsecret"),
    )
    assert (s.salesforce_auth_mode, s.hubspot_auth_mode) == ("refresh_token", "oauth")
    for text in (repr(s), str(s), repr(s.model_dump()), s.model_dump_json()):
        assert "topsecret" not in text

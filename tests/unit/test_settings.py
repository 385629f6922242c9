"""Settings: names, defaults, normalisation, secrets hidden, production refusal."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import SecretStr, ValidationError

from app.settings import InsecureSettingsError, Settings

PROD_OK = {
    "CRMSYNC_ENV": "prod",
    "CRMSYNC_DATABASE_URL": "postgresql://u@db/crmsync",
    "CRMSYNC_HUBSPOT_ACCESS_TOKEN": "pat-na1-0f1e2d3c",
    "CRMSYNC_HUBSPOT_APP_SECRET": "5b1e7a90-real-secret",
}


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Isolate from the developer's environment and .env file."""
    import os

    for key in list(os.environ):
        if key.startswith("CRMSYNC_"):
            monkeypatch.delenv(key)
    monkeypatch.chdir(tmp_path)


def test_defaults_are_the_embedded_sqlite_database_and_public_hubspot() -> None:
    s = Settings()
    assert s.env == "dev"
    assert s.database_url == "sqlite:///./var/crmsync.db"
    assert s.hubspot_base_url == "https://api.hubapi.com"
    assert s.enabled_crms == []


def test_documented_environment_names_are_read(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    ca_file = tmp_path / "ca.pem"
    ca_file.write_text("-----BEGIN CERTIFICATE-----\n")
    env = {
        "CRMSYNC_SALESFORCE_INSTANCE_URL": "https://acme.my.salesforce.com/",
        "CRMSYNC_SALESFORCE_CLIENT_ID": "cid",
        "CRMSYNC_SALESFORCE_CLIENT_SECRET": "csecret",
        "CRMSYNC_SALESFORCE_ACCESS_TOKEN": "00Dxx!token",
        "CRMSYNC_SALESFORCE_ORGANIZATION_ID": "00D000000000001",
        "CRMSYNC_HUBSPOT_BASE_URL": "https://127.0.0.1:8440",
        "CRMSYNC_HUBSPOT_ACCESS_TOKEN": "pat-na1-x",
        "CRMSYNC_HUBSPOT_APP_SECRET": "hs-secret",
        "CRMSYNC_CA_BUNDLE": str(ca_file),
        "CRMSYNC_ADMIN_BOOTSTRAP_KEY": "bootstrap-key-0123456789abcdef",
        "CRMSYNC_SYNC__PAGE_SIZE": "500",
    }
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    s = Settings()
    assert s.salesforce_instance_url == "https://acme.my.salesforce.com"  # trailing slash gone
    assert s.salesforce_client_id == "cid"
    assert s.salesforce_client_secret == SecretStr("csecret")
    assert s.salesforce_access_token == SecretStr("00Dxx!token")
    assert s.salesforce_organization_id == "00D000000000001"
    assert s.hubspot_base_url == "https://127.0.0.1:8440"
    assert s.hubspot_access_token == SecretStr("pat-na1-x")
    assert s.hubspot_app_secret == SecretStr("hs-secret")
    assert s.ca_bundle == ca_file
    assert s.admin_bootstrap_key == SecretStr("bootstrap-key-0123456789abcdef")
    assert s.sync.page_size == 500
    assert s.enabled_crms == ["salesforce", "hubspot"]


def test_dotenv_file_is_read(tmp_path: Path) -> None:
    (tmp_path / ".env").write_text("CRMSYNC_DATABASE_URL=sqlite:///./var/other.db\n")
    assert Settings().database_url == "sqlite:///./var/other.db"


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("postgres://u@h/db", "postgresql+psycopg://u@h/db"),
        ("postgresql://u@h/db", "postgresql+psycopg://u@h/db"),
        ("postgresql+psycopg://u@h/db", "postgresql+psycopg://u@h/db"),
        ("sqlite:///x.db", "sqlite:///x.db"),
    ],
)
def test_database_url_uses_psycopg3(given: str, expected: str) -> None:
    assert Settings(database_url=given).database_url == expected


def test_url_without_scheme_is_refused_with_the_field_named() -> None:
    with pytest.raises(ValidationError) as info:
        Settings(salesforce_instance_url="acme.my.salesforce.com")
    assert info.value.errors()[0]["loc"] == ("salesforce_instance_url",)


def test_secrets_never_appear_in_repr_or_str() -> None:
    s = Settings(
        hubspot_client_id="hs-app",
        hubspot_client_secret=SecretStr("hs-client-supersecret"),
        hubspot_refresh_token=SecretStr("na1-refresh-supersecret"),
        hubspot_access_token=SecretStr("pat-na1-supersecret"),
        hubspot_app_secret=SecretStr("app-supersecret"),
        salesforce_auth="refresh_token",
        salesforce_client_id="cid",
        salesforce_client_secret=SecretStr("sf-supersecret"),
        salesforce_refresh_token=SecretStr("5Aep-supersecret"),
        salesforce_access_token=SecretStr("00D!supersecret"),
        admin_bootstrap_key=SecretStr("key-supersecret"),
    )
    for text in (repr(s), str(s), repr(s.model_dump())):
        assert "supersecret" not in text


def test_prod_with_real_secrets_starts(monkeypatch: pytest.MonkeyPatch) -> None:
    for key, value in PROD_OK.items():
        monkeypatch.setenv(key, value)
    assert Settings().env == "prod"


@pytest.mark.parametrize(
    ("change", "named"),
    [
        ({"CRMSYNC_HUBSPOT_APP_SECRET": None}, "CRMSYNC_HUBSPOT_APP_SECRET"),
        ({"CRMSYNC_HUBSPOT_APP_SECRET": "changeme"}, "CRMSYNC_HUBSPOT_APP_SECRET"),
        ({"CRMSYNC_HUBSPOT_ACCESS_TOKEN": "changethis"}, "CRMSYNC_HUBSPOT_ACCESS_TOKEN"),
        ({"CRMSYNC_ADMIN_BOOTSTRAP_KEY": "admin"}, "CRMSYNC_ADMIN_BOOTSTRAP_KEY"),
        ({"CRMSYNC_ADMIN_BOOTSTRAP_KEY": "short-but-not-default"}, "shorter than 24"),
        ({"CRMSYNC_HUBSPOT_ACCESS_TOKEN": None, "CRMSYNC_HUBSPOT_APP_SECRET": None}, "no CRM"),
        (
            {"CRMSYNC_SALESFORCE_INSTANCE_URL": "https://acme.my.salesforce.com"},
            "CRMSYNC_SALESFORCE_CLIENT_SECRET",
        ),
        (
            {
                "CRMSYNC_SALESFORCE_INSTANCE_URL": "https://acme.my.salesforce.com",
                "CRMSYNC_SALESFORCE_ACCESS_TOKEN": "00Dxx!real",
            },
            "CRMSYNC_SALESFORCE_ORGANIZATION_ID",
        ),
    ],
)
def test_prod_refuses_missing_or_default_secrets(
    monkeypatch: pytest.MonkeyPatch, change: dict[str, str | None], named: str
) -> None:
    env = {**PROD_OK, **change}
    for key, value in env.items():
        if value is not None:
            monkeypatch.setenv(key, value)
    with pytest.raises(InsecureSettingsError, match=named):
        Settings()


def test_dev_tolerates_default_secrets() -> None:
    s = Settings(hubspot_access_token=SecretStr("changeme"))
    assert s.insecure_settings()  # reported, but dev does not refuse


@pytest.mark.parametrize(
    ("given", "says"),
    [
        ("not a url", "is not a database URL"),
        ("mysql://u@h/db", "unsupported database 'mysql'"),
        ("postgresql+asyncpg://u@h/db", "unsupported database 'postgresql+asyncpg'"),
        ("postgresql://u@h", "no database name"),
    ],
)
def test_bad_or_unsupported_database_url_is_refused_with_examples(given: str, says: str) -> None:
    with pytest.raises(ValidationError) as info:
        Settings(database_url=given)
    error = info.value.errors()[0]
    assert error["loc"] == ("database_url",)
    assert says in error["msg"]
    assert "postgresql://user:password@host:5432/dbname" in error["msg"]


def test_missing_ca_file_is_refused_at_load(tmp_path: Path) -> None:
    with pytest.raises(ValidationError) as info:
        Settings(ca_bundle=tmp_path / "nowhere.pem")
    error = info.value.errors()[0]
    assert error["loc"] == ("ca_bundle",)
    assert "no CA file at" in error["msg"]


def test_empty_ca_bundle_means_system_cas(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CRMSYNC_CA_BUNDLE", "")
    assert Settings().ca_bundle is None


def test_log_level_is_checked_and_normalised() -> None:
    assert Settings(log_level="warning").log_level == "WARNING"
    with pytest.raises(ValidationError, match="not a log level"):
        Settings(log_level="LOUD")

"""build_writer and CRMSYNC_PUSH__*: the push's writers are tuned by settings."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from app.crm.hubspot.writer import HubSpotWriter
from app.crm.salesforce.writer import SalesforceWriter
from app.crm.writes import WriteTuning
from app.errors import ConfigError
from app.settings import PushSettings, Settings
from app.wiring.writers import build_writer, write_tuning


def settings(**kw: object) -> Settings:
    return Settings(
        _env_file=None,  # type: ignore[call-arg]
        salesforce_instance_url="https://127.0.0.1:1",
        salesforce_access_token="00Dx!token",
        hubspot_access_token="pat-na1-x",
        hubspot_base_url="https://127.0.0.1:1",
        **kw,
    )


def test_push_settings_default_to_the_documented_tuning() -> None:
    assert PushSettings().tuning() == WriteTuning() == WriteTuning(200, 100, 2_000)


def test_push_settings_come_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CRMSYNC_PUSH__BULK_THRESHOLD", "500")
    monkeypatch.setenv("CRMSYNC_PUSH__HUBSPOT_CHUNK", "50")
    assert write_tuning(settings()) == WriteTuning(
        salesforce_chunk=200, hubspot_chunk=50, bulk_threshold=500
    )


@pytest.mark.parametrize(
    "values",
    [
        {"salesforce_chunk": 201},
        {"hubspot_chunk": 101},
        {"bulk_threshold": -1},
        {"hubspot_chunk": 0},
    ],
)
def test_push_settings_refuse_what_the_crms_refuse(values: dict[str, int]) -> None:
    with pytest.raises(ValidationError):
        PushSettings(**values)  # type: ignore[arg-type]


def test_build_writer_per_crm() -> None:
    s = settings(push=PushSettings(bulk_threshold=10))
    sf = build_writer(s, "salesforce")
    hs = build_writer(s, "hubspot")
    assert isinstance(sf, SalesforceWriter)
    assert isinstance(hs, HubSpotWriter)
    assert sf.tuning.bulk_threshold == hs.tuning.bulk_threshold == 10
    assert (sf.name, hs.name, sf.api_calls, hs.api_calls) == ("salesforce", "hubspot", 0, 0)
    with pytest.raises(ConfigError, match="unknown CRM"):
        build_writer(s, "pipedrive")  # type: ignore[arg-type]

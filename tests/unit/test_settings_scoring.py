"""ScoringSettings (domain.md 10): defaults, CRMSYNC_SCORING__ variables, a TOML file, refusals."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest
from pydantic import ValidationError

from app.domain.config import PerTier, ScoringConfig
from app.settings import Settings


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for key in list(os.environ):
        if key.startswith("CRMSYNC_"):
            monkeypatch.delenv(key)
    monkeypatch.chdir(tmp_path)


def test_defaults_are_domain_md() -> None:
    cfg = Settings().scoring.config
    assert cfg == ScoringConfig()
    assert cfg.weights.usage == 30  # 4.2
    assert cfg.tiering.low_min == 5_000  # 3.2, 001:439
    assert cfg.min_coverage == 50  # 4.4


def test_the_defaults_unvalidated_are_what_the_validator_makes_of_them() -> None:
    """With no file and no variable, build_scoring_config returns ScoringConfig() without
    building pydantic's validator (a command's start-up); the validator changes nothing in it."""
    import dataclasses

    from app.settings_scoring import build_scoring_config, scoring_adapter

    defaults = build_scoring_config(None, {})
    assert defaults == ScoringConfig()
    assert scoring_adapter().validate_python(dataclasses.asdict(ScoringConfig())) == defaults


def test_environment_sets_one_key_and_keeps_the_rest(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CRMSYNC_SCORING__WEIGHTS__USAGE", "25")
    monkeypatch.setenv("CRMSYNC_SCORING__SERVICE__CADENCE_DAYS__KEY", "14")
    monkeypatch.setenv("CRMSYNC_SCORING__CAPS__CHAMPION_LEFT_TIERS", '["key"]')
    cfg = Settings().scoring.config
    assert cfg.weights.usage == 25
    assert cfg.weights.engagement == 15
    assert cfg.service.cadence_days == PerTier(14, 90, 180, 365)
    assert cfg.caps.champion_left_tiers == ("key",)


def test_toml_file_under_the_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    path = tmp_path / "scoring.toml"
    path.write_text(
        "min_coverage = 60\n[bands]\ngreen = 75\n[tiering]\nkey_max = 12\n", encoding="utf-8"
    )
    monkeypatch.setenv("CRMSYNC_SCORING__FILE", str(path))
    monkeypatch.setenv("CRMSYNC_SCORING__BANDS__GREEN", "80")
    cfg = Settings().scoring.config
    assert (cfg.min_coverage, cfg.bands.green, cfg.tiering.key_max) == (60, 80, 12)


def test_the_documented_example_file_loads(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """docs/domain-rules.md's TOML example (a ``text`` block there: the docs test reads every
    ``toml`` block as a mapping file) goes through the real loader."""
    doc = (Path(__file__).resolve().parents[2] / "docs" / "domain-rules.md").read_text("utf-8")
    match = re.search(r"^```text\n(.*?)^```", doc, re.MULTILINE | re.DOTALL)
    assert match is not None
    path = tmp_path / "scoring.toml"
    path.write_text(match.group(1), encoding="utf-8")
    monkeypatch.setenv("CRMSYNC_SCORING__FILE", str(path))
    cfg = Settings().scoring.config
    assert (cfg.min_coverage, cfg.weights.usage, cfg.weights.payment) == (60, 25, 15)
    assert cfg.service.cadence_days == PerTier(14, 90, 180, 365)
    assert cfg.caps.champion_left_tiers == ("key",)


@pytest.mark.parametrize(
    ("env", "message"),
    [
        pytest.param({"CRMSYNC_SCORING__BANDZ__GREEN": "1"}, "CRMSYNC_SCORING__BANDZ", id="typo"),
        pytest.param({"CRMSYNC_SCORING__BANDS__GREEN": "30"}, "yellow < green", id="4.5-order"),
        pytest.param(
            {"CRMSYNC_SCORING__WEIGHTS__USAGE": "many"},
            "CRMSYNC_SCORING__WEIGHTS__USAGE",
            id="not-a-number",
        ),
        pytest.param({"CRMSYNC_SCORING__FILE": "/nonexistent.toml"}, "cannot read", id="no-file"),
    ],
)
def test_refused_with_the_setting_named(
    monkeypatch: pytest.MonkeyPatch, env: dict[str, str], message: str
) -> None:
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    with pytest.raises(ValidationError, match=message):
        Settings()

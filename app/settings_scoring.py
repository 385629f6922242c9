"""Builds the domain's :class:`~app.domain.config.ScoringConfig` from settings (domain.md 10).

Layers, later wins: the defaults of ``app/domain/config.py``, an optional TOML file
(``CRMSYNC_SCORING__FILE``), then ``CRMSYNC_SCORING__<GROUP>__<KEY>`` variables. The layers are
merged key by key, so ``CRMSYNC_SCORING__SERVICE__CADENCE_DAYS__KEY=14`` changes one tier's
cadence and keeps the others. List values from the environment are JSON
(``CRMSYNC_SCORING__CAPS__CHAMPION_LEFT_TIERS='["key"]'``). Unknown keys are refused: a typo must
not silently leave a default in force.

With neither a file nor a variable the defaults are the configuration as they are: pydantic's
validator of the whole ScoringConfig (a schema of some thirty nested dataclasses, a few
hundredths of a second to build) is built only when there is a layer to validate, so that a
command's start-up (``crmsync health recompute``, issue #18 item 10) does not pay for it.
tests/unit/test_settings_scoring.py checks that the defaults pass that validator unchanged.
"""

from __future__ import annotations

import dataclasses
import json
import tomllib
from collections.abc import Mapping
from functools import cache
from pathlib import Path
from typing import Any

from pydantic import TypeAdapter, ValidationError

from app.domain.config import ScoringConfig


@cache
def scoring_adapter() -> TypeAdapter[ScoringConfig]:
    """pydantic's validator of a whole ScoringConfig, built once, when first needed."""
    return TypeAdapter(ScoringConfig)


def _env_name(path: tuple[str, ...]) -> str:
    return "CRMSYNC_SCORING__" + "__".join(p.upper() for p in path)


def _merge(base: dict[str, Any], layer: Mapping[str, Any], path: tuple[str, ...]) -> None:
    for raw_key, value in layer.items():
        key = str(raw_key).lower()
        here = (*path, key)
        if key not in base:
            known = ", ".join(sorted(base))
            raise ValueError(f"unknown scoring setting {_env_name(here)} (known here: {known})")
        current = base[key]
        if isinstance(current, dict):
            if not isinstance(value, Mapping):
                example = _env_name((*here, next(iter(current))))
                raise ValueError(f"{_env_name(here)} is a group: set its keys, e.g. {example}")
            _merge(current, value, here)
            continue
        if isinstance(value, str) and isinstance(current, list | tuple):
            try:
                value = json.loads(value)
            except json.JSONDecodeError:
                raise ValueError(
                    f"{_env_name(here)} must be a JSON list, e.g. {json.dumps(list(current))}"
                ) from None
        base[key] = value


def build_scoring_config(file: Path | None, env: Mapping[str, Any]) -> ScoringConfig:
    """Defaults, then ``file`` (TOML), then ``env``; validated into a ScoringConfig."""
    if file is None and not env:
        return ScoringConfig()
    merged: dict[str, Any] = dataclasses.asdict(ScoringConfig())
    if file is not None:
        try:
            layer = tomllib.loads(Path(file).expanduser().read_text(encoding="utf-8"))
        except OSError as exc:
            raise ValueError(f"CRMSYNC_SCORING__FILE: cannot read {file}: {exc.strerror}") from None
        except tomllib.TOMLDecodeError as exc:
            raise ValueError(f"CRMSYNC_SCORING__FILE: {file} is not valid TOML: {exc}") from None
        _merge(merged, layer, ())
    _merge(merged, env, ())
    try:
        return scoring_adapter().validate_python(merged)
    except ValidationError as exc:
        problems = "; ".join(
            f"{_env_name(tuple(str(p) for p in e['loc'] if not isinstance(p, int)))}: {e['msg']}"
            for e in exc.errors()
        )
        raise ValueError(problems) from None

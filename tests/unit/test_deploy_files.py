"""docker/compose.yaml and docker/Dockerfile, checked without a Docker engine (#19 item 7).

* compose.yaml validates against the Compose Specification's JSON Schema (tests/data, source and
  version in tests/data/compose-spec.SOURCE.md);
* every ``crmsync`` command they name (service commands, health checks, the image's CMD) exists
  in the CLI with those options: ``<command> ... --help`` parses them and exits 0;
* the stack is what docs/deploy.md promises: PostgreSQL, Redis, migrations once before the API
  and two workers, a non-root image with a health check.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml
from typer.testing import CliRunner

from app.cli.main import cli

REPO = Path(__file__).resolve().parents[2]
COMPOSE = REPO / "docker" / "compose.yaml"
DOCKERFILE = REPO / "docker" / "Dockerfile"
SCHEMA = REPO / "tests" / "data" / "compose-spec.json"


def compose() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load(COMPOSE.read_text())
    return loaded


def dockerfile_cmd() -> list[str]:
    for line in DOCKERFILE.read_text().splitlines():
        if line.startswith("CMD "):
            cmd: list[str] = json.loads(line.removeprefix("CMD "))
            return cmd
    raise AssertionError("no CMD in the Dockerfile")


def crmsync_commands() -> list[list[str]]:
    found: list[list[str]] = [dockerfile_cmd()]
    for service in compose()["services"].values():
        command = service.get("command")
        if isinstance(command, list):
            found.append([str(c) for c in command])
        test = (service.get("healthcheck") or {}).get("test")
        if isinstance(test, list) and test[:1] == ["CMD"]:
            found.append([str(c) for c in test[1:]])
    return [c for c in found if c[:1] == ["crmsync"]]


def test_compose_file_is_valid_against_the_compose_specification() -> None:
    schema = json.loads(SCHEMA.read_text())
    validator = jsonschema.Draft7Validator(schema)
    errors = sorted(validator.iter_errors(compose()), key=lambda e: list(e.path))
    assert not errors, "\n".join(f"{list(e.path)}: {e.message}" for e in errors)


def test_the_schema_catches_a_broken_compose_file() -> None:
    broken = compose()
    broken["services"]["api"]["depends_on"] = {"migrate": {"condition": "whenever"}}
    broken["services"]["worker"]["comand"] = ["crmsync", "worker"]  # a typo
    errors = list(jsonschema.Draft7Validator(json.loads(SCHEMA.read_text())).iter_errors(broken))
    assert len(errors) >= 2


def test_every_crmsync_command_named_exists() -> None:
    commands = crmsync_commands()
    names = {" ".join(c[1:3]) for c in commands}
    assert {"serve --host", "worker --workers", "db upgrade", "db current"} <= names
    runner = CliRunner()
    for command in commands:
        result = runner.invoke(cli, [*command[1:], "--help"])
        assert result.exit_code == 0, f"{command}: {result.output}"


def test_the_stack_runs_migrations_once_before_the_api_and_two_workers() -> None:
    services = compose()["services"]
    assert {"db", "redis", "migrate", "api", "worker"} <= set(services)
    assert services["migrate"]["command"] == ["crmsync", "db", "upgrade"]
    assert services["migrate"]["restart"] == "no"
    for name in ("api", "worker"):
        needs = services[name]["depends_on"]
        assert needs["migrate"] == {"condition": "service_completed_successfully"}
        env = services[name]["environment"]
        assert env["CRMSYNC_DATABASE_URL"].startswith("postgresql://")
        assert env["CRMSYNC_REDIS_URL"].startswith("redis://")
    assert services["worker"]["deploy"]["replicas"] == 2


@pytest.mark.parametrize(
    "line",
    ["FROM python:3.11-slim AS build", "FROM python:3.11-slim", "USER crmsync", "HEALTHCHECK "],
)
def test_the_image_is_multi_stage_slim_non_root_with_a_health_check(line: str) -> None:
    lines = DOCKERFILE.read_text().splitlines()
    assert any(existing.startswith(line) for existing in lines)

"""The examples in the docs run: every ``toml`` block loads, every ``crmsync`` command parses.

The TOML example of docs/mapping.md was once rejected by the loader it documents; these tests
keep README.md and docs/*.md honest. TOML blocks go through the real loader (all CRMs, as a
command start does). ``crmsync`` lines of ``bash`` blocks are checked against the real command
tree: the sub-command exists, ``--help`` works, and every ``--option`` the line uses is one the
command accepts. Running the commands themselves is the job of the other acceptance tests.
"""

from __future__ import annotations

import re
import shlex
from pathlib import Path
from typing import Any

import pytest
import typer
from typer.testing import CliRunner

from app.cli.main import cli
from app.mappers.config import load_mapping_sets

ROOT = Path(__file__).resolve().parents[2]
DOCS = sorted([ROOT / "README.md", *(ROOT / "docs").rglob("*.md")])
FENCE = re.compile(r"^```(\w*)[^\n]*\n(.*?)^```", re.MULTILINE | re.DOTALL)
COMMAND = re.compile(r"^(?:\.venv/bin/)?crmsync\s+(.*)$")


def blocks(language: str) -> list[tuple[str, str]]:
    """``(where, body)`` of every fenced block of ``language`` in the docs."""
    found = []
    for doc in DOCS:
        text = doc.read_text(encoding="utf-8")
        for match in FENCE.finditer(text):
            if match.group(1) == language:
                line = text.count("\n", 0, match.start()) + 1
                found.append((f"{doc.relative_to(ROOT)}:{line}", match.group(2)))
    return found


def crmsync_lines() -> list[tuple[str, list[str]]]:
    """``(where, argv)`` of each ``crmsync ...`` line of the bash blocks (comments, ``&`` and
    ``&&`` chains handled)."""
    found = []
    for where, body in blocks("bash"):
        for raw in body.splitlines():
            for part in re.split(r"&&|;", raw.split(" #")[0]):
                match = COMMAND.match(part.strip().rstrip("&").strip())
                if match:
                    found.append((where, shlex.split(match.group(1))))
    return found


TOML_BLOCKS = blocks("toml")
COMMAND_LINES = crmsync_lines()


def test_the_docs_have_examples_to_check() -> None:
    assert any("mapping.md" in where for where, _ in TOML_BLOCKS)
    assert len(COMMAND_LINES) >= 4


@pytest.mark.parametrize(("where", "body"), TOML_BLOCKS, ids=[w for w, _ in TOML_BLOCKS])
def test_toml_examples_load_through_the_real_loader(where: str, body: str, tmp_path: Path) -> None:
    path = tmp_path / "mapping.toml"
    path.write_text(body, encoding="utf-8")
    sets = load_mapping_sets(path)  # raises MappingFileError naming the key if the doc is wrong
    assert set(sets) == {"salesforce", "hubspot"}, where


def resolve(argv: list[str]) -> tuple[list[str], Any]:
    """The sub-command path of ``argv`` and its (click) command; typer vendors its own click,
    so groups are told apart by their ``commands`` attribute."""
    command: Any = typer.main.get_command(cli)
    path: list[str] = []
    for token in argv:
        sub = getattr(command, "commands", {}).get(token)
        if sub is None or token.startswith("-"):
            break
        command, path = sub, [*path, token]
    return path, command


@pytest.mark.parametrize(
    ("where", "argv"), COMMAND_LINES, ids=[f"{w}:{' '.join(a)}" for w, a in COMMAND_LINES]
)
def test_documented_commands_and_options_exist(where: str, argv: list[str]) -> None:
    path, command = resolve(argv)
    assert path, f"{where}: `crmsync {' '.join(argv)}` names no sub-command"
    assert not hasattr(command, "commands"), f"{where}: `crmsync {' '.join(path)}` is a group"
    accepted = {opt for param in command.params for opt in (*param.opts, *param.secondary_opts)}
    used = {token.split("=")[0] for token in argv if token.startswith("--")}
    assert used <= accepted, f"{where}: unknown option(s) {sorted(used - accepted)}"
    helped = CliRunner().invoke(cli, [*path, "--help"])
    assert helped.exit_code == 0, helped.output

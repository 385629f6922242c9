"""The sandbox ships as its own distribution, crmsync-sandbox, behind the ``sandbox`` extra.

These checks read the two ``pyproject.toml`` files and the sources, so that a later change cannot
quietly undo the split: a new sandbox subpackage missing from the sandbox wheel, a dependency
only the sandbox imports landing in the product's runtime dependencies (or missing from the
sandbox's), the extra's pin drifting from the sandbox's version, or the product wheel picking
the sandbox up again. docs/adr/0003-sandbox-package.md says why the split exists.
"""

from __future__ import annotations

import ast
import functools
import importlib.metadata
import re
import sys
import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from packaging.requirements import Requirement
from setuptools import find_packages

from app.cli.main import SANDBOX_MODULES

ROOT = Path(__file__).resolve().parents[2]
SANDBOX_DIR = ROOT / "crmsync_sandbox"


def load(path: Path) -> dict[str, Any]:
    return tomllib.loads(path.read_text())


PRODUCT = load(ROOT / "pyproject.toml")
SANDBOX = load(SANDBOX_DIR / "pyproject.toml")


def canonical(requirement: str) -> str:
    """The distribution name of a requirement string, normalised as PEP 503 does."""
    match = re.match(r"\s*([A-Za-z0-9][A-Za-z0-9._-]*)", requirement)
    assert match, requirement
    return re.sub(r"[-_.]+", "-", match.group(1)).lower()


def package_tree(directory: Path, name: str) -> Iterator[str]:
    """``name`` and its subpackages: directories with an ``__init__.py`` under a package (so
    ``build/`` and ``*.egg-info`` left by a wheel build are not packages)."""
    yield name
    for child in sorted(directory.iterdir()):
        if child.is_dir() and (child / "__init__.py").is_file():
            yield from package_tree(child, f"{name}.{child.name}")


def imported_top_levels(package_dir: Path) -> set[str]:
    """Top-level names of the third-party modules a package imports, at any depth (function-level
    imports included: a lazy import is still a dependency)."""
    names: set[str] = set()
    for path in package_dir.rglob("*.py"):
        if "build" in path.relative_to(package_dir).parts:
            continue
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                names.update(alias.name.split(".")[0] for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names.add(node.module.split(".")[0])
    own = {"app", "crmsync_sandbox", "__future__"}
    return {n for n in names if n not in sys.stdlib_module_names and n not in own}


@functools.cache
def installed_modules() -> dict[str, list[str]]:
    return importlib.metadata.packages_distributions()


def distributions_of(module: str) -> set[str]:
    dists = installed_modules().get(module, [])
    assert dists, f"{module} is imported but no installed distribution provides it"
    return {canonical(d) for d in dists}


def installed_closure(names: set[str]) -> set[str]:
    """``names`` and everything they require when installed without extras (installed
    metadata): what a product-only install brings along."""
    seen: set[str] = set()
    todo = list(names)
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        try:
            requires = importlib.metadata.requires(name) or []
        except importlib.metadata.PackageNotFoundError:
            continue
        for line in requires:
            req = Requirement(line)
            if req.marker is None or req.marker.evaluate({"extra": ""}):
                todo.append(canonical(req.name))
    return seen


SANDBOX_DEPS = {canonical(r) for r in SANDBOX["project"]["dependencies"]}
PRODUCT_DEPS = {canonical(r) for r in PRODUCT["project"]["dependencies"]}
PRODUCT_INSTALL = installed_closure(PRODUCT_DEPS)
SANDBOX_IMPORTS = imported_top_levels(SANDBOX_DIR)
PRODUCT_IMPORTS = imported_top_levels(ROOT / "app")


def test_every_sandbox_subpackage_is_listed_in_its_pyproject() -> None:
    listed = SANDBOX["tool"]["setuptools"]["packages"]
    on_disk = list(package_tree(SANDBOX_DIR, "crmsync_sandbox"))
    missing = sorted(set(on_disk) - set(listed))
    assert not missing, (
        f"add {missing} to [tool.setuptools] packages in crmsync_sandbox/pyproject.toml, "
        "or the crmsync-sandbox wheel ships without them"
    )
    assert sorted(listed) == sorted(on_disk), "listed packages that do not exist"


def test_the_package_directory_is_the_sandbox_project_root() -> None:
    assert SANDBOX["project"]["name"] == "crmsync-sandbox"
    assert SANDBOX["tool"]["setuptools"]["package-dir"] == {"crmsync_sandbox": "."}
    assert (SANDBOX_DIR / "py.typed").is_file()
    assert "py.typed" in SANDBOX["tool"]["setuptools"]["package-data"]["crmsync_sandbox"]


def test_the_sandbox_extra_pins_the_sandbox_version() -> None:
    extras = PRODUCT["project"]["optional-dependencies"]
    assert extras["sandbox"] == [f"crmsync-sandbox=={SANDBOX['project']['version']}"]
    # `make dev` gets the sandbox through the dev extra, so tests and the demo have it.
    assert "crmsync[sandbox]" in extras["dev"]


def test_the_product_wheel_finds_no_sandbox_package() -> None:
    find = PRODUCT["tool"]["setuptools"]["packages"]["find"]
    packages = find_packages(where=ROOT, include=find["include"])
    assert "app" in packages
    assert "app.cli" in packages
    assert [p for p in packages if not (p == "app" or p.startswith("app."))] == []


@pytest.mark.parametrize("module", sorted(SANDBOX_IMPORTS))
def test_what_the_sandbox_imports_is_a_dependency_of_the_sandbox(module: str) -> None:
    provided_by = distributions_of(module)
    assert provided_by & SANDBOX_DEPS, (
        f"crmsync_sandbox imports {module} ({', '.join(sorted(provided_by))}): add it to "
        "[project] dependencies in crmsync_sandbox/pyproject.toml"
    )


# Modules the product needs without importing them itself, and who needs them.
PRODUCT_NEEDS_UNIMPORTED = {
    "cryptography": "PyJWT signs the Salesforce JWT bearer assertion (RS256) with it",
}


@pytest.mark.parametrize(
    "module", sorted(SANDBOX_IMPORTS - PRODUCT_IMPORTS - PRODUCT_NEEDS_UNIMPORTED.keys())
)
def test_what_only_the_sandbox_imports_stays_out_of_the_product(module: str) -> None:
    provided_by = distributions_of(module)
    assert not provided_by & PRODUCT_DEPS, (
        f"only crmsync_sandbox imports {module}: remove {sorted(provided_by & PRODUCT_DEPS)} "
        "from the product's dependencies in pyproject.toml (crmsync_sandbox/pyproject.toml "
        "holds it)"
    )


@pytest.mark.parametrize(
    "module",
    sorted(m for m in SANDBOX_IMPORTS if not distributions_of(m) & PRODUCT_INSTALL),
)
def test_crmsync_checks_for_what_a_product_install_lacks(module: str) -> None:
    """Without it the sandbox cannot start, so ``crmsync --help`` must hide the sandbox
    commands (and say how to get them) rather than offer them and fail with a traceback."""
    assert module in SANDBOX_MODULES, f"add {module!r} to SANDBOX_MODULES in app/cli/main.py"


def test_sandbox_modules_names_the_package_and_only_what_it_alone_needs() -> None:
    assert SANDBOX_MODULES[0] == "crmsync_sandbox"
    for module in SANDBOX_MODULES[1:]:
        assert module in SANDBOX_IMPORTS
        assert not distributions_of(module) & PRODUCT_INSTALL, module


def test_faker_is_gone() -> None:
    """Seeds come from the sandbox's own word lists (crmsync_sandbox/seed.py)."""
    assert "faker" not in PRODUCT_DEPS | SANDBOX_DEPS
    assert "faker" not in SANDBOX_IMPORTS | PRODUCT_IMPORTS

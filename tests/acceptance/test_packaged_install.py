"""crmsync installed from a wheel, outside the checkout, migrates a database and reports ready.

A checkout finds ``app/migrations`` beside the code either way; an installed package finds only
what the wheel carries. So this test builds the wheel from exactly the files the Docker build
stage copies (``COPY`` lines of docker/Dockerfile), installs it into a fresh venv, and runs the
installed ``crmsync db upgrade`` and ``crmsync serve`` from a directory outside the checkout.

The product wheel carries no sandbox: ``crmsync --help`` there offers neither ``sandbox`` nor
``demo``, and both say how to get them. A second venv gets the crmsync-sandbox wheel too (what
``pip install 'crmsync[sandbox]'`` adds), and has both commands.

It stays offline and quick: the wheel is built with the dev venv's setuptools
(``--no-build-isolation``), and the fresh venv sees the dev venv's site-packages through a
``.pth`` line for the dependencies instead of downloading them. That line is a plain path, so the
dev venv's own ``.pth`` files (its *editable* crmsync) are not processed; the test checks that
``app`` is imported from the fresh venv all the same.
"""

from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import sys
import sysconfig
import time
import zipfile
from dataclasses import dataclass
from fnmatch import fnmatch
from pathlib import Path

import httpx
import pytest

from app.cli.main import sandbox_missing_message
from app.db.migrate import head_revision

REPO = Path(__file__).resolve().parents[2]
DOCKERFILE = REPO / "docker" / "Dockerfile"


@dataclass(frozen=True)
class Install:
    venv: Path
    cwd: Path  # an empty directory outside the checkout: no .env, no app/

    @property
    def python(self) -> Path:
        return self.venv / "bin" / "python"

    @property
    def crmsync(self) -> Path:
        return self.venv / "bin" / "crmsync"


def dockerfile_sources() -> list[str]:
    """Paths the Dockerfile's build stage copies into the image (``COPY --from`` excluded)."""
    sources: list[str] = []
    for line in DOCKERFILE.read_text().splitlines():
        words = line.split()
        if words[:1] == ["COPY"] and not any(w.startswith("--") for w in words):
            sources.extend(words[1:-1])
    return sources


def run(
    *cmd: str | Path, cwd: Path | None = None, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(c) for c in cmd],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        check=False,
        timeout=180,
    )


def clean_env(**extra: str) -> dict[str, str]:
    """The test's environment without PYTHONPATH or crmsync settings that could leak in."""
    env = {
        k: v for k, v in os.environ.items() if k != "PYTHONPATH" and not k.startswith("CRMSYNC_")
    }
    env.update(extra)
    return env


@dataclass(frozen=True)
class Wheels:
    product: Path
    sandbox: Path


def copy_tree(source: Path, target: Path) -> None:
    """``source`` without what a local build or run leaves in it."""
    shutil.copytree(
        source,
        target,
        ignore=shutil.ignore_patterns("__pycache__", "build", "*.egg-info"),
    )


def build_wheel(src: Path, dist: Path, pattern: str) -> Path:
    pip = (sys.executable, "-m", "pip", "--disable-pip-version-check")
    built = run(*pip, "wheel", "-q", "--no-deps", "--no-build-isolation", "-w", dist, src)
    assert built.returncode == 0, built.stderr
    (wheel,) = dist.glob(pattern)
    return wheel


@pytest.fixture(scope="module")
def wheels(tmp_path_factory: pytest.TempPathFactory) -> Wheels:
    """The product wheel from the Dockerfile's sources; the sandbox's from crmsync_sandbox/
    (its own project root), each built from a copy so the checkout stays clean."""
    root = tmp_path_factory.mktemp("wheels")
    src, dist = root / "src", root / "dist"
    sources = dockerfile_sources()
    assert "app" in sources, sources
    for name in sources:
        path = REPO / name
        if path.is_dir():
            copy_tree(path, src / name)
        else:
            src.mkdir(exist_ok=True)
            shutil.copy2(path, src / name)
    product = build_wheel(src, dist, "crmsync-*.whl")
    copy_tree(REPO / "crmsync_sandbox", root / "sandbox-src" / "crmsync_sandbox")
    sandbox = build_wheel(root / "sandbox-src" / "crmsync_sandbox", dist, "crmsync_sandbox-*.whl")
    return Wheels(product=product, sandbox=sandbox)


def install(root: Path, *wheels: Path) -> Install:
    """A fresh venv holding ``wheels``; their dependencies come from the dev venv (see above)."""
    venv, cwd = root / "venv", root / "cwd"
    cwd.mkdir()
    made = run(sys.executable, "-m", "venv", "--without-pip", venv)
    assert made.returncode == 0, made.stderr
    site = run(
        venv / "bin" / "python", "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"
    )
    assert site.returncode == 0, site.stderr
    Path(site.stdout.strip(), "crmsync_test_deps.pth").write_text(
        sysconfig.get_paths()["purelib"] + "\n"
    )
    pip = (sys.executable, "-m", "pip", "--disable-pip-version-check")
    done = run(
        *pip,
        "--python",
        venv / "bin" / "python",
        "install",
        "-q",
        "--no-deps",
        "--no-index",
        *wheels,
    )
    assert done.returncode == 0, done.stderr
    return Install(venv=venv, cwd=cwd)


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory, wheels: Wheels) -> Install:
    """``pip install crmsync``: the product alone, as in the Docker image."""
    return install(tmp_path_factory.mktemp("packaged"), wheels.product)


@pytest.fixture(scope="module")
def installed_with_sandbox(tmp_path_factory: pytest.TempPathFactory, wheels: Wheels) -> Install:
    """``pip install 'crmsync[sandbox]'``: the product and the crmsync-sandbox wheel."""
    return install(tmp_path_factory.mktemp("packaged-sandbox"), wheels.product, wheels.sandbox)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def get_readyz(install: Install, database_url: str) -> httpx.Response:
    """Start the installed ``crmsync serve``, GET /readyz once it answers, stop it."""
    port = free_port()
    log = install.cwd / f"serve-{port}.log"
    with log.open("w") as out:
        server = subprocess.Popen(
            [str(install.crmsync), "serve", "--port", str(port)],
            cwd=install.cwd,
            env=clean_env(CRMSYNC_DATABASE_URL=database_url),
            stdout=out,
            stderr=subprocess.STDOUT,
        )
        try:
            for _ in range(600):  # up to about a minute to import and bind on a busy machine
                if server.poll() is not None:
                    break
                try:
                    return httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=5)
                except httpx.TransportError:
                    time.sleep(0.1)
        finally:
            server.terminate()
            server.wait(timeout=30)
    pytest.fail(f"crmsync serve never answered:\n{log.read_text()}")


@pytest.mark.slow
def test_wheel_installed_outside_the_checkout_migrates_and_is_ready(
    installed: Install, empty_database_url: str
) -> None:
    where = run(
        installed.python,
        "-c",
        "import app; print(app.__file__)",
        cwd=installed.cwd,
        env=clean_env(),
    )
    assert where.returncode == 0, where.stderr
    assert Path(where.stdout.strip()).is_relative_to(installed.venv), where.stdout
    assert not Path(where.stdout.strip()).is_relative_to(REPO)

    env = clean_env(CRMSYNC_DATABASE_URL=empty_database_url)
    upgraded = run(installed.crmsync, "db", "upgrade", cwd=installed.cwd, env=env)
    assert upgraded.returncode == 0, upgraded.stdout + upgraded.stderr
    head = head_revision(empty_database_url)
    assert head is not None
    assert head in upgraded.stdout + upgraded.stderr

    current = run(installed.crmsync, "db", "current", cwd=installed.cwd, env=env)
    assert current.returncode == 0, current.stdout + current.stderr

    response = get_readyz(installed, empty_database_url)
    assert response.status_code == 200, response.text
    broker = {"kind": "sqlite", "ok": True, "file": "var/jobs.db"}  # the embedded job queue
    assert response.json() == {"status": "ready", "revision": head, "broker": broker}


def test_dockerignore_keeps_local_state_and_secrets_out_of_the_build_context() -> None:
    patterns = {
        line.strip().rstrip("/")
        for line in (REPO / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    }
    assert {".venv", "var", ".env", ".git"} <= patterns
    # The sandbox (emulator, test CA, its tokens) never reaches the production image.
    assert "crmsync_sandbox" in patterns
    assert not any(s.startswith("crmsync_sandbox") for s in dockerfile_sources())
    # ... and none of them hides a file that the image is built from.
    for source in dockerfile_sources():
        assert not any(fnmatch(source, pattern) for pattern in patterns), source


def wheel_files(wheel: Path) -> list[str]:
    with zipfile.ZipFile(wheel) as zf:
        return zf.namelist()


def wheel_metadata(wheel: Path) -> str:
    with zipfile.ZipFile(wheel) as zf:
        (name,) = [n for n in zf.namelist() if n.endswith(".dist-info/METADATA")]
        return zf.read(name).decode()


def commands_in_help(install: Install) -> set[str]:
    """The command names ``crmsync --help`` lists (rich draws them in a box: ``│ name  help``)."""
    shown = run(install.crmsync, "--help", cwd=install.cwd, env=clean_env(COLUMNS="120"))
    assert shown.returncode == 0, shown.stderr
    return {m.group(1) for m in re.finditer(r"^│ ([a-z][a-z-]*)\s", shown.stdout, re.MULTILINE)}


def test_the_product_wheel_carries_no_sandbox(wheels: Wheels) -> None:
    files = wheel_files(wheels.product)
    assert "app/cli/main.py" in files
    assert [f for f in files if f.startswith("crmsync_sandbox")] == []
    metadata = wheel_metadata(wheels.product)
    requires = [line for line in metadata.splitlines() if line.startswith("Requires-Dist:")]
    runtime = [line for line in requires if "extra ==" not in line]
    for sandbox_only in ("lark", "trustme", "faker"):
        assert not any(sandbox_only in line.lower() for line in runtime), runtime
    version = wheel_metadata(wheels.sandbox).split("\nVersion: ")[1].splitlines()[0]
    assert f'Requires-Dist: crmsync-sandbox=={version}; extra == "sandbox"' in requires


def test_the_sandbox_wheel_carries_the_whole_package_and_nothing_else(wheels: Wheels) -> None:
    files = wheel_files(wheels.sandbox)
    packages = {f.rsplit("/", 1)[0] for f in files if f.endswith("/__init__.py")}
    assert packages == {
        str(init.parent.relative_to(REPO))
        for init in (REPO / "crmsync_sandbox").rglob("__init__.py")
        if "build" not in init.relative_to(REPO).parts
    }
    assert "crmsync_sandbox/py.typed" in files
    own = [f for f in files if ".dist-info/" not in f]
    assert all(f.startswith("crmsync_sandbox/") for f in own), own
    assert not any(f.endswith("pyproject.toml") for f in own)


@pytest.mark.slow
def test_without_the_extra_the_sandbox_commands_are_hidden_and_explained(
    installed: Install,
) -> None:
    listed = commands_in_help(installed)
    assert {"db", "serve", "sync"} <= listed
    assert listed.isdisjoint({"sandbox", "demo"}), listed
    for command in ("sandbox", "demo"):
        refused = run(installed.crmsync, command, "--port", "0", cwd=installed.cwd, env=clean_env())
        assert refused.returncode == 2
        assert refused.stdout == ""
        assert refused.stderr.splitlines() == [sandbox_missing_message(command)]
        assert "pip install 'crmsync[sandbox]'" in refused.stderr


@pytest.mark.slow
def test_with_the_extra_the_sandbox_commands_are_there(installed_with_sandbox: Install) -> None:
    assert {"db", "demo", "sandbox", "serve", "sync"} <= commands_in_help(installed_with_sandbox)
    # Every module of the installed sandbox imports from the venv, none from the checkout.
    walked = run(
        installed_with_sandbox.python,
        "-c",
        "import importlib, pkgutil, crmsync_sandbox as p\n"
        "print(p.__file__)\n"
        "for m in pkgutil.walk_packages(p.__path__, 'crmsync_sandbox.'):\n"
        "    importlib.import_module(m.name)\n",
        cwd=installed_with_sandbox.cwd,
        env=clean_env(),
    )
    assert walked.returncode == 0, walked.stderr
    assert Path(walked.stdout.strip()).is_relative_to(installed_with_sandbox.venv)
    helped = run(
        installed_with_sandbox.crmsync,
        "sandbox",
        "--help",
        cwd=installed_with_sandbox.cwd,
        env=clean_env(COLUMNS="120"),
    )
    assert helped.returncode == 0, helped.stderr
    assert "--env-file" in helped.stdout

"""crmsync installed from a wheel, outside the checkout, migrates a database and reports ready.

A checkout finds ``app/migrations`` beside the code either way; an installed package finds only
what the wheel carries. So this test builds the wheel from exactly the files the Docker build
stage copies (``COPY`` lines of docker/Dockerfile), installs it into a fresh venv, and runs the
installed ``crmsync db upgrade`` and ``crmsync serve`` from a directory outside the checkout.

It stays offline and quick: the wheel is built with the dev venv's setuptools
(``--no-build-isolation``), and the fresh venv sees the dev venv's site-packages through a
``.pth`` line for the dependencies instead of downloading them. That line is a plain path, so the
dev venv's own ``.pth`` files (its *editable* crmsync) are not processed; the test checks that
``app`` is imported from the fresh venv all the same.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import sysconfig
import time
from dataclasses import dataclass
from fnmatch import fnmatch
from pathlib import Path

import httpx
import pytest

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


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Install:
    root = tmp_path_factory.mktemp("packaged")
    src, dist, venv, cwd = root / "src", root / "dist", root / "venv", root / "cwd"
    cwd.mkdir()
    sources = dockerfile_sources()
    assert "app" in sources, sources
    for name in sources:
        path = REPO / name
        if path.is_dir():
            shutil.copytree(path, src / name, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            src.mkdir(exist_ok=True)
            shutil.copy2(path, src / name)

    pip = (sys.executable, "-m", "pip", "--disable-pip-version-check")
    built = run(*pip, "wheel", "-q", "--no-deps", "--no-build-isolation", "-w", dist, src)
    assert built.returncode == 0, built.stderr
    (wheel,) = dist.glob("crmsync-*.whl")

    made = run(sys.executable, "-m", "venv", "--without-pip", venv)
    assert made.returncode == 0, made.stderr
    site = run(
        venv / "bin" / "python", "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"
    )
    assert site.returncode == 0, site.stderr
    Path(site.stdout.strip(), "crmsync_test_deps.pth").write_text(
        sysconfig.get_paths()["purelib"] + "\n"
    )
    done = run(
        *pip, "--python", venv / "bin" / "python", "install", "-q", "--no-deps", "--no-index", wheel
    )
    assert done.returncode == 0, done.stderr
    return Install(venv=venv, cwd=cwd)


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
    assert response.json() == {"status": "ready", "revision": head}


def test_dockerignore_keeps_local_state_and_secrets_out_of_the_build_context() -> None:
    patterns = {
        line.strip().rstrip("/")
        for line in (REPO / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    }
    assert {".venv", "var", ".env", ".git"} <= patterns
    # ... and none of them hides a file that the image is built from.
    for source in dockerfile_sources():
        assert not any(fnmatch(source, pattern) for pattern in patterns), source

"""How many processes a recompute uses and how it cuts the accounts (``app.wiring.recompute``),
and when workers may be forked (``app.wiring.recompute_pool.start_method``)."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

import app.wiring.recompute as recompute
from app.db.engine import make_engine, make_session_factory
from app.settings import Settings
from app.wiring.recompute_pool import start_method


def settings(workers: int, chunk_size: int = 5_000) -> Settings:
    return Settings(  # type: ignore[call-arg]
        _env_file=None, recompute={"workers": workers, "chunk_size": chunk_size}
    )


@pytest.fixture
def file_factory(tmp_path: Path):  # type: ignore[no-untyped-def]
    engine = make_engine(f"sqlite:///{tmp_path / 'w.db'}")
    yield make_session_factory(engine)
    engine.dispose()


@pytest.mark.parametrize(
    ("workers", "cores", "accounts", "expected"),
    [
        (1, 8, 100_000, 1),  # 1: in the command's own process
        (0, 2, 100_000, 2),  # 0: one per core
        (0, 16, 100_000, 4),  # ... at most MAX_AUTO_WORKERS
        (6, 2, 100_000, 6),  # an explicit count is taken as given
        (0, 2, 999, 1),  # fewer than two MIN_CHUNKs: not worth a worker
        (0, 2, 1_000, 2),
        (8, 2, 1_500, 3),  # no worker without a MIN_CHUNK of its own
        (0, 1, 100_000, 1),  # one core
    ],
)
def test_worker_count(
    monkeypatch: pytest.MonkeyPatch,
    file_factory,  # type: ignore[no-untyped-def]
    workers: int,
    cores: int,
    accounts: int,
    expected: int,
) -> None:
    monkeypatch.setattr(recompute, "cpu_count", lambda: cores)
    assert recompute.worker_count(settings(workers), file_factory, accounts) == expected


def test_no_workers_for_a_database_only_this_process_can_open() -> None:
    engine = make_engine("sqlite://")
    try:
        factory = make_session_factory(engine)
        assert recompute.worker_count(settings(4), factory, 100_000) == 1
    finally:
        engine.dispose()


@pytest.mark.parametrize(
    ("chunk_size", "accounts", "workers", "expected"),
    [
        (5_000, 100_000, 1, 5_000),  # one process: the setting
        (5_000, 100_000, 2, 5_000),  # 20 chunks: at least 4 each already
        (5_000, 20_000, 2, 2_500),  # 8 chunks: 4 each
        (5_000, 1_200, 2, 500),  # never below MIN_CHUNK
        (1_000, 100_000, 4, 1_000),  # never above the setting
    ],
)
def test_chunk_size(chunk_size: int, accounts: int, workers: int, expected: int) -> None:
    got = recompute._chunk_size(settings(0, chunk_size), accounts, workers)
    assert got == expected


def test_fork_only_from_a_main_thread_with_no_other_thread_but_the_allowed() -> None:
    # Under pytest other threads may run already: count only what this test starts.
    baseline = [t for t in threading.enumerate() if t is not threading.main_thread()]
    if baseline:
        assert start_method() == "spawn"
        return
    assert start_method() == "fork"
    stop = threading.Event()
    other = threading.Thread(target=stop.wait, daemon=True)
    other.start()
    try:
        assert start_method() == "spawn"
        assert start_method(allowed_threads=[other]) == "fork"
    finally:
        stop.set()
        other.join()
    seen: list[str] = []
    t = threading.Thread(target=lambda: seen.append(start_method()))
    t.start()
    t.join()
    assert seen == ["spawn"]  # not from a thread other than the main one

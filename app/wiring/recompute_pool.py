"""Worker processes that run a recompute's chunks side by side.

A full recompute is CPU work in Python (reading rows into facts, the rules, encoding the
outputs): one process uses one core whatever the machine has. :class:`ChunkPool` starts
``workers`` processes, each with its own database connection, hands each the next chunk as it
finishes one, and yields every committed chunk's :class:`~app.wiring.recompute_chunk.ChunkDone`
to the recompute (which keeps the run, its lease and its heartbeat). Only chunk ids go out and
counts come back: no rows cross a process boundary (pickling a chunk's facts costs half of
computing them).

Why processes are started the way they are (docs/recompute.md, "Worker processes"):

* **fork** when the caller is the main thread of an otherwise single-threaded process (the CLI;
  the run's own heartbeat thread is held idle for the moment of the fork): a worker is ready in
  milliseconds with everything imported. Otherwise (a job inside a threaded worker, the
  embedded worker of ``serve``) **spawn**, which costs each worker an interpreter start but
  inherits no other thread's locks.
* A worker dies with its parent (``PR_SET_PDEATHSIG`` on Linux, and between chunks it checks
  that its parent is alive): a recompute killed outright leaves no orphan writing on.
* A worker ignores SIGINT (a terminal's Ctrl-C reaches the whole process group: the parent
  decides) and dies at once on SIGTERM.
* When anything goes wrong (a chunk's error, a worker that died, an interrupt), the parent stops
  every worker at once: a chunk in flight is rolled back by its database, the committed ones
  stay, and the next run selects only the accounts not yet computed.
"""

from __future__ import annotations

import contextlib
import ctypes
import gc
import multiprocessing
import os
import pickle
import signal
import sys
import threading
import traceback
from collections import deque
from collections.abc import Iterator, Sequence
from multiprocessing.connection import Connection, wait
from types import TracebackType
from typing import Any

from app.errors import CrmsyncError
from app.logging import get_logger
from app.wiring.recompute_chunk import ChunkDone, ChunkJob, run_chunk

log = get_logger("crmsync.recompute")

_PR_SET_PDEATHSIG = 1
#: How often an idle worker checks that its parent is still there (seconds).
_PARENT_CHECK_S = 1.0


class WorkerFailedError(CrmsyncError):
    """A chunk worker died, or a chunk failed in one: the run fails, committed chunks stay."""


def cpu_count() -> int:
    """The cores this process may run on (a container's CPU set, not the host's)."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # not Linux
        return os.cpu_count() or 1


def start_method(allowed_threads: Sequence[threading.Thread] = ()) -> str:
    """``fork`` when it is safe here (see the module docstring), else ``spawn``."""
    if "fork" not in multiprocessing.get_all_start_methods() or sys.platform != "linux":
        return "spawn"
    if threading.current_thread() is not threading.main_thread():
        return "spawn"
    main = threading.main_thread()
    others = [t for t in threading.enumerate() if t is not main and t not in allowed_threads]
    return "spawn" if others else "fork"


class _Worker:
    def __init__(self, process: Any, conn: Connection) -> None:
        self.process = process
        self.conn = conn
        self.chunk: Sequence[int] | None = None


class ChunkPool:
    """``workers`` processes computing chunks against ``database_url``; use as a context
    manager, then :meth:`run` (once). Leaving the block stops every worker."""

    def __init__(
        self,
        database_url: str,
        workers: int,
        *,
        method: str = "spawn",
        log_level: str = "WARNING",
    ) -> None:
        self.database_url = database_url
        self.workers = workers
        self.method = method
        self.log_level = log_level
        self._workers: list[_Worker] = []
        self._write_turn: Any = None
        self._clean = False

    def __enter__(self) -> ChunkPool:
        if not self._workers:
            self.start()
        return self

    def start(self) -> None:
        """Start the workers (the caller may hold what must stay still while they fork)."""
        context: Any = multiprocessing.get_context(self.method)
        parent = os.getpid()
        # SQLite: one writer at a time, queued on this lock (see run_chunk's write_turn). Kept
        # on the pool: a spawned worker opens it by name after start() returns.
        write_turn = context.Lock() if self.database_url.startswith("sqlite") else None
        self._write_turn = write_turn
        # Forked, a worker inherits the parent's objects: frozen, its collector never walks them
        # (nor copies their pages by touching them). The parent keeps a freeze it already had
        # (the CLI's, app.cli.common.startup_done) and lifts only one made here.
        forking = self.method == "fork"
        thaw = forking and gc.get_freeze_count() == 0
        if forking:
            gc.freeze()
        try:
            for _ in range(self.workers):
                ours, theirs = context.Pipe()
                process = context.Process(
                    target=_worker_main,
                    args=(
                        theirs,
                        self.database_url,
                        parent,
                        self.log_level,
                        self.method,
                        write_turn,
                    ),
                    name="crmsync-recompute-worker",
                    daemon=True,
                )
                process.start()
                theirs.close()
                self._workers.append(_Worker(process, ours))
        except BaseException:
            self._stop_all()
            raise
        finally:
            if thaw:
                gc.unfreeze()
        log.info("recompute.workers_started", workers=self.workers, method=self.method)

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._clean and exc is None:
            for w in self._workers:
                _send(w.conn, None)
            for w in self._workers:
                w.process.join(timeout=10)
        self._stop_all()

    def _stop_all(self) -> None:
        """Stop every worker that is still running (a chunk in flight is rolled back)."""
        for w in self._workers:
            if w.process.is_alive():
                w.process.terminate()
        for w in self._workers:
            w.process.join(timeout=5)
            if w.process.is_alive():
                w.process.kill()
                w.process.join(timeout=5)
            w.conn.close()

    def run(self, job: ChunkJob, chunks: Sequence[Sequence[int]]) -> Iterator[ChunkDone]:
        """Run every chunk; yield each as it commits (in no set order). Raises
        :class:`WorkerFailedError` when a worker dies, and a chunk's own error as it was
        raised in the worker (the caller's block then stops the others)."""
        pending = deque(chunks)
        busy: list[_Worker] = []
        for w in self._workers:
            if not pending:
                break
            self._give(w, job, pending.popleft())
            busy.append(w)
        while busy:
            ready = wait([w.conn for w in busy] + [w.process.sentinel for w in busy])
            for w in list(busy):
                if w.conn in ready or w.conn.poll():
                    done = self._receive(w)
                    busy.remove(w)
                    if pending:
                        self._give(w, job, pending.popleft())
                        busy.append(w)
                    yield done
                elif w.process.sentinel in ready:
                    raise _died(w)
        self._clean = True

    @staticmethod
    def _give(w: _Worker, job: ChunkJob, chunk: Sequence[int]) -> None:
        w.chunk = chunk
        _send(w.conn, (job, list(chunk)))

    @staticmethod
    def _receive(w: _Worker) -> ChunkDone:
        try:
            kind, value, detail = w.conn.recv()
        except (EOFError, OSError) as exc:
            raise _died(w) from exc
        if kind == "error":
            log.warning("recompute.chunk_failed", accounts=_span(w.chunk), traceback=detail)
            raise value
        w.chunk = None
        assert isinstance(value, ChunkDone)
        return value


def _died(w: _Worker) -> WorkerFailedError:
    """The error for a worker that ended without answering (killed, crashed, out of memory)."""
    w.process.join(timeout=5)
    code = w.process.exitcode
    how = (
        f"was killed by {signal.Signals(-code).name}"
        if code is not None and code < 0
        else f"stopped with exit code {code}"
    )
    return WorkerFailedError(
        f"a recompute worker (pid {w.process.pid}) {how} during accounts {_span(w.chunk)}; "
        "that chunk was not written"
    )


def _span(chunk: Sequence[int] | None) -> str:
    return "?" if not chunk else f"{chunk[0]}-{chunk[-1]}"


def _send(conn: Connection, message: Any) -> None:
    with contextlib.suppress(OSError):  # the worker is gone: its sentinel tells
        conn.send(message)


# --------------------------------------------------------------------------------------------
# the worker's side
# --------------------------------------------------------------------------------------------


def _die_with_parent(parent: int) -> None:
    """Linux: the kernel kills this process when its parent dies (checked once after asking,
    in case the parent died before)."""
    if sys.platform == "linux":
        try:
            libc = ctypes.CDLL(None, use_errno=True)
            libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
        except (OSError, AttributeError):  # no prctl: the idle check below remains
            pass
    if os.getppid() != parent:
        os._exit(1)


def _worker_main(
    conn: Connection,
    database_url: str,
    parent: int,
    log_level: str,
    method: str,
    write_turn: Any,
) -> None:
    """A worker: one engine, chunks until told to stop (``None``) or the parent is gone."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    _die_with_parent(parent)
    from app.db.engine import make_engine, make_session_factory
    from app.logging import configure_logging

    if method != "fork":  # a forked worker has its parent's logging already
        configure_logging(log_level)
    engine = make_engine(database_url)
    factory = make_session_factory(engine)
    try:
        while True:
            while not conn.poll(_PARENT_CHECK_S):
                if os.getppid() != parent:
                    return
            message = conn.recv()
            if message is None:
                return
            job, chunk = message
            try:
                done = run_chunk(factory, job, chunk, write_turn)
            except Exception as exc:
                conn.send(("error", _picklable(exc), traceback.format_exc()))
                return
            conn.send(("done", done, None))
            gc.collect(0)
    except (EOFError, OSError):  # the parent closed its end: nothing more to do
        return
    finally:
        engine.dispose()


def _picklable(exc: Exception) -> Exception:
    """``exc`` if it survives the trip to the parent, else a plain error that names it."""
    try:
        pickle.loads(pickle.dumps(exc))
    except Exception:
        return RuntimeError(f"{type(exc).__name__}: {exc}")
    return exc

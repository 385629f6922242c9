"""Running huey's consumer for crmsync: ``crmsync worker`` and ``crmsync serve --with-worker``.

huey's own consumer loop stops on SIGTERM without waiting for the tasks in flight, and on SIGINT
waits for them however long a backfill takes. crmsync wants neither: on SIGINT or SIGTERM every
run of this process stops after its current page (:func:`app.sync.run_scope.request_stop`), is
closed ``cancelled`` with its cursor there and queued again for another worker, and then the
consumer stops. A second signal, or ``shutdown_timeout`` seconds, stop it at once (the runs
left ``running`` are closed as abandoned and resumed by the sweeper, as after a kill -9).
"""

from __future__ import annotations

import signal
import threading
from types import FrameType

from huey.consumer import Consumer

from app.jobs.tasks import JobQueue
from app.logging import get_logger
from app.sync.run_scope import clear_stop, request_stop

log = get_logger("crmsync.jobs.worker")


class Worker:
    """A huey consumer of ``queue`` with ``workers`` threads; :meth:`start` then :meth:`stop`."""

    def __init__(
        self, queue: JobQueue, workers: int = 1, *, shutdown_timeout: float = 60.0
    ) -> None:
        self.queue = queue
        self.workers = workers
        self.consumer: Consumer = queue.huey.create_consumer(
            workers=workers,
            worker_type="thread",
            periodic=True,
            check_worker_health=True,
            # Poll an empty SQLite queue at most every 2 s (Redis blocks on its list instead).
            max_delay=2.0,
            shutdown_timeout=shutdown_timeout,
        )
        self._stop = threading.Event()

    def start(self) -> None:
        """Start the scheduler and worker threads (no signal handlers: the caller's)."""
        clear_stop()
        consumer = self.consumer
        consumer.scheduler.start()
        for _, thread in consumer.worker_threads:
            thread.start()
        log.info(
            "jobs.worker.started",
            workers=self.workers,
            broker="redis" if self.queue.settings.redis_url else "sqlite",
            queue=self.queue.settings.jobs.name,
        )

    def stop(self) -> None:
        """Stop the runs at their next page, then the consumer (waiting up to the timeout)."""
        request_stop()
        try:
            self.consumer.stop(graceful=True)
            self.queue.huey.notify_interrupted_tasks()
        finally:
            # The flag is process-wide: once this worker's runs have stopped, passes started
            # later in this process (an in-process test, a CLI command) must not see it.
            clear_stop()
        log.info("jobs.worker.stopped")

    def run_forever(self) -> None:
        """:meth:`start`, serve until SIGINT/SIGTERM, then :meth:`stop`. Main thread only."""
        self.start()

        def on_signal(signum: int, _frame: FrameType | None) -> None:
            if self._stop.is_set():  # the second signal: stop now
                raise SystemExit(1)
            log.info("jobs.worker.stopping", signal=signal.Signals(signum).name)
            self._stop.set()

        previous = {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
        try:
            while not self._stop.wait(10.0):
                self.consumer.check_worker_health()
            self.stop()
        finally:
            for signum, handler in previous.items():
                signal.signal(signum, handler)

"""The huey instance: ``SqliteHuey`` under the data dir by default, ``RedisHuey`` with
``CRMSYNC_REDIS_URL``.

huey is the broker only. What is pending lives in crmsync's database (queued ``sync_runs`` rows,
the webhook inbox, ``sync_errors``); a message carries one id, so a message lost with a Redis
restart or a crashed worker is found again by the sweeper (:mod:`app.jobs.sweep`), and one
delivered twice finds its row already claimed.
"""

from __future__ import annotations

from typing import Any

from huey import RedisHuey, SqliteHuey
from huey.api import Huey

from app.settings import Settings


def build_huey(settings: Settings) -> Huey:
    """A new huey instance for ``settings`` (no tasks registered: see :class:`JobQueue`).

    ``results=False``: a job's outcome is its run row, not a huey result that nobody reads.
    """
    name = settings.jobs.name
    if settings.redis_url:
        return RedisHuey(name, url=settings.redis_url, results=False, utc=True)
    path = settings.jobs_sqlite_file
    path.parent.mkdir(parents=True, exist_ok=True)
    return SqliteHuey(name, filename=str(path), results=False, utc=True)


def broker_kind(settings: Settings) -> str:
    return "redis" if settings.redis_url else "sqlite"


def broker_status(huey: Huey, settings: Settings) -> dict[str, Any]:
    """For ``/readyz``: the broker answers, and how many messages wait in it."""
    try:
        depth = int(huey.pending_count())
    except Exception as exc:  # Redis down, SQLite file unreadable
        return {"kind": broker_kind(settings), "ok": False, "error": f"{type(exc).__name__}"}
    return {"kind": broker_kind(settings), "ok": True, "queued_messages": depth}


def broker_probe(settings: Settings) -> dict[str, Any]:
    """For ``/readyz``, without building a queue: Redis answers a PING (1 s timeout); the
    embedded queue's folder exists or can be created (huey creates its file on first use)."""
    if settings.redis_url:
        import redis

        try:
            client = redis.Redis.from_url(
                settings.redis_url, socket_timeout=1, socket_connect_timeout=1
            )
            try:
                client.ping()
            finally:
                client.close()
        except redis.RedisError as exc:
            return {"kind": "redis", "ok": False, "error": f"{type(exc).__name__}: {exc}"}
        return {"kind": "redis", "ok": True}
    path = settings.jobs_sqlite_file
    folder = path.parent
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    import os

    if not os.access(folder, os.W_OK):
        return {
            "kind": "sqlite",
            "ok": False,
            "error": f"{folder} is not writable",
            "file": str(path),
        }
    return {"kind": "sqlite", "ok": True, "file": str(path)}

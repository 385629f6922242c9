"""Upserts take their rows' locks in key order on PostgreSQL (``app.db.bulk``): two transactions
upserting the same rows, staged in opposite orders (two webhook batches with the same deals,
one delivered reversed), wait for each other instead of deadlocking.

Made deterministic with a third transaction that holds the second row: A (rows staged k2, k1)
and B (k1, k2) both start while it does, A first. In arrival order A would wait for k2 holding
nothing, B would lock k1 and wait for k2; once k2 is free A takes it and needs k1 from B: a
deadlock, one of them aborted. In key order A locks k1 and waits for k2; B waits for k1; both
finish."""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest
from sqlalchemy import Engine, select, text

from app.db import bulk
from app.db.models import Account


def waiting_for_a_lock(engine: Engine, count: int, timeout: float = 10.0) -> None:
    """Until ``count`` other backends wait for a row lock."""
    deadline = time.monotonic() + timeout
    with engine.connect() as conn:
        while True:
            waiting = conn.scalar(
                text(
                    "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' "
                    "AND datname = current_database()"
                )
            )
            if waiting == count:
                return
            assert time.monotonic() < deadline, f"{waiting} backends waiting, not {count}"
            time.sleep(0.02)


def test_opposite_orders_wait_instead_of_deadlocking(engine: Engine) -> None:
    if engine.dialect.name != "postgresql":
        pytest.skip("SQLite has one writer at a time: no row locks to order")
    with engine.begin() as conn:
        conn.execute(
            Account.__table__.insert(),
            [
                {"name": "one", "sf_id": "001000000000001AAA"},
                {"name": "two", "sf_id": "001000000000002AAA"},
            ],
        )
    k1, k2 = "001000000000001AAA", "001000000000002AAA"
    table = Account.__table__
    plan = bulk.build_plan(engine.dialect, table, "sf_id", ["sf_id", "name"])
    errors: list[BaseException] = []

    def upsert(keys: list[str], label: str) -> None:
        try:
            with engine.begin() as conn:
                conn.execute(text("SET LOCAL deadlock_timeout = '200ms'"))
                bulk.upsert_rows(conn, plan, [{"sf_id": k, "name": f"{label} {k}"} for k in keys])
        except BaseException as exc:  # reported below
            errors.append(exc)

    holder = engine.connect()
    try:
        holder.begin()
        holder.execute(select(table.c.id).where(table.c.sf_id == k2).with_for_update())
        first = threading.Thread(target=upsert, args=([k2, k1], "A"))
        first.start()
        waiting_for_a_lock(engine, 1)
        second = threading.Thread(target=upsert, args=([k1, k2], "B"))
        second.start()
        waiting_for_a_lock(engine, 2)
        holder.commit()
    finally:
        holder.close()
    for t in (first, second):
        t.join(30)
    assert errors == [], [repr(e) for e in errors]
    with engine.connect() as conn:
        names: dict[str, Any] = dict(conn.execute(select(table.c.sf_id, table.c.name)).all())
    assert names == {k1: f"B {k1}", k2: f"B {k2}"}  # B waited for A, then wrote both

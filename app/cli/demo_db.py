"""Which databases ``crmsync demo`` may write into: empty ones, and the ones it filled itself.

The demo fills a database with the sandbox's invented companies; run against a database that
holds real data it would overwrite it (the sandbox's ids repeat from run to run). So before it
writes, the demo asks :func:`why_not_a_demo_database`. A database is the demo's when:

* it has no tables at all (a new file or an empty PostgreSQL database), or
* it holds only crmsync's tables, and every sync run in it was started by the demo
  (``sync_runs.triggered_by = 'demo'``), and, when it has no run at all, its tables are empty
  (migrated, never used).

Anything else (tables of another application, a run of ``crmsync sync`` or of the API, rows
nobody synced) is data the demo did not write, and the demo refuses it. docs/sandbox.md tells
users the same rule.
"""

from __future__ import annotations

from sqlalchemy import Engine, func, inspect, or_, select

from app.db.base import Base

#: ``sync_runs.triggered_by`` of every run the demo starts; the mark of a demo database.
DEMO_TRIGGER = "demo"

# Tables a migration alone may fill (none today) and Alembic's own bookkeeping.
_BOOKKEEPING = frozenset({"alembic_version"})


def why_not_a_demo_database(engine: Engine) -> str | None:
    """Why the demo must not write into ``engine``'s database, or ``None`` when it may."""
    present = set(inspect(engine).get_table_names())
    if not present:
        return None
    foreign = sorted(present - set(Base.metadata.tables) - _BOOKKEEPING)
    if foreign:
        return f"it holds tables crmsync does not own ({', '.join(foreign[:3])})"
    runs = Base.metadata.tables["sync_runs"]
    with engine.connect() as conn:
        if "sync_runs" in present:
            others = conn.scalar(
                select(func.count())
                .select_from(runs)
                .where(or_(runs.c.triggered_by.is_(None), runs.c.triggered_by != DEMO_TRIGGER))
            )
            if others:
                return f"{others} sync run(s) in it were not started by the demo"
            if conn.scalar(select(func.count()).select_from(runs)):
                return None
        for name in sorted(present - _BOOKKEEPING):
            table = Base.metadata.tables[name]
            if conn.scalar(select(func.count()).select_from(select(table).limit(1).subquery())):
                return f"table {name} holds rows that no demo run wrote"
    return None

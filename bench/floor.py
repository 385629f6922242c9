"""The raw floor: the same Salesforce JSON pages, inserted into the same tables with plain
DB-API ``executemany``.

As in SQLAlchemy's ``examples/performance/bulk_inserts.py``, the floor writes to the same table
as the code it is compared with (crmsync's migrated ``accounts`` / ``opportunities``, with their
indexes), so the ratio measures crmsync's own work: type conversion, merge with existing rows,
upsert, parent links, error capture, cursor and run bookkeeping. The floor does none of it: one
``requests`` session pages through the REST query (``nextRecordsUrl``), ``json.loads`` each page
and inserts the values as the JSON gave them, plus constants for the NOT NULL columns.

Usage: ``python -m bench.floor DATABASE_URL INFO_JSON OBJECT [OBJECT ...]`` on a database
already at the migration head; prints JSON.
"""

from __future__ import annotations

import json
import sqlite3
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psycopg
import requests

from app.mappers.defaults import salesforce_mappings

# Values for NOT NULL columns the JSON does not carry (crmsync fills them from defaults).
CONSTANTS: dict[str, dict[str, Any]] = {
    "accounts": {"strategic_account": False, "flags": "[]", "field_stamps": "{}"},
    "opportunities": {"is_closed": False, "is_won": False, "field_stamps": "{}"},
}


def _connect(url: str) -> Any:
    if url.startswith("sqlite:///"):
        return sqlite3.connect(url.removeprefix("sqlite:///"))
    return psycopg.connect(url.replace("postgresql+psycopg://", "postgresql://"))


def main() -> None:
    url, info_path, *objects = sys.argv[1:]
    info = json.loads(Path(info_path).read_text())
    sf = info["salesforce"]
    session = requests.Session()
    session.trust_env = False
    session.verify = info["ca_file"]
    session.headers.update(
        {"Authorization": f"Bearer {sf['access_token']}", "Sforce-Query-Options": "batchSize=2000"}
    )
    base = f"{sf['instance_url']}/services/data/v{sf['api_version']}"
    mappings = {m.crm_object: m for m in salesforce_mappings()}
    conn = _connect(url)
    mark = "?" if isinstance(conn, sqlite3.Connection) else "%s"
    now = datetime.now(UTC).isoformat()
    started = time.perf_counter()
    calls = records = 0
    for object_name in objects:
        mapping = mappings[object_name]
        fields = list(mapping.read_fields())
        pairs = [("Id", "sf_id"), ("SystemModstamp", "sf_modified_at")] + [
            (f.crm_field, f.column) for f in mapping.inbound_fields if f.crm_field in fields
        ]
        mapped = {c for _f, c in pairs}
        constants = {
            c: v
            for c, v in {
                **CONSTANTS[mapping.cs_table],
                "created_at": now,
                "updated_at": now,
            }.items()
            if c not in mapped
        }
        columns = [c for _f, c in pairs] + list(constants)
        insert = (
            f"INSERT INTO {mapping.cs_table} ({', '.join(columns)}) "
            f"VALUES ({', '.join(mark for _ in columns)})"
        )
        tail = tuple(constants.values())
        cur = conn.cursor()
        soql = f"SELECT {', '.join(fields)} FROM {object_name} ORDER BY SystemModstamp, Id"
        response = session.get(f"{base}/queryAll/", params={"q": soql})
        while True:
            calls += 1
            response.raise_for_status()
            page = response.json()
            rows = [tuple(r.get(f) for f, _c in pairs) + tail for r in page["records"]]
            cur.executemany(insert, rows)
            conn.commit()
            records += len(rows)
            if page.get("done", True):
                break
            response = session.get(sf["instance_url"] + page["nextRecordsUrl"])
    elapsed = time.perf_counter() - started
    conn.close()
    print(json.dumps({"records": records, "seconds": elapsed, "api_calls": calls}))


if __name__ == "__main__":
    main()

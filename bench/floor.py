"""The raw floor: the same Salesforce JSON pages, parsed and inserted with plain executemany.

No mapping, no merge, no upsert, no cursor: one ``requests`` session pages through the REST query
(``nextRecordsUrl``), ``json.loads`` each page and inserts its rows with the DB-API driver's
``executemany`` into a plain table. crmsync's pull is reported as a ratio to this.

Usage: ``python -m bench.floor DATABASE_URL INFO_JSON OBJECT [OBJECT ...]``; prints JSON.
"""

from __future__ import annotations

import json
import sqlite3
import sys
import time
from typing import Any

import psycopg
import requests

from app.mappers.defaults import salesforce_mappings


def _connect(url: str) -> Any:
    if url.startswith("sqlite:///"):
        return sqlite3.connect(url.removeprefix("sqlite:///"))
    return psycopg.connect(url.replace("postgresql+psycopg://", "postgresql://"))


def main() -> None:
    url, info_path, *objects = sys.argv[1:]
    info = json.loads(open(info_path).read())  # noqa: SIM115
    sf = info["salesforce"]
    session = requests.Session()
    session.trust_env = False
    session.verify = info["ca_file"]
    session.headers.update(
        {
            "Authorization": f"Bearer {sf['access_token']}",
            "Sforce-Query-Options": "batchSize=2000",
        }
    )
    base = f"{sf['instance_url']}/services/data/v{sf['api_version']}"
    mappings = {m.crm_object: m for m in salesforce_mappings()}
    conn = _connect(url)
    paramstyle = "?" if isinstance(conn, sqlite3.Connection) else "%s"
    started = time.perf_counter()
    calls = records = 0
    for object_name in objects:
        fields = list(mappings[object_name].read_fields())
        table = f"floor_{object_name.lower()}"
        cur = conn.cursor()
        cur.execute(f"DROP TABLE IF EXISTS {table}")
        cur.execute(f"CREATE TABLE {table} ({', '.join(f'{f} TEXT' for f in fields)})")
        conn.commit()
        insert = (
            f"INSERT INTO {table} ({', '.join(fields)}) "
            f"VALUES ({', '.join(paramstyle for _ in fields)})"
        )
        soql = f"SELECT {', '.join(fields)} FROM {object_name} ORDER BY SystemModstamp, Id"
        response = session.get(f"{base}/queryAll/", params={"q": soql})
        while True:
            calls += 1
            response.raise_for_status()
            page = response.json()
            rows = [
                tuple(None if r.get(f) is None else str(r.get(f)) for f in fields)
                for r in page["records"]
            ]
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

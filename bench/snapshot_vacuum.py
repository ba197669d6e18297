"""What the run's PostgreSQL snapshot costs a live database: VACUUM and a concurrent writer, while the workers cluster.

    .venv/bin/python bench/snapshot_vacuum.py [--server postgresql+psycopg://postgres@127.0.0.1:5432/test] [--json OUT]

In a scratch database of its own (created and dropped on the server), for the
snapshot released once every worker has read (what ``cluster`` does) and held
to the end (the earlier behaviour, monkeypatched here): a run whose workers,
having read their samples, pause on purpose (``pause-in-clustering``) -- the
hours of clustering at downsample 1. During the pause a writer inserts rows
into a probe table (timed), deletes them, and ``VACUUM (VERBOSE)`` says how many
dead row versions it removed and how many it could not remove yet.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import re
import sys
import threading
import time
import uuid
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.append(str(HERE.parent))  # a PYTHONPATH checkout first, else this one (one way in every script)

PROBE_ROWS = 100_000
PAUSE_S = 20


def probe(url: str, out: dict) -> None:
    """The experiment's side: insert PROBE_ROWS rows, delete them, VACUUM; what VACUUM could remove."""
    import sqlalchemy as sa

    from cluster_workers.db.connect import make_engine

    engine = make_engine(url)
    notices: list[str] = []
    try:
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.exec_driver_sql("CREATE TABLE IF NOT EXISTS cw_probe (id bigint, note text)")
            t0 = time.perf_counter()
            conn.exec_driver_sql(f"INSERT INTO cw_probe SELECT g, 'row ' || g FROM generate_series(1, {PROBE_ROWS}) g")
            out["insert_s"] = round(time.perf_counter() - t0, 3)
            conn.exec_driver_sql("DELETE FROM cw_probe")
            conn.connection.driver_connection.add_notice_handler(lambda d: notices.append(d.message_primary or ""))
            conn.exec_driver_sql("VACUUM (VERBOSE) cw_probe")
            out["snapshot_sessions"] = conn.execute(
                sa.text("SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                        "AND backend_xmin IS NOT NULL AND pid <> pg_backend_pid()")
            ).scalar_one()  # fmt: skip
    finally:
        engine.dispose()
    text = "\n".join(notices)
    found = re.search(r"tuples: (\d+) removed, (\d+) remain, (\d+) are dead but not yet removable", text)
    if found:
        out["vacuum_removed"], out["vacuum_remain"], out["vacuum_not_removable"] = map(int, found.groups())
    else:
        out["vacuum_text"] = text[-500:]


def one_run(url: str, hold: bool) -> dict:
    from cluster_workers.db.snapshot import RunSnapshot
    from cluster_workers.run.config import Settings
    from cluster_workers.run.coordinator import run_clustering

    out: dict = {"snapshot": "held to the end" if hold else "released once read"}
    thread = threading.Thread(target=lambda: (time.sleep(PAUSE_S / 2), probe(url, out)), daemon=True)
    real_release = RunSnapshot.release
    os.environ["CLUSTER_WORKERS_FAULT"] = f"pause-in-clustering={PAUSE_S}"
    try:
        if hold:
            RunSnapshot.release = lambda self: False  # type: ignore[method-assign]
        settings = Settings(
            database_url=url, downsample=1, workers=2, models=("Nomic", "STSBMpnet"), engine="reference", force=True
        )
        t0 = time.perf_counter()
        run_clustering(settings, on_plan=lambda models: thread.start())
        out["run_s"] = round(time.perf_counter() - t0, 1)
    finally:
        RunSnapshot.release = real_release  # type: ignore[method-assign]
        os.environ.pop("CLUSTER_WORKERS_FAULT", None)
    thread.join(timeout=60)
    return out


def main() -> None:
    import sqlalchemy as sa

    from cluster_workers.db.connect import make_engine
    from cluster_workers.tools.demo import build_demo_database
    from cluster_workers.tools.provenance import machine_info, source_commit

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--server", default="postgresql+psycopg://postgres@127.0.0.1:5432/test")
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    name = f"cw_vacuum_{uuid.uuid4().hex[:8]}"
    admin = make_engine(args.server)
    with admin.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.exec_driver_sql(f'CREATE DATABASE "{name}"')
    url = sa.make_url(args.server).set(database=name).render_as_string(hide_password=False)
    try:
        build_demo_database(url, embeddings=4_525, seed=3)
        rows = [one_run(url, hold=False), one_run(url, hold=True)]
    finally:
        with admin.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.dispose()
    print(f"{'snapshot':<20} {'insert s':>9} {'removed':>9} {'not removable':>14} {'xmin sessions':>14}")
    for r in rows:
        print(f"{r['snapshot']:<20} {r.get('insert_s', float('nan')):>9.3f} {r.get('vacuum_removed', -1):>9,} "
              f"{r.get('vacuum_not_removable', -1):>14,} {r.get('snapshot_sessions', -1):>14}")  # fmt: skip
    if args.json:
        doc = {"date": dt.date.today().isoformat(), "commit": source_commit(), "machine": machine_info(),
               "probe_rows": PROBE_ROWS, "pause_s": PAUSE_S, "rows": rows}  # fmt: skip
        args.json.write_text(json.dumps(doc, indent=1) + "\n")


if __name__ == "__main__":
    main()

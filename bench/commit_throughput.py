"""Commit throughput: memberships written per second inside the one transaction, ours against the
straightforward ``insert`` of row dicts, on SQLite and PostgreSQL, in the same run.

    .venv/bin/python bench/commit_throughput.py --rows 3300000 [--sqlite PATH] [--postgres URL] [--json OUT]

The result rows are synthetic (random embedding ids, 500 clusters); they go into a fresh file (or a
fresh schema on PostgreSQL) so nothing of a real database is touched.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import sqlalchemy as sa

from cluster_workers.db.connect import enable_wal, make_engine
from cluster_workers.db.results import write_results
from cluster_workers.db.schema import LEGACY_SCHEMA

EXPERIMENT_TABLES = (LEGACY_SCHEMA.run, LEGACY_SCHEMA.invocation, LEGACY_SCHEMA.embedding)
RESULT_TABLES = (LEGACY_SCHEMA.clustering_result, LEGACY_SCHEMA.embedding_cluster, LEGACY_SCHEMA.clustering_tree)
clustering_result = LEGACY_SCHEMA.clustering_result
embedding = LEGACY_SCHEMA.embedding
embedding_cluster = LEGACY_SCHEMA.embedding_cluster
metadata = LEGACY_SCHEMA.metadata


@dataclass
class FakeResult:
    model: str
    embedding_ids: np.ndarray
    labels: np.ndarray
    medoid_rows: np.ndarray
    parameters: dict = field(default_factory=dict)
    started_at: float = field(default_factory=time.time)
    completed_at: float = field(default_factory=time.time)


def fake_results(rows: int, models: int = 3, seed: int = 0) -> list[FakeResult]:
    rng = np.random.default_rng(seed)
    out = []
    for m in range(models):
        n = rows // models + (1 if m < rows % models else 0)
        labels = rng.integers(-1, 500, size=n)
        medoids = np.array([np.flatnonzero(labels == c)[0] for c in range(500)])
        out.append(FakeResult(f"model{m}", rng.integers(0, 256, size=(n, 16), dtype=np.uint8), labels, medoids))
    return out


def baseline_write(conn: sa.Connection, results: list[FakeResult]) -> int:
    """The straightforward way: one dict per row, uuid4 ids, SQLAlchemy executemany in 20,000-row chunks."""
    written = 0
    for r in results:
        ids = [uuid.UUID(bytes=bytes(row)) for row in r.embedding_ids]
        rid = uuid.uuid4()
        conn.execute(
            sa.insert(clustering_result), [{"id": rid, "embedding_model": r.model, "algorithm": "hdbscan", "parameters": {}}]
        )
        rows = [
            {
                "id": uuid.uuid4(),
                "embedding_id": e,
                "clustering_result_id": rid,
                "medoid_embedding_id": ids[r.medoid_rows[label]] if label >= 0 else None,
            }
            for e, label in zip(ids, r.labels.tolist())
        ]
        for start in range(0, len(rows), 20_000):
            conn.execute(sa.insert(embedding_cluster), rows[start : start + 20_000])
        written += len(rows)
    return written


def measure(url: str, results: list[FakeResult], ours: bool) -> float:
    engine = make_engine(url, create=True)
    with engine.begin() as conn:
        metadata.create_all(conn, tables=list(EXPERIMENT_TABLES) + list(RESULT_TABLES))
    with engine.begin() as conn:  # the embeddings the memberships point at (PostgreSQL checks foreign keys)
        ids = [uuid.UUID(bytes=bytes(row)) for r in results for row in r.embedding_ids]
        for start in range(0, len(ids), 50_000):
            conn.execute(sa.insert(embedding), [{"id": i} for i in ids[start : start + 50_000]])
    enable_wal(engine)
    started = time.perf_counter()
    with engine.begin() as conn:
        if ours:
            rows = write_results(conn, results, {"bench": True}, replace=False)["memberships"]
        else:
            rows = baseline_write(conn, results)
    elapsed = time.perf_counter() - started
    engine.dispose()
    return rows / elapsed


def pg_scratch(admin_url: str) -> tuple[str, callable]:
    name = f"cw_commit_{uuid.uuid4().hex[:10]}"
    admin = sa.create_engine(admin_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    url = sa.make_url(admin_url).set(database=name).render_as_string(hide_password=False)

    def drop() -> None:
        with admin.connect() as conn:
            conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()

    return url, drop


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--postgres", default="", help="admin URL of a PostgreSQL server (a scratch database is made)")
    parser.add_argument("--no-baseline", action="store_true")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    results = fake_results(args.rows)
    table = []
    targets = [("sqlite", None)] + ([("postgresql", args.postgres)] if args.postgres else [])
    for name, admin in targets:
        for ours in [True] if args.no_baseline else [True, False]:
            with tempfile.TemporaryDirectory() as tmp:
                drop = None
                url = f"sqlite:///{tmp}/commit.db"
                if admin:
                    url, drop = pg_scratch(admin)
                try:
                    rate = measure(url, results, ours)
                finally:
                    if drop:
                        drop()
            table.append(
                {
                    "database": name,
                    "writer": "ours" if ours else "baseline (insert of dicts)",
                    "rows": args.rows,
                    "rows_per_s": rate,
                }
            )
            print(f"{name:<11} {table[-1]['writer']:<27} {args.rows:>10,} rows  {rate:>10,.0f} rows/s", flush=True)
    for name, _ in targets:
        rates = {row["writer"]: row["rows_per_s"] for row in table if row["database"] == name}
        if len(rates) == 2:
            print(f"{name}: ours is {rates['ours'] / rates['baseline (insert of dicts)']:.1f}x the baseline")
    if args.json:
        args.json.write_text(json.dumps(table, indent=2))


if __name__ == "__main__":
    main()

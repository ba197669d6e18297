"""`cluster-workers index`: idempotent on both databases, logged with size and time, and never changes a result."""

from __future__ import annotations

import json

import pytest
import sqlalchemy as sa

from cluster_workers.db.connect import make_engine
from cluster_workers.db.indexes import COVERING, existing
from tests.helpers import run_cli


def _names(url: str) -> set[str]:
    engine = make_engine(url)
    with engine.connect() as conn:
        have = existing(conn)
    engine.dispose()
    return have & {ix.name for ix in COVERING}


def _labels(url: str) -> dict[str, tuple[dict, list]]:
    """Per model: the sample fingerprint and the sorted (embedding id, medoid id) memberships of its latest result."""
    engine = make_engine(url)
    with engine.connect() as conn:
        rows = conn.execute(sa.text("SELECT id, embedding_model, parameters FROM clusteringresult")).all()
        out = {}
        for rid, model, params in rows:
            params = json.loads(params) if isinstance(params, str) else params
            members = conn.execute(
                sa.text("SELECT embedding_id, medoid_embedding_id FROM embeddingcluster WHERE clustering_result_id = :r"),
                {"r": rid},
            ).all()
            out[model] = (params["sample"], sorted((str(e), str(m)) for e, m in members))
    engine.dispose()
    return out


@pytest.mark.parametrize("target", ["sqlite", "postgres"])
def test_index_is_idempotent_and_changes_no_result(target, request):
    url = f"sqlite:///{request.getfixturevalue('demo_db')}" if target == "sqlite" else request.getfixturevalue("pg_demo")
    assert run_cli("cluster", "-d", url, "--downsample", "3").returncode == 0
    without = _labels(url)
    first = run_cli("index", "-d", url)
    assert first.returncode == 0, first.stderr
    assert all(f"{ix.name}: created" in first.stdout for ix in COVERING), first.stdout + first.stderr
    assert "MiB" in first.stderr or "created in" in first.stderr  # logged with its time (and size where the database tells)
    assert _names(url) == {ix.name for ix in COVERING}
    again = run_cli("index", "-d", url)
    assert again.returncode == 0 and all(f"{ix.name}: exists" in again.stdout for ix in COVERING)
    forced = run_cli("cluster", "-d", url, "--downsample", "3", "--force")
    assert forced.returncode == 0, forced.stderr
    assert _labels(url) == without  # same samples, same fingerprints, same clusters and medoids
    dropped = run_cli("index", "-d", url, "--drop")
    assert dropped.returncode == 0 and all(f"{ix.name}: dropped" in dropped.stdout for ix in COVERING)
    assert _names(url) == set()
    assert all(f"{ix.name}: absent" in run_cli("index", "-d", url, "--drop").stdout for ix in COVERING)


def test_counts_within_a_snapshot_read_only_the_covering_index(demo_db):
    """The run's rowid bound must not steer SQLite to the embedding rows (3 KB vectors each) on a cold cache."""
    from cluster_workers.db import experiment
    from cluster_workers.db.schema import LEGACY_SCHEMA
    from cluster_workers.db.snapshot import SampleBound

    url = f"sqlite:///{demo_db}"
    assert run_cli("index", "-d", url).returncode == 0
    engine = make_engine(url)
    with engine.connect() as conn:
        bound = SampleBound(max_rowid=int(conn.execute(sa.text("SELECT max(rowid) FROM embedding")).scalar_one()))
        for query in (experiment.count_all_query(LEGACY_SCHEMA, bound), experiment.count_sampled_query(LEGACY_SCHEMA, 3, bound)):
            sql = str(query.compile(engine, compile_kwargs={"literal_binds": True}))
            plan = " | ".join(row[-1] for row in conn.execute(sa.text("EXPLAIN QUERY PLAN " + sql)))
            assert "USING COVERING INDEX" in plan and "SEARCH embedding USING INDEX" not in plan, plan
        # and the bound still bounds: a count within a smaller rowid sees fewer embeddings
        half = SampleBound(max_rowid=bound.max_rowid // 2)
        assert sum(n for _, n in conn.execute(experiment.count_all_query(LEGACY_SCHEMA, half))) < sum(
            n for _, n in conn.execute(experiment.count_all_query(LEGACY_SCHEMA, bound))
        )
    engine.dispose()


def test_postgres_builds_concurrently_so_inserts_go_on(pg_demo):
    """While the build waits for an open writer, a new insert is not queued behind it (a plain CREATE INDEX's SHARE
    lock would queue it: the insert below would then hit its lock timeout)."""
    import subprocess
    import sys
    import time
    import uuid

    from tests.helpers import ROOT

    engine = make_engine(pg_demo)
    holder = engine.connect()
    # an open writer on the table: the concurrent build waits for it to finish before it starts building
    holder.execute(
        sa.text("UPDATE embedding SET embedding_model = embedding_model WHERE id = (SELECT id FROM embedding LIMIT 1)")
    )
    proc = subprocess.Popen(
        [sys.executable, "-m", "cluster_workers", "index", "-d", pg_demo],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        time.sleep(3)  # the build has started and waits for the holder's transaction
        assert proc.poll() is None, proc.communicate()
        with engine.connect() as writer:
            writer.execute(sa.text("SET lock_timeout = '2s'"))
            inv = writer.execute(sa.text("SELECT id FROM invocation LIMIT 1")).scalar_one()
            writer.execute(
                sa.text("INSERT INTO embedding (id, invocation_id, embedding_model, vector) VALUES (:i, :v, 'Late', :b)"),
                {"i": uuid.uuid4(), "v": inv, "b": b"\0" * 16},
            )
            writer.commit()  # not blocked by the index build
    finally:
        holder.rollback()
        holder.close()
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err
    with engine.connect() as conn:
        assert _names(pg_demo) == {ix.name for ix in COVERING}
        assert conn.execute(sa.text("SELECT count(*) FROM embedding WHERE embedding_model = 'Late'")).scalar_one() == 1
    engine.dispose()


def test_postgres_rebuilds_an_index_left_invalid(pg_demo):
    assert run_cli("index", "-d", pg_demo).returncode == 0
    engine = make_engine(pg_demo)
    with engine.begin() as conn:  # as an interrupted CREATE INDEX CONCURRENTLY leaves it
        conn.execute(sa.text("UPDATE pg_index SET indisvalid = false WHERE indexrelid = 'ix_cw_embedding_invocation'::regclass"))
    out = run_cli("index", "-d", pg_demo)
    assert out.returncode == 0, out.stderr
    assert "invalid" in out.stderr and "ix_cw_embedding_invocation: created" in out.stdout
    with engine.connect() as conn:
        valid = conn.execute(
            sa.text("SELECT indisvalid FROM pg_index WHERE indexrelid = 'ix_cw_embedding_invocation'::regclass")
        ).scalar_one()
    engine.dispose()
    assert valid


def test_sqlite_says_what_it_locks_and_waits_boundedly_for_a_writer(demo_db):
    import sqlite3

    writer = sqlite3.connect(demo_db)
    writer.execute("BEGIN IMMEDIATE")  # another writer holds the write lock
    try:
        out = run_cli("index", "-d", str(demo_db), env={"CLUSTER_WORKERS_BUSY_TIMEOUT": "1"})
    finally:
        writer.rollback()
        writer.close()
    assert out.returncode == 1 and "Traceback" not in out.stderr
    assert "write lock" in out.stderr and "embeddings to index" in out.stderr  # said before it starts
    assert "while indexing" in out.stderr and "locked" in out.stderr
    assert _names(f"sqlite:///{demo_db}") == set()
    done = run_cli("index", "-d", str(demo_db))
    assert done.returncode == 0 and _names(f"sqlite:///{demo_db}") == {ix.name for ix in COVERING}


def test_index_refuses_while_a_run_holds_the_run_lock(demo_db):
    from cluster_workers.db.lock import run_lock

    with run_lock(f"sqlite:///{demo_db}"):
        out = run_cli("index", "-d", str(demo_db))
    assert out.returncode != 0 and "Traceback" not in out.stderr
    assert _names(f"sqlite:///{demo_db}") == set()

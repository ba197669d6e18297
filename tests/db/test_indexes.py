"""`cluster-workers index`: idempotent on both databases, logged with size and time, and never changes a result."""

from __future__ import annotations

import json

import pytest
import sqlalchemy as sa

from cluster_workers.db.connect import make_engine
from cluster_workers.db.indexes import COVERING, existing
from tests.conftest import run_cli


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
            members = conn.execute(sa.text("SELECT embedding_id, medoid_embedding_id FROM embeddingcluster WHERE clustering_result_id = :r"),
                                   {"r": rid}).all()
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
    from cluster_workers.db import sampling
    from cluster_workers.db.snapshot import SampleBound

    url = f"sqlite:///{demo_db}"
    assert run_cli("index", "-d", url).returncode == 0
    engine = make_engine(url)
    with engine.connect() as conn:
        bound = SampleBound(max_rowid=int(conn.execute(sa.text("SELECT max(rowid) FROM embedding")).scalar_one()))
        for query in (sampling.count_all_query(bound), sampling.count_sampled_query(3, bound)):
            sql = str(query.compile(engine, compile_kwargs={"literal_binds": True}))
            plan = " | ".join(row[-1] for row in conn.execute(sa.text("EXPLAIN QUERY PLAN " + sql)))
            assert "USING COVERING INDEX" in plan and "SEARCH embedding USING INDEX" not in plan, plan
        # and the bound still bounds: a count within a smaller rowid sees fewer embeddings
        half = SampleBound(max_rowid=bound.max_rowid // 2)
        assert sum(n for _, n in conn.execute(sampling.count_all_query(half))) < sum(
            n for _, n in conn.execute(sampling.count_all_query(bound))
        )
    engine.dispose()

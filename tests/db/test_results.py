"""Membership ids (time-ordered, never the same twice); result ids resolved without reading the memberships."""

from __future__ import annotations

import uuid

import numpy as np
import pytest

from cluster_workers.db.results import time_ordered_ids


def test_batches_in_the_same_millisecond_never_collide():
    """One commit writes one batch per model, often in the same millisecond (the bug CI caught: 12 random bits)."""
    batches = [time_ordered_ids(50, 1764100000.123) for _ in range(2000)]
    ids = np.vstack(batches)
    assert len({row.tobytes() for row in ids}) == ids.shape[0]


def test_ids_are_version_7_and_increase_within_a_batch():
    ids = [uuid.UUID(bytes=row.tobytes()) for row in time_ordered_ids(1000, 1764100000.5)]
    assert all(u.version == 7 and u.variant == uuid.RFC_4122 for u in ids)
    assert ids == sorted(ids) and len(set(ids)) == 1000
    assert all(u.bytes[:6] == int(1764100000.5 * 1000).to_bytes(6, "big") for u in ids)


@pytest.mark.parametrize("where", ["sqlite", "postgres"])
def test_an_id_prefix_is_resolved_on_clusteringresult_alone(request, where):
    """`show`/`export`/`trajectories` name a result by id prefix or `latest`: resolving it must not read (or
    aggregate) the memberships table, which holds millions of rows."""
    import sqlalchemy as sa

    from cluster_workers.db.catalog import list_results, resolve_result_id
    from cluster_workers.db.connect import make_engine
    from cluster_workers.run.config import Settings
    from cluster_workers.run.coordinator import run_clustering

    url = f"sqlite:///{request.getfixturevalue('demo_db')}" if where == "sqlite" else request.getfixturevalue("pg_demo")
    run_clustering(Settings(database_url=url, downsample=2, models=("Nomic", "STSBMpnet"), engine="reference"))
    engine = make_engine(url)
    statements: list[str] = []
    sa.event.listen(engine, "before_cursor_execute", lambda conn, cursor, statement, *rest: statements.append(statement))
    with engine.connect() as conn:
        results = list_results(conn)
        statements.clear()
        for r in results:
            assert resolve_result_id(conn, r.id.hex[:12]) == r.id
            assert resolve_result_id(conn, str(r.id)) == r.id
        assert resolve_result_id(conn, "latest:STSBMpnet") == next(r.id for r in results if r.model == "STSBMpnet")
    engine.dispose()
    assert statements and not [s for s in statements if "embeddingcluster" in s.lower()]

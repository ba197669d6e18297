"""The synthetic experiment database: layout, parity, counts, determinism, refusal when it cannot fit."""

from __future__ import annotations

from collections import Counter, defaultdict

import numpy as np
import pytest
import sqlalchemy as sa

from cluster_workers.db.connect import make_engine
from cluster_workers.errors import ConfigError
from cluster_workers.tools.demo import DemoShape, build_demo_database, check_free_space
from tests.helpers import SMALL
from tests.legacy_tables import embedding, invocation, run


def test_layout_parity_and_counts(demo_template):
    engine = make_engine(str(demo_template))
    with engine.connect() as conn:
        per_model = dict(
            conn.execute(sa.select(embedding.c.embedding_model, sa.func.count()).group_by(embedding.c.embedding_model)).all()
        )
        invs = conn.execute(
            sa.select(invocation.c.run_id, invocation.c.sequence_number, invocation.c.type, invocation.c.output_text)
        ).all()
        prompts = [p for (p,) in conn.execute(sa.select(run.c.initial_prompt))]
        vec_rows = conn.execute(sa.select(embedding.c.embedding_model, embedding.c.vector)).all()
    assert sum(per_model.values()) == SMALL
    assert per_model["Dummy"] == 25
    assert per_model["STSBMpnet"] == per_model["STSBRoberta"] == per_model["Nomic"] == (SMALL - 25) // 3
    assert "yeah" in prompts and "nah" in prompts
    by_run = defaultdict(list)
    for run_id, seq, typ, text in invs:
        by_run[run_id].append((seq, typ, text))
    for items in by_run.values():
        items.sort()
        assert [s for s, _, _ in items] == list(range(len(items)))
        assert all(typ == ("TEXT" if s % 2 else "IMAGE") for s, typ, _ in items)  # text on odd numbers
        assert all((text is not None) == (s % 2 == 1) for s, _, text in items)
    for _model, blob in vec_rows:
        assert len(blob) == 768 * 4
    vecs = np.frombuffer(b"".join(b for m, b in vec_rows if m == "Nomic"), dtype="<f4").reshape(-1, 768)
    assert np.allclose(np.linalg.norm(vecs, axis=1), 1, atol=1e-5)
    # structure, not noise: many exact duplicates and strongly similar neighbours
    assert len({v.tobytes() for v in vecs}) < len(vecs)
    sims = vecs[:200] @ vecs.T
    np.fill_diagonal(sims[:, :200], -1)
    assert np.median(sims.max(axis=1)) > 0.8


def test_same_seed_same_database_other_seed_other(tmp_path):
    paths = [tmp_path / f"{i}.db" for i in range(3)]
    for path, seed in zip(paths, (5, 5, 6)):
        build_demo_database(str(path), embeddings=500, seed=seed)

    def dump(path):
        with make_engine(str(path)).connect() as conn:
            return conn.execute(
                sa.select(embedding.c.id, embedding.c.invocation_id, embedding.c.vector).order_by(embedding.c.id)
            ).all()

    assert dump(paths[0]) == dump(paths[1])
    assert dump(paths[0]) != dump(paths[2])


def test_production_shape_arithmetic():
    shape = DemoShape.for_total(3_288_025)
    assert shape.text_invocations == 1_096_000 and shape.dummy == 25
    assert sum(shape.run_lengths) == shape.text_invocations
    assert 300 <= shape.attractors <= 400
    assert min(shape.run_lengths[:-2]) > 1000  # runs much longer than downsample=1000
    assert 9e9 < shape.estimated_bytes() < 14e9


def test_refuses_when_the_disk_is_too_small(tmp_path, monkeypatch):
    import shutil as _shutil

    monkeypatch.setattr(_shutil, "disk_usage", lambda p: _shutil._ntuple_diskusage(100, 99, 1))
    with pytest.raises(ConfigError, match="not enough disk space"):
        check_free_space(tmp_path / "x.db", DemoShape.for_total(3_288_025))


def test_postgres_demo(pg_demo):
    engine = make_engine(pg_demo)
    with engine.connect() as conn:
        counts = Counter(
            dict(
                conn.execute(sa.select(embedding.c.embedding_model, sa.func.count()).group_by(embedding.c.embedding_model)).all()
            )
        )
    engine.dispose()
    assert sum(counts.values()) == SMALL and counts["Dummy"] == 25

"""The downsampling filter, against an independent Python computation of the spec."""

from __future__ import annotations

import uuid

import numpy as np
import pytest
import sqlalchemy as sa

from cluster_workers.db import experiment
from cluster_workers.db.connect import make_engine
from cluster_workers.db.experiment import fetch_vectors
from cluster_workers.db.schema import LEGACY_SCHEMA
from tests.helpers import expected_sample
from tests.legacy_tables import embedding, invocation, run


def _sqlite(path) -> str:
    return f"sqlite:///{path}"


@pytest.mark.parametrize("downsample", [1, 2, 3, 4, 7, 10, 1000])
def test_counts_match_the_spec_for_odd_and_even_n(demo_db, downsample):
    url = _sqlite(demo_db)
    want = expected_sample(url, downsample)
    engine = make_engine(url)
    with engine.connect() as conn:
        before, after, _ = experiment.counts(conn, downsample)
        for model, ids in want.items():
            vectors = fetch_vectors(conn, model, downsample, after[model])
            got = {uuid.UUID(bytes=vectors.ids[i].tobytes()) for i in range(len(vectors.ids))}
            assert got == ids, f"{model} at downsample={downsample}"
    assert after == {m: len(ids) for m, ids in want.items()}
    assert set(before) == {"STSBMpnet", "STSBRoberta", "Nomic", "Dummy"}
    assert all(after[m] <= before[m] for m in after)


def test_even_n_keeps_about_one_in_n_where_the_naive_filter_keeps_nothing(demo_db):
    url = _sqlite(demo_db)
    engine = make_engine(url)
    with engine.connect() as conn:
        _, after, _ = experiment.counts(conn, 2)
        _, all_text, _ = experiment.counts(conn, 1)
        naive = conn.execute(
            sa.select(sa.func.count())
            .select_from(embedding.join(invocation, invocation.c.id == embedding.c.invocation_id))
            .where(invocation.c.sequence_number % 2 == 0, embedding.c.embedding_model == "Nomic")
        ).scalar_one()
    assert naive == 0  # the trap: text sits on odd sequence numbers
    assert 0.45 < after["Nomic"] / all_text["Nomic"] < 0.56


def test_calibration_runs_are_excluded(demo_db):
    engine = make_engine(_sqlite(demo_db))
    with engine.connect() as conn:
        before, after, _ = experiment.counts(conn, 1)
        calib = conn.execute(
            sa.select(sa.func.count())
            .select_from(
                embedding.join(invocation, invocation.c.id == embedding.c.invocation_id).join(
                    run, run.c.id == invocation.c.run_id
                )
            )
            .where(run.c.initial_prompt.in_(["yeah", "nah"]), embedding.c.embedding_model == "Nomic")
        ).scalar_one()
    assert calib > 0
    assert after["Nomic"] == before["Nomic"] - calib


def test_sampling_does_not_rely_on_odd_sequence_numbers_or_upper_case(demo_db):
    """Shift every run so text sits on even numbers and store lower-case type names: same sample."""
    url = _sqlite(demo_db)
    want = expected_sample(url, 4)
    engine = make_engine(url)
    with engine.begin() as conn:
        conn.execute(sa.update(invocation).values(sequence_number=invocation.c.sequence_number + 1))
        conn.exec_driver_sql("UPDATE invocation SET type = lower(type)")
    with engine.connect() as conn:
        _, after, _ = experiment.counts(conn, 4)
    assert after == {m: len(ids) for m, ids in want.items()}
    assert expected_sample(url, 4) == want


def test_downsample_must_be_positive():
    with pytest.raises(ValueError):
        experiment.kept_invocations(LEGACY_SCHEMA, 0)


def test_vectors_arrive_as_one_float32_array(demo_db):
    engine = make_engine(_sqlite(demo_db))
    with engine.connect() as conn:
        _, after, _ = experiment.counts(conn, 5)
        v = fetch_vectors(conn, "STSBMpnet", 5, after["STSBMpnet"] - 3)  # a low estimate still works
    assert v.data.dtype == np.float32 and v.data.shape == (after["STSBMpnet"], 768)
    assert v.ids.shape == (after["STSBMpnet"], 16)
    assert np.allclose(np.linalg.norm(v.data, axis=1), 1.0, atol=1e-5)

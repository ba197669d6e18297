"""Bad vectors are refused with the embedding's id and model named."""

from __future__ import annotations

import numpy as np
import pytest
import sqlalchemy as sa

from cluster_workers.db.connect import make_engine
from cluster_workers.db.experiment import fetch_vectors
from cluster_workers.errors import BadVectorError
from tests.legacy_tables import embedding


def _first_id(conn, model):
    return conn.execute(sa.select(embedding.c.id).where(embedding.c.embedding_model == model).limit(1)).scalar_one()


@pytest.mark.parametrize(
    "blob, message",
    [
        (np.ones(767, dtype="<f4").tobytes(), "3068 bytes, expected 3072"),
        (b"\x00" * 3071, "3071 bytes"),
        (np.full(768, np.nan, dtype="<f4").tobytes(), "NaN or infinite"),
        (np.full(768, np.inf, dtype="<f4").tobytes(), "NaN or infinite"),
    ],
)
def test_bad_vector_is_named(demo_db, blob, message):
    engine = make_engine(f"sqlite:///{demo_db}")
    with engine.begin() as conn:
        bad_id = _first_id(conn, "Nomic")
        conn.execute(sa.update(embedding).where(embedding.c.id == bad_id).values(vector=blob))
    with engine.connect() as conn, pytest.raises(BadVectorError) as err:
        fetch_vectors(conn, "Nomic", 1, 10)
    assert "Nomic" in str(err.value)
    assert message in str(err.value)
    if "bytes" in message and "3071" not in message:
        assert str(bad_id) in str(err.value)

"""Results made by ``assign``: per row whether it was the frozen sample or assigned, with what it was given.

One row of ``clusteringassignment`` per such result (the table is made by the first
``assign``). Rows are the result's rows as written (the frozen sample first, in its
tree's row order, then the assigned rows); ``positions`` maps each to the result's
embedding ids sorted by their bytes, as a tree does (:mod:`.trees`). Storage: 25
bytes a row.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass

import numpy as np
import sqlalchemy as sa

from cluster_workers.db.detect import schema_of
from cluster_workers.db.side_rows import as_uuid, delete_rows, insert_row, read_row


@dataclass
class StoredAssignment:
    """An assigned result's per-row values, rows as written."""

    assigned_from: uuid.UUID
    positions: np.ndarray  # (n,) int64: row -> index into the result's embedding ids sorted by bytes
    assigned: np.ndarray  # (n,) bool: False for the frozen sample
    probabilities: np.ndarray  # (n,) float64
    core_distances: np.ndarray  # (n,) float64
    nearest: np.ndarray  # (n,) int64: the frozen row an assigned row joined through, -1 for frozen rows

    @property
    def points(self) -> int:
        return int(self.positions.size)


def encode(assigned_from: uuid.UUID, positions: np.ndarray, assigned: np.ndarray, probabilities: np.ndarray,
           core_distances: np.ndarray, nearest: np.ndarray) -> dict:  # fmt: skip
    n = int(positions.size)
    if any(np.shape(a) != (n,) for a in (assigned, probabilities, core_distances, nearest)):
        raise ValueError(f"an assignment of {n} rows needs {n} values of each kind")
    return {
        "assigned_from": assigned_from,
        "points": n,
        "positions": positions.astype("<i4").tobytes(),
        "assigned": np.asarray(assigned, dtype="<u1").tobytes(),
        "probabilities": np.asarray(probabilities, dtype="<f8").tobytes(),
        "core_distances": np.asarray(core_distances, dtype="<f8").tobytes(),
        "nearest": np.asarray(nearest, dtype="<i4").tobytes(),
    }


def write_assignment(conn: sa.Connection, result_id: uuid.UUID, values: dict) -> None:
    """Insert one result's row, making the table first if this database has none (the caller's transaction)."""
    insert_row(conn, schema_of(conn).clustering_assignment, result_id, values)


def read_assignment(conn: sa.Connection, result_id: uuid.UUID) -> StoredAssignment | None:
    """The result's assignment row, or None for a result not made by ``assign``."""
    v = read_row(conn, schema_of(conn).clustering_assignment, result_id)
    if v is None:
        return None
    return StoredAssignment(
        assigned_from=as_uuid(v["assigned_from"]),
        positions=np.frombuffer(v["positions"], dtype="<i4").astype(np.int64),
        assigned=np.frombuffer(v["assigned"], dtype="<u1").astype(bool),
        probabilities=np.frombuffer(v["probabilities"], dtype="<f8").copy(),
        core_distances=np.frombuffer(v["core_distances"], dtype="<f8").copy(),
        nearest=np.frombuffer(v["nearest"], dtype="<i4").astype(np.int64),
    )


def delete_assignments(conn: sa.Connection, result_ids: list[uuid.UUID]) -> None:
    delete_rows(conn, schema_of(conn).clustering_assignment, result_ids)

"""Each result's tree, kept beside it: the MST its labels were cut from, and per point the
membership probability and GLOSH score. One row of ``clusteringtree`` per result.

Rows are the clustered sample's rows in the order the worker read them (ties in the
tree and among medoids break by that order, so a re-cut reproduces a fresh run);
``positions`` maps each row to the result's embedding ids sorted by their 16 bytes,
which is how a reader finds the embedding of a row without storing the ids twice.
Storage: 16 bytes per edge and 36 per point (probability, GLOSH score, both core distances), about
52 bytes a point; a tree made before core distances were kept has them NULL.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass

import numpy as np
import sqlalchemy as sa

from cluster_workers.db.catalog import memberships_of
from cluster_workers.db.detect import schema_of
from cluster_workers.db.schema import tree_core_columns
from cluster_workers.db.side_rows import readable
from cluster_workers.db.vectors import uuid_bytes

FORMAT = 1
EDGE = np.dtype([("a", "<i4"), ("b", "<i4"), ("weight", "<f8")])


@dataclass
class StoredTree:
    """A result's tree as arrays, rows in the clustered sample's order."""

    edges: np.ndarray  # (n - 1, 3) float64: row a, row b, weight; sorted by weight
    positions: np.ndarray  # (n,) int64: row -> index into the result's embedding ids sorted by bytes
    probabilities: np.ndarray  # (n,) float64
    outlier_scores: np.ndarray  # (n,) float64
    core_distances: np.ndarray | None = None  # (n,) float64: the fit's (engines/cores.py); None in an older tree
    prediction_core_distances: np.ndarray | None = None  # (n,) float64: the prediction data's

    @property
    def cores(self) -> tuple[np.ndarray, np.ndarray] | None:
        """(fit, prediction) core distances, or None for a tree made before they were kept."""
        if self.core_distances is None or self.prediction_core_distances is None:
            return None
        return self.core_distances, self.prediction_core_distances

    @property
    def points(self) -> int:
        return int(self.positions.size)


def sorted_positions(embedding_ids: np.ndarray) -> np.ndarray:
    """For each row of ``(n, 16)`` id bytes, its index in the ids sorted by bytes (the order of :func:`byte_order`)."""
    positions = np.empty(len(embedding_ids), dtype=np.int64)
    positions[byte_order(embedding_ids)] = np.arange(len(embedding_ids))
    return positions


def byte_order(embedding_ids: np.ndarray) -> np.ndarray:
    """The order that sorts ``(n, 16)`` uint8 ids by their bytes (= hex text, = PostgreSQL's uuid order)."""
    return np.lexsort(np.ascontiguousarray(embedding_ids).T[::-1])


def encode(
    tree: np.ndarray,
    positions: np.ndarray,
    probabilities: np.ndarray,
    outlier_scores: np.ndarray,
    cores: tuple[np.ndarray, np.ndarray] | None = None,
) -> dict:
    """The ``clusteringtree`` column values (no result id); ``cores``: (fit, prediction) core distances per row."""
    n = int(positions.size)
    if tree.shape != (max(n - 1, 0), 3) or probabilities.shape != (n,) or outlier_scores.shape != (n,):
        raise ValueError(f"a tree of {n} points needs {n - 1} edges and {n} probabilities and scores")
    if cores is not None and any(np.shape(c) != (n,) for c in cores):
        raise ValueError(f"a tree of {n} points needs {n} core distances of each kind")
    edges = np.empty(n - 1, dtype=EDGE)
    edges["a"], edges["b"], edges["weight"] = tree[:, 0], tree[:, 1], tree[:, 2]
    return {
        "format": FORMAT,
        "points": n,
        "edges": edges.tobytes(),
        "positions": positions.astype("<i4").tobytes(),
        "probabilities": np.asarray(probabilities, dtype="<f8").tobytes(),
        "outlier_scores": np.asarray(outlier_scores, dtype="<f8").tobytes(),
        "core_distances": None if cores is None else np.asarray(cores[0], dtype="<f8").tobytes(),
        "prediction_core_distances": None if cores is None else np.asarray(cores[1], dtype="<f8").tobytes(),
    }


def decode(row: sa.Row | dict) -> StoredTree:
    values = row._mapping if isinstance(row, sa.Row) else row
    if values["format"] != FORMAT:
        raise ValueError(f"tree format {values['format']} is not one this version reads ({FORMAT})")
    edges = np.frombuffer(values["edges"], dtype=EDGE)
    return StoredTree(
        edges=np.column_stack([edges["a"], edges["b"], edges["weight"]]).astype(np.float64),
        positions=np.frombuffer(values["positions"], dtype="<i4").astype(np.int64),
        probabilities=np.frombuffer(values["probabilities"], dtype="<f8").copy(),
        outlier_scores=np.frombuffer(values["outlier_scores"], dtype="<f8").copy(),
        core_distances=_floats(values.get("core_distances")),
        prediction_core_distances=_floats(values.get("prediction_core_distances")),
    )


def _floats(blob: bytes | None) -> np.ndarray | None:
    return None if blob is None else np.frombuffer(blob, dtype="<f8").copy()


def add_core_columns(conn: sa.Connection) -> list[str]:
    """Add the core-distance columns to a ``clusteringtree`` made before they were kept (NULL in its rows).

    Inside the caller's transaction (SQLite and PostgreSQL both roll ``ALTER TABLE`` back); returns what was added.
    """
    table = schema_of(conn).clustering_tree
    if not has_tree_table(conn):
        return []
    present = {c["name"] for c in sa.inspect(conn).get_columns(table.name)}
    added = []
    for column in tree_core_columns():
        if column.name not in present:
            kind = column.type.compile(dialect=conn.dialect)
            conn.exec_driver_sql(f"ALTER TABLE {table.name} ADD COLUMN {column.name} {kind}")
            added.append(column.name)
    return added


def _present_columns(conn: sa.Connection, table: sa.Table) -> list[sa.Column]:
    present = {c["name"] for c in sa.inspect(conn).get_columns(table.name)}
    return [c for c in table.columns if c.name in present]


def write_tree(conn: sa.Connection, result_id: uuid.UUID, values: dict) -> None:
    conn.execute(sa.insert(schema_of(conn).clustering_tree), [{"clustering_result_id": result_id, **values}])


def has_tree_table(conn: sa.Connection) -> bool:
    return sa.inspect(conn).has_table(schema_of(conn).clustering_tree.name)


def read_tree(conn: sa.Connection, result_id: uuid.UUID) -> StoredTree | None:
    """The result's tree, or None for a result made without one (before trees were kept, or elsewhere)."""
    table = readable(conn, schema_of(conn).clustering_tree)
    if table is None:
        return None
    query = sa.select(*_present_columns(conn, table)).where(table.c.clustering_result_id == result_id)
    row = conn.execute(query).first()
    return None if row is None else decode(row)


def delete_trees(conn: sa.Connection, result_ids: list[uuid.UUID]) -> None:
    if result_ids and has_tree_table(conn):
        clustering_tree = schema_of(conn).clustering_tree
        conn.execute(sa.delete(clustering_tree).where(clustering_tree.c.clustering_result_id.in_(result_ids)))


def sorted_member_ids(conn: sa.Connection, result_id: uuid.UUID) -> tuple[np.ndarray, np.ndarray]:
    """The result's ``(embedding ids as (n, 16) bytes, medoid ids as (n, 16) bytes, zeros for outliers)``,
    sorted by embedding id bytes: index ``positions[row]`` of a stored tree."""
    ec = memberships_of(conn, result_id)
    rows = conn.execute(
        sa.select(sa.type_coerce(ec.c.embedding_id, sa.String), sa.type_coerce(ec.c.medoid_embedding_id, sa.String)).where(
            ec.c.clustering_result_id == result_id
        )
    ).all()
    ids = np.frombuffer(b"".join(uuid_bytes(e) for e, _ in rows), dtype=np.uint8).reshape(len(rows), 16)
    medoids = np.frombuffer(b"".join(uuid_bytes(m) if m is not None else bytes(16) for _, m in rows), dtype=np.uint8).reshape(
        len(rows), 16
    )
    order = byte_order(ids)
    return ids[order], medoids[order]

"""Results made by the evoc engine: per layer the membership strengths and the layer tree.

One row of ``clusteringlayer`` per such result (the table is made by the first evoc
run). Every layer of one run is the same sample in the same row order; ``positions``
maps each row to the result's embedding ids sorted by their bytes, as a tree does
(:mod:`.trees`). A cluster is named by its medoid's row, so the layer tree --
``parents``: per cluster (medoid row, parent layer, parent's medoid row), -1 where no
coarser layer holds it -- reads across the run's results without any label numbers.
Storage: 12 bytes a row and 12 a cluster.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass

import numpy as np
import sqlalchemy as sa

from cluster_workers.db.detect import schema_of
from cluster_workers.db.side_rows import as_uuid, delete_rows, insert_row, read_row, readable


@dataclass
class StoredLayer:
    """One evoc layer's row."""

    run_id: uuid.UUID  # the run's finest layer (every layer of the run shares it)
    layer: int
    layers: int
    persistence: float
    positions: np.ndarray  # (n,) int64: row -> index into the result's embedding ids sorted by bytes
    strengths: np.ndarray  # (n,) float64
    parents: np.ndarray  # (clusters, 3) int64: medoid row, parent layer, parent medoid row (-1, -1: none)

    @property
    def points(self) -> int:
        return int(self.positions.size)


def encode(run_id: uuid.UUID, layer: int, layers: int, persistence: float, positions: np.ndarray,
           strengths: np.ndarray, parents: np.ndarray) -> dict:  # fmt: skip
    n = int(positions.size)
    if np.shape(strengths) != (n,) or np.ndim(parents) != 2 or np.shape(parents)[1] != 3:
        raise ValueError(f"a layer of {n} rows needs {n} strengths and (clusters, 3) parents")
    return {
        "run_id": run_id,
        "layer": int(layer),
        "layers": int(layers),
        "persistence": float(persistence),
        "points": n,
        "positions": positions.astype("<i4").tobytes(),
        "strengths": np.asarray(strengths, dtype="<f8").tobytes(),
        "clusters": int(len(parents)),
        "parents": np.asarray(parents, dtype="<i4").tobytes(),
    }


def write_layer(conn: sa.Connection, result_id: uuid.UUID, values: dict) -> None:
    """Insert one result's row, making the table first if this database has none (the caller's transaction)."""
    insert_row(conn, schema_of(conn).clustering_layer, result_id, values)


def read_layer(conn: sa.Connection, result_id: uuid.UUID) -> StoredLayer | None:
    """The result's layer row, or None for a result not made by the evoc engine."""
    v = read_row(conn, schema_of(conn).clustering_layer, result_id)
    if v is None:
        return None
    return StoredLayer(
        run_id=as_uuid(v["run_id"]),
        layer=int(v["layer"]),
        layers=int(v["layers"]),
        persistence=float(v["persistence"]),
        positions=np.frombuffer(v["positions"], dtype="<i4").astype(np.int64),
        strengths=np.frombuffer(v["strengths"], dtype="<f8").copy(),
        parents=np.frombuffer(v["parents"], dtype="<i4").astype(np.int64).reshape(-1, 3),
    )


def run_layers(conn: sa.Connection, run_id: uuid.UUID) -> dict[int, uuid.UUID]:
    """``layer -> result id`` of every layer of one evoc run."""
    table = readable(conn, schema_of(conn).clustering_layer)
    if table is None:
        return {}
    rows = conn.execute(sa.select(table.c.layer, table.c.clustering_result_id).where(table.c.run_id == run_id))
    return {int(layer): as_uuid(rid) for layer, rid in rows}


def delete_layers(conn: sa.Connection, result_ids: list[uuid.UUID]) -> None:
    delete_rows(conn, schema_of(conn).clustering_layer, result_ids)


def layer_tree(conn: sa.Connection, result_id: uuid.UUID) -> dict[uuid.UUID, tuple[int, uuid.UUID, uuid.UUID]] | None:
    """An evoc layer's tree by embedding id: ``medoid id -> (parent layer, its result id, parent's medoid id)`` for
    every cluster a coarser layer holds; None for a result not made by the evoc engine."""
    from cluster_workers.db.trees import sorted_member_ids

    layer = read_layer(conn, result_id)
    if layer is None:
        return None
    ids, _ = sorted_member_ids(conn, result_id)
    by_row = ids[layer.positions]
    results = run_layers(conn, layer.run_id)
    tree = {}
    for medoid_row, parent_layer, parent_row in layer.parents:
        if parent_layer >= 0 and parent_layer in results:
            tree[uuid.UUID(bytes=by_row[medoid_row].tobytes())] = (
                int(parent_layer),
                results[parent_layer],
                uuid.UUID(bytes=by_row[parent_row].tobytes()),
            )
    return tree

"""Everything kept beside a result of ours, one row per result in a side table of its own: the tree it was
cut from (MST, probabilities, GLOSH scores, core distances), an assigned result's per-row values, an evoc
layer's strengths and layer tree; the per-point values read from whichever of them a result has; and a
stored result read back with its tree and its members' vectors (what recut, sweep, assign and density
start from). Rows of a side table are addressed by ``positions``: each row's place among the result's
embedding ids sorted by their 16 bytes.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass

import numpy as np
import sqlalchemy as sa

from cluster_workers.db.catalog import ResultSummary, find_result, memberships_of
from cluster_workers.db.detect import schema_of
from cluster_workers.db.experiment import fetch_vectors, uuid_bytes, vectors_of
from cluster_workers.db.schema import tree_core_columns
from cluster_workers.errors import ConfigError, DatabaseError

# Our per-result side tables (trees, assignments, layers): one row per result, keyed by
# ``clustering_result_id``, the table made by the first write that needs it.


def has_table(conn: sa.Connection, table: sa.Table) -> bool:
    return sa.inspect(conn).has_table(table.name)


def readable(conn: sa.Connection, table: sa.Table) -> sa.Table | None:
    """Where ``table``'s rows are read from: the table itself or, on a database 0.2.0 wrote that no command has
    repaired yet, the same rows under 0.2.0's name (``clusteringtree``, ...); None when neither exists."""
    inspector = sa.inspect(conn)
    if inspector.has_table(table.name):
        return table
    former = schema_of(conn).former_side_tables.get(table.name)
    return former if former is not None and inspector.has_table(former.name) else None


def insert_row(conn: sa.Connection, table: sa.Table, result_id: uuid.UUID, values: dict) -> None:
    """Insert one result's row, making the table first if this database has none (the caller's transaction)."""
    table.create(conn, checkfirst=True)
    conn.execute(sa.insert(table), [{"clustering_result_id": result_id, **values}])


def read_row(conn: sa.Connection, table: sa.Table, result_id: uuid.UUID) -> sa.RowMapping | None:
    """The result's row, or None (no such row, or no table yet)."""
    table = readable(conn, table)
    if table is None:
        return None
    row = conn.execute(sa.select(table).where(table.c.clustering_result_id == result_id)).first()
    return None if row is None else row._mapping


def delete_rows(conn: sa.Connection, table: sa.Table, result_ids: list[uuid.UUID]) -> None:
    if result_ids and has_table(conn, table):
        conn.execute(sa.delete(table).where(table.c.clustering_result_id.in_(result_ids)))


def as_uuid(value: object) -> uuid.UUID:
    return value if isinstance(value, uuid.UUID) else uuid.UUID(str(value))


# Each result's tree, kept beside it: the MST its labels were cut from, and per point the
# membership probability and GLOSH score. One row of ``clusteringtree`` per result.
#
# Rows are the clustered sample's rows in the order the worker read them (ties in the
# tree and among medoids break by that order, so a re-cut reproduces a fresh run);
# ``positions`` maps each row to the result's embedding ids sorted by their 16 bytes,
# which is how a reader finds the embedding of a row without storing the ids twice.
# Storage: 16 bytes per edge and 36 per point (probability, GLOSH score, both core distances), about
# 52 bytes a point; a tree made before core distances were kept has them NULL.

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


def encode_tree(
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


def decode_tree(row: sa.Row | dict) -> StoredTree:
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
    return None if row is None else decode_tree(row)


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


# Results made by ``assign``: per row whether it was the frozen sample or assigned, with what it was given.
#
# One row of ``clusteringassignment`` per such result (the table is made by the first
# ``assign``). Rows are the result's rows as written (the frozen sample first, in its
# tree's row order, then the assigned rows); ``positions`` maps each to the result's
# embedding ids sorted by their bytes, as a tree does (above). Storage: 25
# bytes a row.


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


def encode_assignment(assigned_from: uuid.UUID, positions: np.ndarray, assigned: np.ndarray, probabilities: np.ndarray,
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


# Results made by the evoc engine: per layer the membership strengths and the layer tree.
#
# One row of ``clusteringlayer`` per such result (the table is made by the first evoc
# run). Every layer of one run is the same sample in the same row order; ``positions``
# maps each row to the result's embedding ids sorted by their bytes, as a tree does
# (above). A cluster is named by its medoid's row, so the layer tree --
# ``parents``: per cluster (medoid row, parent layer, parent's medoid row), -1 where no
# coarser layer holds it -- reads across the run's results without any label numbers.
# Storage: 12 bytes a row and 12 a cluster.


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


def encode_layer(run_id: uuid.UUID, layer: int, layers: int, persistence: float, positions: np.ndarray,
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


# What a result stores per point, wherever it keeps it: its tree (HDBSCAN), its assignment row (``assign``) or
# its layer row (the evoc engine's membership strengths).


@dataclass
class PointValues:
    """What a result stores per point, from its tree or (a result made by ``assign``) its assignment row."""

    positions: np.ndarray  # (n,) row -> index into the result's ids sorted by bytes
    probabilities: np.ndarray
    outlier_scores: np.ndarray  # NaN where not stored (assigned results have no GLOSH score)
    core_distances: np.ndarray  # NaN where not stored

    @property
    def points(self) -> int:
        return int(self.positions.size)


def read_points(conn: sa.Connection, result_id: uuid.UUID) -> PointValues | None:
    """The result's per-point values, or None when it stores none (made before trees, or by another tool).

    An evoc layer's "probability" is its membership strength."""
    tree = read_tree(conn, result_id)
    if tree is not None:
        core = tree.core_distances if tree.core_distances is not None else np.full(tree.points, np.nan)
        return PointValues(tree.positions, tree.probabilities, tree.outlier_scores, core)
    a = read_assignment(conn, result_id)
    if a is None:
        layer = read_layer(conn, result_id)
        if layer is None:
            return None
        missing = np.full(layer.points, np.nan)
        return PointValues(layer.positions, layer.strengths, missing, missing.copy())
    return PointValues(a.positions, a.probabilities, np.full(a.points, np.nan), a.core_distances)


def point_scores(conn: sa.Connection, result_id: uuid.UUID) -> dict[bytes, tuple[float, float | None, float | None]]:
    """``embedding id bytes -> (probability, GLOSH score, core distance)`` of a result; empty when it stores none."""
    points = read_points(conn, result_id)
    if points is None:
        return {}
    ids, _ = sorted_member_ids(conn, result_id)
    rows = ids[points.positions]

    def value(v: float) -> float | None:
        return None if np.isnan(v) else float(v)

    return {rows[r].tobytes(): (float(points.probabilities[r]), value(points.outlier_scores[r]), value(points.core_distances[r]))
            for r in range(points.points)}  # fmt: skip


# A stored result read back with its tree, rows in the clustered sample's order.
#
# What ``recut``, ``sweep``, ``assign`` and ``density`` start from: the result's
# summary, its stored tree (:mod:`cluster_workers.db.attached`), each row's embedding
# id and stored medoid, and the members' vectors read back as the worker read
# them. Read only; knows nothing of HDBSCAN beyond the stored edges.


@dataclass(frozen=True)
class Source:
    """A stored result and its tree, rows in the clustered sample's order."""

    summary: ResultSummary
    tree: StoredTree
    embedding_ids: np.ndarray  # (n, 16) bytes, row order
    old_medoids: np.ndarray  # (n, 16) bytes of each row's medoid id (zeros: outlier)

    @property
    def parameters(self) -> dict:
        return self.summary.parameters

    @property
    def n(self) -> int:
        return self.tree.points


def no_tree_message(summary: ResultSummary) -> str:
    p = summary.parameters or {}
    if not summary.ours:
        return (f"result {summary.id.hex[:8]} ({summary.model}, {summary.algorithm} layer {summary.layer}) was not made by this "
                "tool and has no stored tree: cluster the model here to get one (cluster-workers cluster --model "
                f"{summary.model})")  # fmt: skip
    if p.get("engine") == "evoc":
        return (
            f"result {summary.id.hex[:8]} ({summary.model}) is an evoc layer: it has layers, not an HDBSCAN tree to cut, "
            f"predict from or read core distances of; cluster the model with --engine fast for one"
        )
    if p.get("assigned_from"):
        return (
            f"result {summary.id.hex[:8]} ({summary.model}) was made by assign and has no tree of its own: "
            f"use its source {str(p['assigned_from'])[:8]}"
        )
    return (
        f"result {summary.id.hex[:8]} ({summary.model}) has no stored tree: it was made before trees were kept. "
        f"Cluster it again to make one: cluster-workers cluster --model {summary.model} --downsample {p.get('downsample', '?')} --force"
    )


def load_source(conn: sa.Connection, result_id: str) -> Source:
    """The result, its tree and its memberships in the tree's row order; a clear error when it has no tree."""
    summary = find_result(conn, result_id)
    tree = read_tree(conn, summary.id)
    if tree is None:
        raise ConfigError(no_tree_message(summary))
    ids, medoids = sorted_member_ids(conn, summary.id)
    if len(ids) != tree.points:
        raise DatabaseError(f"result {summary.id.hex[:8]}: {len(ids):,} memberships but a tree of {tree.points:,} points")
    return Source(summary, tree, ids[tree.positions], medoids[tree.positions])


def old_cluster_codes(source: Source) -> tuple[np.ndarray, int]:
    """Per row, a code for its cluster in the stored result (equal codes: one cluster), and the outliers' code."""
    keys, codes = np.unique(source.old_medoids, axis=0, return_inverse=True)
    outlier = np.flatnonzero(~keys.any(axis=1))
    return codes.ravel(), int(outlier[0]) if outlier.size else -1


SCAN_SHARE = 20  # read the whole sample once instead of by primary key when more than 1/SCAN_SHARE of it is needed
SCAN_MIN_ROWS = 2_000


def member_vectors(conn: sa.Connection, source: Source, rows: np.ndarray) -> tuple[np.ndarray, str]:
    """The stored vectors of ``rows`` (in that order), and how they were read.

    A few rows are looked up by primary key. Many (the medoids of most clusters
    changed) are found by reading the model's sample again the way the worker
    reads it -- one pass in index order, 5-8x faster than random primary-key
    lookups at downsample 10 -- and any row no longer in that sample (the
    database changed since) by primary key.
    """
    wanted = source.embedding_ids[rows]
    found = np.zeros(rows.size, dtype=bool)
    out: np.ndarray | None = None
    how = "primary key"
    downsample = source.parameters.get("downsample")
    if downsample and rows.size > max(SCAN_MIN_ROWS, source.n // SCAN_SHARE):
        sample = fetch_vectors(
            conn,
            source.summary.model,
            int(downsample),
            expected=source.n,
            skip_bad=True,
            experiment=source.parameters.get("experiment"),
            offset=int(source.parameters.get("offset", 0)),
        )
        at = {sample.ids[i].tobytes(): i for i in range(len(sample.ids))}
        where = np.array([at.get(w.tobytes(), -1) for w in wanted], dtype=np.int64)
        found = where >= 0
        out = np.empty((rows.size, sample.data.shape[1]), dtype=np.float32)
        out[found] = sample.data[where[found]]
        how = "sample scan" if found.all() else "sample scan and primary key"
    if not found.all():
        ids = [uuid.UUID(bytes=w.tobytes()) for w in wanted[~found]]
        by_key = vectors_of(conn, ids)
        missing = [str(i) for i in ids if i not in by_key]
        if missing:
            raise DatabaseError(f"{len(missing)} embedding(s) of the result are gone from the database (e.g. {missing[0]})")
        looked_up = np.stack([by_key[i] for i in ids]).astype(np.float32)
        if out is None:
            out = np.empty((rows.size, looked_up.shape[1]), dtype=np.float32)
        out[~found] = looked_up
    return out, how

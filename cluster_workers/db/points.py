"""What a result stores per point, wherever it keeps it: its tree (HDBSCAN), its assignment row (``assign``) or
its layer row (the evoc engine's membership strengths)."""

from __future__ import annotations

import uuid
from dataclasses import dataclass

import numpy as np
import sqlalchemy as sa

from cluster_workers.db.assignments import read_assignment
from cluster_workers.db.layers import read_layer
from cluster_workers.db.trees import read_tree, sorted_member_ids


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

"""A stored result read back with its tree, rows in the clustered sample's order.

What ``recut``, ``sweep``, ``assign`` and ``density`` start from: the result's
summary, its stored tree (:mod:`cluster_workers.db.trees`), each row's embedding
id and stored medoid, and the members' vectors read back as the worker read
them. Read only; knows nothing of HDBSCAN beyond the stored edges.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass

import numpy as np
import sqlalchemy as sa

from cluster_workers.db.catalog import ResultSummary, find_result
from cluster_workers.db.texts import vectors_of
from cluster_workers.db.trees import StoredTree, read_tree, sorted_member_ids
from cluster_workers.db.vectors import fetch_vectors
from cluster_workers.errors import ConfigError, DatabaseError


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

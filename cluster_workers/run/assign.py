"""``assign``: embeddings outside a result's sample joined to that frozen clustering by HDBSCAN's own rule.

The source result stays as it is. The new result holds the frozen sample (its
labels, medoids and probabilities unchanged) and every other embedding of the
same model chosen by ``--downsample``/``--offset``/``--experiment``, labelled by
:func:`cluster_workers.engines.predict.approximate_predict` against the sample
(exact neighbours, the sample's prediction core distances, its condensed tree
re-cut from the stored MST). Written in one transaction under the run lock,
with a ``clusteringassignment`` row saying which rows were frozen and which
assigned. The new rows are read and predicted a block at a time.
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass, field
from typing import Callable

import numpy as np
import sqlalchemy as sa
from loguru import logger

from cluster_workers import stopping
from cluster_workers.db.attached import (
    Source,
    encode_assignment,
    load_source,
    member_vectors,
    old_cluster_codes,
    read_assignment,
    sorted_positions,
    write_assignment,
)
from cluster_workers.db.catalog import ResultSummary
from cluster_workers.db.connect import db_error, make_engine
from cluster_workers.db.experiment import iter_vector_blocks
from cluster_workers.db.lock import run_lock
from cluster_workers.db.results import matching_results, write_results
from cluster_workers.engines import HDBSCANParams, l2_normalise
from cluster_workers.engines.cores import core_distances
from cluster_workers.engines.predict import approximate_predict, prediction_tree
from cluster_workers.engines.query import SampleIndex, sample_index
from cluster_workers.engines.tree import cut_tree
from cluster_workers.errors import ConfigError, DatabaseError
from cluster_workers.run.worker import ModelResult, peak_rss_mb

RULE = "hdbscan.prediction.approximate_predict (2 x min_samples exact neighbours, mutual reachability, condensed tree)"


@dataclass
class Frozen:
    """The source result as prediction needs it: vectors, core distances, labels and the condensed tree's arrays."""

    source: Source
    index: SampleIndex  # the sample's vectors (L2-normalised), indexed for queries
    prediction_cores: np.ndarray
    labels: np.ndarray  # the cut's labels (hdbscan's numbering)
    tree: object  # PredictionTree
    params: HDBSCANParams
    cores_computed: bool  # the source predates stored core distances: computed from its sample now


@dataclass
class Assigned:
    """The rows assigned, in the order read."""

    ids: list = field(default_factory=list)
    labels: list = field(default_factory=list)
    probabilities: list = field(default_factory=list)
    nearest: list = field(default_factory=list)
    cores: list = field(default_factory=list)
    ties: int = 0
    recomputed: int = 0
    already_in_sample: int = 0
    read: float = 0.0  # sum over rows of the share of the sample each was screened against

    def arrays(self) -> tuple[np.ndarray, ...]:
        def cat(parts: list, shape: tuple, dtype: object) -> np.ndarray:
            return np.concatenate(parts) if parts else np.empty(shape, dtype=dtype)

        return (cat(self.ids, (0, 16), np.uint8), cat(self.labels, (0,), np.int64), cat(self.probabilities, (0,), np.float64),
                cat(self.nearest, (0,), np.int64), cat(self.cores, (0,), np.float64))  # fmt: skip


def freeze(conn: sa.Connection, result_id: str) -> Frozen:
    """The source result, its sample's vectors and what prediction needs; a clear error for what cannot be a source."""
    source = load_source(conn, result_id)
    if read_assignment(conn, source.summary.id) is not None:
        raise ConfigError(f"result {source.summary.id.hex[:8]} was made by assign: assign against its source "
                          f"{source.parameters.get('assigned_from', '?')[:8]} instead")  # fmt: skip
    params = HDBSCANParams(**source.parameters["engine_parameters"])
    vectors, _how = member_vectors(conn, source, np.arange(source.n))
    vectors = l2_normalise(vectors)
    cores = source.tree.cores
    computed = cores is None
    prediction = core_distances(vectors, params.min_samples).prediction if computed else cores[1]
    cut = cut_tree(source.tree.edges, params)
    codes, _ = old_cluster_codes(source)
    if not _same_partition(codes, cut.labels):
        raise DatabaseError(f"result {source.summary.id.hex[:8]}: its stored memberships are not the partition its tree gives")
    return Frozen(source, sample_index(vectors), prediction, cut.labels, prediction_tree(cut.condensed, cut.labels), params,
                  computed)  # fmt: skip


def _same_partition(a: np.ndarray, b: np.ndarray) -> bool:
    pairs = np.unique(np.column_stack([a, b]), axis=0)
    return len(pairs) == len(np.unique(a)) == len(np.unique(b))


def predict_blocks(conn: sa.Connection, frozen: Frozen, downsample: int, offset: int, experiment: str | None,
                   block_rows: int, on_rows: Callable[[int], object] | None = None) -> Assigned:  # fmt: skip
    """Every embedding of the model at ``downsample``/``offset`` not in the frozen sample, predicted a block at a time."""
    sample = np.ascontiguousarray(frozen.source.embedding_ids).view("V16").ravel()
    out = Assigned()
    model = frozen.source.summary.model
    for block in iter_vector_blocks(conn, model, downsample, offset, experiment, block_rows):
        stopping.check("during assign", "nothing was written")
        new = ~np.isin(np.ascontiguousarray(block.ids).view("V16").ravel(), sample)
        out.already_in_sample += int((~new).sum())
        if not new.any():
            continue
        data = l2_normalise(np.ascontiguousarray(block.data[new]))
        p = approximate_predict(data, frozen.index, frozen.prediction_cores, frozen.tree, frozen.params.min_samples)
        out.ids.append(block.ids[new])
        out.labels.append(p.labels)
        out.probabilities.append(p.probabilities)
        out.nearest.append(p.nearest)
        out.cores.append(p.core_distances)
        out.ties += p.ties
        out.recomputed += p.recomputed
        out.read += p.read_share * data.shape[0]
        if on_rows is not None:
            on_rows(int(new.sum()))
    return out


def assigned_result(frozen: Frozen, got: Assigned, settings: dict, timings: dict, started: float) -> tuple[ModelResult, dict]:
    """The new result (frozen rows first, then the assigned) and its ``clusteringassignment`` values."""
    source = frozen.source
    ids, labels, probabilities, nearest, cores = got.arrays()
    all_ids = np.concatenate([source.embedding_ids, ids])
    all_labels = np.concatenate([frozen.labels, labels]).astype(np.int32)
    row_of = {source.embedding_ids[r].tobytes(): r for r in range(source.n)}
    medoid_rows = np.empty(int(frozen.labels.max()) + 1 if frozen.labels.size else 0, dtype=np.int64)
    for label in range(medoid_rows.size):  # the source's medoid of each cluster, unchanged
        member = int(np.flatnonzero(frozen.labels == label)[0])
        medoid_rows[label] = row_of[source.old_medoids[member].tobytes()]
    sample_cores = source.tree.core_distances if source.tree.core_distances is not None else np.full(source.n, np.nan)
    p = source.parameters
    parameters = {
        **{k: p[k] for k in ("min_cluster_size", "min_samples", "cluster_selection_epsilon", "cluster_selection_method",
                             "engine", "engine_parameters", "metric", "dimension", "medoid") if k in p},
        **settings,  # the rows it holds: the frozen sample and those of this rule (at downsample 1: every embedding)
        "frozen_sample": {k: p[k] for k in ("downsample", "offset", "experiment", "sample") if k in p},
        "assigned_from": str(source.summary.id),
        "assign": {**settings, "rule": RULE, "frozen": int(source.n), "assigned": int(labels.size),
                   "assigned_outliers": int(np.sum(labels < 0)), "ties": got.ties, "recomputed": got.recomputed,
                   "read_share": round(got.read / max(1, labels.size), 6),
                   "already_in_sample": got.already_in_sample, "cores_computed": frozen.cores_computed, "timings": timings},
        "sample_count": int(all_ids.shape[0]),
    }  # fmt: skip
    result = ModelResult(source.summary.model, all_ids, all_labels, medoid_rows, parameters, started, time.time(),
                         probabilities=np.concatenate([source.tree.probabilities, probabilities]))  # fmt: skip
    assigned = np.r_[np.zeros(source.n, dtype=bool), np.ones(labels.size, dtype=bool)]
    values = encode_assignment(source.summary.id, sorted_positions(all_ids), assigned, result.probabilities,
                    np.concatenate([sample_cores, cores]), np.r_[np.full(source.n, -1), nearest])  # fmt: skip
    return result, values


@dataclass
class AssignReport:
    source: ResultSummary
    result_id: uuid.UUID | None  # None: not written (an equal result exists)
    existing: uuid.UUID | None
    frozen: int
    assigned: int
    assigned_outliers: int
    ties: int
    timings: dict
    peak_rss_mb: float

    def as_dict(self) -> dict:
        return {"source": str(self.source.id), "result": str(self.result_id) if self.result_id else None,
                "existing": str(self.existing) if self.existing else None, "frozen": self.frozen, "assigned": self.assigned,
                "assigned_outliers": self.assigned_outliers, "ties": self.ties, "timings": self.timings,
                "peak_rss_mb": round(self.peak_rss_mb, 1)}  # fmt: skip


def assign(url: str, result_id: str, downsample: int = 1, offset: int = 0, experiment: str | None = None,
           db_limits: dict | None = None, force: bool = False, block_rows: int = 65_536,
           on_rows: Callable[[int], object] | None = None) -> AssignReport:  # fmt: skip
    """Write a new result: ``result_id``'s frozen sample and the embeddings it did not hold, assigned to it."""
    db_limits = db_limits or {}
    with run_lock(url, db_limits):
        engine = make_engine(url, **db_limits)
        try:
            with engine.begin() as conn:
                started, t0 = time.time(), time.perf_counter()
                frozen = freeze(conn, result_id)
                settings = {"downsample": downsample, "offset": offset, **({"experiment": experiment} if experiment else {})}
                key = {"assigned_from": str(frozen.source.summary.id), **settings}
                same = [rid for rid, _ in matching_results(conn, frozen.source.summary.model, key)]
                if same and not force:
                    logger.info(
                        "{}: an assignment with these settings exists: {} (use --force to replace)",
                        frozen.source.summary.model,
                        same[-1],
                    )
                    return AssignReport(frozen.source.summary, None, same[-1], frozen.source.n, 0, 0, 0, {}, peak_rss_mb())
                freeze_s = time.perf_counter() - t0
                t0 = time.perf_counter()
                got = predict_blocks(conn, frozen, downsample, offset, experiment, block_rows, on_rows)
                timings = {"freeze_s": round(freeze_s, 3), "predict_s": round(time.perf_counter() - t0, 3)}
                result, values = assigned_result(frozen, got, settings, timings, started)
                stopping.check("before the commit", "the transaction was rolled back, nothing was written")
                t0 = time.perf_counter()
                new_id = uuid.uuid4()
                write_results(conn, [result], key, replace=force, result_ids=[new_id])
                write_assignment(conn, new_id, values)
                timings["write_s"] = round(time.perf_counter() - t0, 3)
        except sa.exc.SQLAlchemyError as exc:
            raise db_error(exc, url, "during assign") from exc
        finally:
            engine.dispose()
    a = result.parameters["assign"]
    return AssignReport(frozen.source.summary, new_id, None, a["frozen"], a["assigned"], a["assigned_outliers"], got.ties,
                        timings, peak_rss_mb())  # fmt: skip

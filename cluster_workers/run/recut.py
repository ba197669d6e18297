"""``recut``: new selection parameters on a result's stored tree, without reclustering.

For a fixed ``min_samples`` the mutual-reachability MST does not change; the
condensed tree (``min_cluster_size``), the selection method, epsilon and
``allow_single_cluster`` all act on it. So a result's stored tree
(:mod:`cluster_workers.db.attached`) gives exactly what a fresh ``cluster`` of the
same sample with the new values gives: labels, probabilities and GLOSH scores
from the same code (:func:`cluster_workers.engines.tree.cut_tree`), and medoids
by the same rule -- a cluster whose members and probabilities did not change
keeps its medoid; the others are computed from their members' vectors (read by
primary key, or by one pass over the sample when many are needed), in the
sample's row order (ties break as they did in the run).

``recut`` writes a new result in one transaction under the run lock, with the
source's sample fingerprint and a run key made as ``cluster`` makes it: the same
skip rule (an equal key on the same sample is not written twice unless forced).
``sweep`` (:mod:`cluster_workers.views.sweep`) cuts the same tree and writes nothing.
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass

import numpy as np
import sqlalchemy as sa
from loguru import logger

from cluster_workers import stopping
from cluster_workers.db.attached import Source, load_source, member_vectors, old_cluster_codes
from cluster_workers.db.catalog import ResultSummary
from cluster_workers.db.connect import db_error, make_engine
from cluster_workers.db.lock import run_lock
from cluster_workers.db.results import matching_results, write_results
from cluster_workers.engines import l2_normalise
from cluster_workers.engines.medoids import medoid_indices
from cluster_workers.engines.tree import cut_tree
from cluster_workers.run.params import ClusteringParams, requested_params
from cluster_workers.run.worker import ModelResult


def _kept_medoids(source: Source, labels: np.ndarray, probabilities: np.ndarray, same_rule: bool) -> np.ndarray:
    """Per new cluster, the row of the stored medoid when the cluster's members and their probabilities are
    unchanged (the medoid is then the same by its definition), else -1."""
    k = int(labels.max()) + 1 if labels.size else 0
    medoid_rows = np.full(k, -1, dtype=np.int64)
    if not same_rule:
        return medoid_rows
    codes, outlier = old_cluster_codes(source)
    old_sizes = np.bincount(codes)
    same_probabilities = probabilities == source.tree.probabilities
    order = np.argsort(labels, kind="stable")
    bounds = np.searchsorted(labels[order], np.arange(k + 1))
    for c in range(k):
        members = order[bounds[c] : bounds[c + 1]]
        code = codes[members[0]]
        if code == outlier or old_sizes[code] != members.size or not np.all(codes[members] == code):
            continue
        if np.all(same_probabilities[members]):
            is_medoid = np.all(source.embedding_ids[members] == source.old_medoids[members[0]], axis=1)
            medoid_rows[c] = members[np.argmax(is_medoid)] if is_medoid.any() else -1
    return medoid_rows


def _new_medoids(
    conn: sa.Connection, source: Source, rows: np.ndarray, labels: np.ndarray, probabilities: np.ndarray, rule: str
) -> tuple[np.ndarray, np.ndarray, str]:
    """Medoid rows of the clusters whose members are ``rows`` (row order kept: ties break as in the run)."""
    vectors, how = member_vectors(conn, source, rows)
    data = l2_normalise(vectors)
    clusters, local = np.unique(labels[rows], return_inverse=True)
    medoids, _ = medoid_indices(data, local.astype(np.int64), probabilities[rows], rule)
    return clusters, rows[medoids], how


def recut_result(conn: sa.Connection, source: Source, wanted: ClusteringParams) -> ModelResult:
    """The new result: cut, medoids (kept where nothing changed), parameters recorded as ``cluster`` records them."""
    started = time.time()
    t0 = time.perf_counter()
    tree_cut = cut_tree(source.tree.edges, wanted.engine_params(source.n))
    tree_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    old_rule = (source.parameters.get("medoid") or {}).get("rule")
    medoid_rows = _kept_medoids(source, tree_cut.labels, tree_cut.probabilities, same_rule=old_rule == wanted.medoid)
    kept = int(np.sum(medoid_rows >= 0))
    changed_rows = np.flatnonzero(np.isin(tree_cut.labels, np.flatnonzero(medoid_rows < 0)))
    vectors_read = "none"
    if changed_rows.size:
        clusters, rows, vectors_read = _new_medoids(
            conn, source, changed_rows, tree_cut.labels, tree_cut.probabilities, wanted.medoid
        )
        medoid_rows[clusters] = rows
    medoid_s = time.perf_counter() - t0
    p = source.parameters
    parameters = {
        **p,
        **wanted.sklearn_values(source.n),
        "engine_parameters": wanted.engine_params(source.n).as_dict(),
        "requested": wanted.key(),
        "medoid": {**(p.get("medoid") or {}), "rule": wanted.medoid},
        "recut": {"from": str(source.summary.id), "tree_s": round(tree_s, 3), "medoid_s": round(medoid_s, 3),
                  "medoids_kept": kept, "medoids_computed": int(medoid_rows.size) - kept, "vectors_read": vectors_read},
    }  # fmt: skip
    parameters.pop("run_key", None)
    return ModelResult(  # the shape the writer takes from a worker
        model=source.summary.model,
        embedding_ids=source.embedding_ids,
        labels=tree_cut.labels,
        medoid_rows=medoid_rows,
        parameters=parameters,
        started_at=started,
        completed_at=time.time(),
        probabilities=tree_cut.probabilities,
        outlier_scores=tree_cut.outlier_scores,
        tree=source.tree.edges,
        cores=source.tree.cores,
        timings={"tree_s": tree_s, "medoid_s": medoid_s},
    )


@dataclass
class RecutReport:
    source: ResultSummary
    result_id: uuid.UUID | None  # None: not written (an equal result exists)
    existing: uuid.UUID | None
    clusters: int
    outlier_share: float
    timings: dict


def recut(url: str, result_id: str, overrides: dict, db_limits: dict, force: bool = False) -> RecutReport:
    """Write a new result cut from ``result_id``'s tree with ``overrides``; one transaction, under the run lock."""
    with run_lock(url, db_limits):
        engine = make_engine(url, **db_limits)
        try:
            with engine.begin() as conn:
                source = load_source(conn, result_id)
                wanted = requested_params(source, dict(overrides))
                key = wanted.run_key(source.parameters.get("downsample"))
                if source.parameters.get("experiment"):
                    key["experiment"] = source.parameters["experiment"]
                sample = source.parameters.get("sample")
                same = [
                    rid for rid, params in matching_results(conn, source.summary.model, key) if params.get("sample") == sample
                ]
                if same and not force:
                    logger.info(
                        "{}: a result with these parameters on the same sample exists: {} (use --force to replace)",
                        source.summary.model,
                        same[-1],
                    )
                    return RecutReport(source.summary, None, same[-1], 0, 0.0, {})
                result = recut_result(conn, source, wanted)
                stopping.check("before the commit", "the transaction was rolled back, nothing was written")
                new_id = uuid.uuid4()
                write_results(conn, [result], key, replace=force, result_ids=[new_id])
        except sa.exc.SQLAlchemyError as exc:
            raise db_error(exc, url, "during the recut") from exc
        finally:
            engine.dispose()
    labels = result.labels
    return RecutReport(source.summary, new_id, None, int(labels.max()) + 1 if labels.size else 0,
                       float(np.mean(labels < 0)) if labels.size else 0.0, result.timings)  # fmt: skip

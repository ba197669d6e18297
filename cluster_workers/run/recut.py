"""``recut`` and ``sweep``: new selection parameters on a result's stored tree, without reclustering.

For a fixed ``min_samples`` the mutual-reachability MST does not change; the
condensed tree (``min_cluster_size``), the selection method, epsilon and
``allow_single_cluster`` all act on it. So a result's stored tree
(:mod:`cluster_workers.db.trees`) gives exactly what a fresh ``cluster`` of the
same sample with the new values gives: labels, probabilities and GLOSH scores
from the same code (:func:`cluster_workers.engines.tree.cut_tree`), and medoids
by the same rule -- a cluster whose members and probabilities did not change
keeps its medoid; the others are computed from their members' vectors (read by
primary key, or by one pass over the sample when many are needed), in the
sample's row order (ties break as they did in the run).

``recut`` writes a new result in one transaction under the run lock, with the
source's sample fingerprint and a run key made as ``cluster`` makes it: the same
skip rule (an equal key on the same sample is not written twice unless forced).
``sweep`` writes nothing.
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass, replace

import numpy as np
import sqlalchemy as sa
from loguru import logger
from sklearn.metrics import adjusted_rand_score

from cluster_workers import stopping
from cluster_workers.db.connect import db_error, make_engine
from cluster_workers.db.lock import run_lock
from cluster_workers.db.memberships import vectors_of
from cluster_workers.db.catalog import ResultSummary, find_result
from cluster_workers.db.results import matching_results, write_results
from cluster_workers.db.trees import StoredTree, read_tree, sorted_member_ids
from cluster_workers.db.vectors import fetch_vectors
from cluster_workers.engines import l2_normalise
from cluster_workers.engines.medoids import medoid_indices
from cluster_workers.engines.tree import TreeCut, cut_tree
from cluster_workers.errors import ConfigError, DatabaseError
from cluster_workers.run.params import ClusteringParams
from cluster_workers.run.worker import ModelResult
from cluster_workers.db.connect import read_with


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
        return (f"result {summary.id.hex[:8]} ({summary.model}) is an evoc layer: it has layers, not an HDBSCAN tree to cut, "
                f"predict from or read core distances of; cluster the model with --engine fast for one")
    if p.get("assigned_from"):
        return (f"result {summary.id.hex[:8]} ({summary.model}) was made by assign and has no tree of its own: "
                f"use its source {str(p['assigned_from'])[:8]}")
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


def requested_params(source: Source, overrides: dict) -> ClusteringParams:
    """The source's requested values with ``overrides`` applied; ``min_samples`` pinned to the source's.

    A different ``min_samples`` is a different tree: refused with the command that makes one.
    """
    stored = dict(source.parameters.get("requested") or {})
    base = ClusteringParams(**{k: v for k, v in stored.items() if k in ClusteringParams.__dataclass_fields__})
    asked_ms = overrides.pop("min_samples", None)
    wanted = replace(base, **{k: v for k, v in overrides.items() if v is not None})
    had = int(source.parameters["min_samples"])
    if asked_ms is not None and asked_ms != had:
        raise ConfigError(
            f"min_samples {asked_ms} needs a new clustering (the tree was made with min_samples {had}): "
            f"cluster-workers cluster --model {source.summary.model} --downsample {source.parameters.get('downsample', '?')} "
            f"--min-samples {asked_ms}"
        )
    if wanted.users_values(source.n)["min_samples"] != had:
        wanted = replace(wanted, min_samples=had)  # "auto" would follow the new min_cluster_size: keep the tree's
    return wanted


def cut(source: Source, wanted: ClusteringParams) -> TreeCut:
    return cut_tree(source.tree.edges, wanted.engine_params(source.n))


def old_cluster_codes(source: Source) -> tuple[np.ndarray, int]:
    """Per row, a code for its cluster in the stored result (equal codes: one cluster), and the outliers' code."""
    keys, codes = np.unique(source.old_medoids, axis=0, return_inverse=True)
    outlier = np.flatnonzero(~keys.any(axis=1))
    return codes.ravel(), int(outlier[0]) if outlier.size else -1


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
        sample = fetch_vectors(conn, source.summary.model, int(downsample), expected=source.n, skip_bad=True,
                               experiment=source.parameters.get("experiment"), offset=int(source.parameters.get("offset", 0)))
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


def _new_medoids(conn: sa.Connection, source: Source, rows: np.ndarray, labels: np.ndarray, probabilities: np.ndarray, rule: str) -> tuple[np.ndarray, np.ndarray, str]:
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
    tree_cut = cut(source, wanted)
    tree_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    old_rule = (source.parameters.get("medoid") or {}).get("rule")
    medoid_rows = _kept_medoids(source, tree_cut.labels, tree_cut.probabilities, same_rule=old_rule == wanted.medoid)
    kept = int(np.sum(medoid_rows >= 0))
    changed_rows = np.flatnonzero(np.isin(tree_cut.labels, np.flatnonzero(medoid_rows < 0)))
    vectors_read = "none"
    if changed_rows.size:
        clusters, rows, vectors_read = _new_medoids(conn, source, changed_rows, tree_cut.labels, tree_cut.probabilities, wanted.medoid)
        medoid_rows[clusters] = rows
    medoid_s = time.perf_counter() - t0
    p = source.parameters
    parameters = {
        **p,
        **wanted.users_values(source.n),
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
                same = [rid for rid, params in matching_results(conn, source.summary.model, key) if params.get("sample") == sample]
                if same and not force:
                    logger.info("{}: a result with these parameters on the same sample exists: {} (use --force to replace)",
                                source.summary.model, same[-1])
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


@dataclass(frozen=True)
class SweepRow:
    min_cluster_size: int
    cluster_selection_epsilon: float
    cluster_selection_method: str
    clusters: int
    outlier_share: float
    largest_share: float
    ari_vs_stored: float

    def as_dict(self) -> dict:
        return self.__dict__.copy()


def sweep_source(source: Source, epsilons: list[float], sizes: list[int], method: str | None = None) -> list[SweepRow]:
    """Every (min_cluster_size, epsilon) on the stored tree; ARI against the stored labels (outliers one group)."""
    stored = old_cluster_codes(source)[0]
    base = requested_params(source, {"cluster_selection_method": method})
    sizes = sizes or [int(source.parameters["min_cluster_size"])]
    epsilons = epsilons or [float(source.parameters["cluster_selection_epsilon"])]
    rows = []
    for size in sizes:
        for eps in epsilons:
            stopping.check("during the sweep")
            wanted = requested_params(source, {"min_cluster_size": size, "cluster_selection_epsilon": eps,
                                               "cluster_selection_method": base.cluster_selection_method})  # fmt: skip
            labels = cut(source, wanted).labels
            users = wanted.users_values(source.n)
            counts = np.bincount(labels[labels >= 0]) if np.any(labels >= 0) else np.zeros(1, dtype=np.int64)
            rows.append(SweepRow(users["min_cluster_size"], users["cluster_selection_epsilon"], users["cluster_selection_method"],
                                 int(labels.max()) + 1, float(np.mean(labels < 0)), float(counts.max() / labels.size),
                                 float(adjusted_rand_score(stored, labels))))  # fmt: skip
    return rows


def sweep(url: str, result_id: str, epsilons: list[float], sizes: list[int], method: str | None = None,
          busy_timeout: float = 30.0) -> tuple[ResultSummary, list[SweepRow]]:  # fmt: skip
    """The sweep's table for one result; writes nothing."""
    source = read_with(url, busy_timeout, lambda conn: load_source(conn, result_id))
    return source.summary, sweep_source(source, epsilons, sizes, method)


def parse_values(text: str | None, kind: type) -> list:
    """``"5,10,20"``, a range ``"5:2000:log20"`` (20 log-spaced values, rounded for integers, repeats dropped) or
    ``"0.1:0.5:0.1"`` (start, stop, step; stop included)."""
    if not text:
        return []
    try:
        if ":" not in text:
            return [kind(part) for part in text.split(",") if part.strip()]
        start, stop, how = text.split(":")
        lo, hi = float(start), float(stop)
        if how.startswith("log"):
            values = np.geomspace(lo, hi, int(how[3:]))
        else:
            values = np.arange(lo, hi + float(how) / 2, float(how))
    except ValueError:
        raise ConfigError(f"expected numbers: 5,10,20 or a range like 5:2000:log20 or 0.1:0.5:0.1, got {text!r}") from None
    if lo <= 0 and how.startswith("log") or len(values) == 0:
        raise ConfigError(f"a range needs positive bounds and at least one value, got {text!r}")
    out = [kind(round(v)) if kind is int else kind(round(v, 12)) for v in values]
    return list(dict.fromkeys(out))


@dataclass(frozen=True)
class Plateau:
    """Where the number of clusters and the outlier share change least along ``min_cluster_size``."""

    epsilon: float
    min_cluster_size_from: int
    min_cluster_size_to: int
    clusters: tuple[int, int]
    outlier_share: tuple[float, float]
    change: float  # the window's summed |change of log(clusters + 1)| + |change of outlier share|

    def as_dict(self) -> dict:
        return self.__dict__.copy()


def flattest(rows: list[SweepRow], window: int | None = None) -> list[Plateau]:
    """Per epsilon, the window of consecutive ``min_cluster_size`` settings (a quarter of them, at least 3) over
    which clusters and outlier share change least; none for fewer than 3 settings. Settings with fewer than 2
    clusters are left out (one cluster of everything is trivially flat)."""
    out = []
    for eps in sorted({r.cluster_selection_epsilon for r in rows}):
        line = sorted((r for r in rows if r.cluster_selection_epsilon == eps and r.clusters >= 2), key=lambda r: r.min_cluster_size)
        w = window or max(3, -(-len(line) // 4))
        if len(line) < max(3, w):
            continue
        steps = np.abs(np.diff(np.log([r.clusters + 1 for r in line]))) + np.abs(np.diff([r.outlier_share for r in line]))
        sums = np.convolve(steps, np.ones(w - 1), mode="valid")
        i = int(np.argmin(sums))
        part = line[i : i + w]
        out.append(Plateau(eps, part[0].min_cluster_size, part[-1].min_cluster_size,
                           (min(r.clusters for r in part), max(r.clusters for r in part)),
                           (min(r.outlier_share for r in part), max(r.outlier_share for r in part)), float(sums[i])))  # fmt: skip
    return out

"""One embedding model, in its own process: own connection -> fetch -> validate -> cluster -> arrays out.

Everything that crosses the process boundary is plain: a :class:`ModelTask` in
(model name, database URL, settings values) and a :class:`ModelResult` out
(numpy arrays of ids, labels and medoid rows, plus timings).
"""

from __future__ import annotations

import json
import os
import resource
import socket
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from cluster_workers.db.connect import make_engine
from cluster_workers.db.experiment import Vectors, fetch_vectors
from cluster_workers.db.snapshot import SampleBound, enter_snapshot
from cluster_workers.engines import HDBSCANParams, l2_normalise
from cluster_workers.engines.medoids import medoid_indices
from cluster_workers.engines.registry import engine_versions, get_engine
from cluster_workers.errors import ClusterWorkersError, WorkerFailed
from cluster_workers.run import faults
from cluster_workers.run.params import ClusteringParams


@dataclass(frozen=True)
class ModelTask:
    """What a worker needs to cluster one model (picklable, no engine or session)."""

    model: str
    database_url: str
    downsample: int
    expected_count: int
    experiment: str | None = None  # only this experiment's runs
    offset: int = 0  # the text steps whose number is offset modulo downsample
    clustering: ClusteringParams = field(default_factory=ClusteringParams)
    db_limits: dict = field(default_factory=dict)  # make_engine's bounded waits (Settings.db_limits)
    skip_bad_vectors: bool = False
    bound: SampleBound = field(default_factory=SampleBound)  # read what the coordinator counted, nothing newer
    threads: int = 1
    status_dir: str = ""  # where the worker reports its pid and phase for the coordinator's monitor


@dataclass
class ModelResult:
    """A model's clustering: row i of ``embedding_ids`` has label ``labels[i]``."""

    model: str
    embedding_ids: np.ndarray  # (n, 16) uint8 UUID bytes
    labels: np.ndarray  # (n,) int32, -1 = outlier
    medoid_rows: np.ndarray  # (n_clusters,) row index of each cluster's medoid
    parameters: dict
    started_at: float
    completed_at: float
    timings: dict = field(default_factory=dict)
    peak_rss_mb: float = 0.0
    pid: int = 0
    probabilities: np.ndarray | None = None  # (n,) HDBSCAN membership probabilities
    outlier_scores: np.ndarray | None = None  # (n,) GLOSH scores
    tree: np.ndarray | None = None  # (n - 1, 3) the MST the labels were cut from (rows as in embedding_ids)
    cores: tuple[np.ndarray, np.ndarray] | None = None  # (n,) each: the fit's and the prediction's core distances
    layer: int = 0  # the evoc engine's layer (0 the finest); HDBSCAN results have one, layer 0
    layer_values: "LayerValues | None" = (
        None  # an evoc layer's persistence and place in the layer tree (strengths: probabilities)
    )
    more_layers: list["ModelResult"] = field(default_factory=list)  # layer 0 carries the run's coarser layers

    def all_layers(self) -> list["ModelResult"]:
        """This result and the coarser layers it carries (one result per layer, finest first)."""
        return [self, *self.more_layers]

    @property
    def n(self) -> int:
        return int(self.labels.size)

    @property
    def n_clusters(self) -> int:
        return int(self.medoid_rows.size)

    @property
    def outlier_share(self) -> float:
        return float(np.mean(self.labels < 0)) if self.labels.size else 0.0


@dataclass
class LayerValues:
    """What an evoc layer keeps besides its labels and strengths (``probabilities``): its place in the run."""

    layers: int  # how many the run made
    persistence: float  # the package's score of the layer
    parents: np.ndarray  # (clusters, 3) int64: medoid row, parent layer, parent's medoid row (-1, -1: none)


def status_file(status_dir: str, model: str) -> Path:
    """The model's status file: a readable name plus a hash of the exact name, so "a/b" and "a_b" never collide."""
    import hashlib

    safe = "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in model)[:60]
    return Path(status_dir) / f"{safe}-{hashlib.sha1(model.encode()).hexdigest()[:10]}.json"


def threads_file(status_dir: str) -> Path:
    """Where the coordinator says how many threads each running worker may use now."""
    return Path(status_dir) / "threads"


class CoreShare:
    """Follows the coordinator's thread count (BLAS and numba) between blocks of work; cheap to call often."""

    def __init__(self, status_dir: str, threads: int) -> None:
        self.path = threads_file(status_dir) if status_dir else None
        self.threads = 0
        self.apply(threads)

    def apply(self, threads: int) -> None:
        from threadpoolctl import threadpool_limits

        if threads == self.threads:
            return
        threadpool_limits(limits=threads)
        try:
            import numba

            numba.set_num_threads(max(1, min(threads, numba.config.NUMBA_NUM_THREADS)))
        except ImportError:
            pass
        self.threads = threads

    def __call__(self) -> int:
        if self.path is not None:
            try:
                self.apply(max(1, int(self.path.read_text())))
            except (OSError, ValueError):
                pass
        return self.threads


def report_phase(task: ModelTask, phase: str, started: float) -> None:
    """Tell the coordinator's monitor our pid and phase (best effort: a plain JSON file)."""
    if not task.status_dir:
        return
    path = status_file(task.status_dir, task.model)
    tmp = path.with_suffix(f".{os.getpid()}.tmp")
    status = {"model": task.model, "pid": os.getpid(), "host": socket.gethostname(), "phase": phase, "started": started}
    try:
        tmp.write_text(json.dumps(status))
        os.replace(tmp, path)
    except OSError:
        pass  # a worker on another machine cannot see the coordinator's folder: no phase reports then


def peak_rss_mb() -> float:
    """This process's peak resident memory in MiB."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 1024 / 1024 if sys.platform == "darwin" else peak / 1024


def cluster_model(task: ModelTask) -> ModelResult:
    """Fetch the model's sampled vectors with a connection of our own and cluster them.

    Any error comes back as :class:`WorkerFailed` naming the model and the phase (plain text, so it pickles).
    """
    phase = ["starting"]
    try:
        return _cluster_model(task, phase)
    except ClusterWorkersError as exc:
        raise WorkerFailed(str(exc)) from None
    except Exception as exc:
        detail = str(getattr(exc, "orig", exc)).strip().splitlines()
        raise WorkerFailed(
            f"worker for model {task.model} failed while {phase[0]}: {type(exc).__name__}: {detail[0] if detail else ''}"
        ) from None


def _fetch(task: ModelTask) -> Vectors:
    """The model's sample, read with a connection of our own inside the run's snapshot."""
    engine = make_engine(task.database_url, read_only=True, **task.db_limits)
    try:
        with engine.connect() as conn:
            faults.fetch_started(conn)
            conn = enter_snapshot(conn, task.bound)
            return fetch_vectors(
                conn,
                task.model,
                task.downsample,
                task.expected_count,
                task.skip_bad_vectors,
                task.bound,
                task.experiment,
                task.offset,
            )
    finally:
        engine.dispose()


def _parameters(task: ModelTask, vectors: Vectors, params: HDBSCANParams, info: dict, medoid_info: dict) -> dict:
    """What the result records of how it was made (``clusteringresult.parameters``)."""
    wanted = task.clustering
    n, dim = vectors.data.shape
    fidelity = info.pop("fidelity", None)
    return {
        "downsample": task.downsample,
        **({"offset": task.offset} if task.offset else {}),
        **({"experiment": task.experiment} if task.experiment else {}),
        **wanted.sklearn_values(n),
        "metric": "euclidean on L2-normalised vectors",
        "min_samples_convention": "scikit-learn (the point itself counts); engine_parameters hold hdbscan's",
        "engine": wanted.engine,
        "engine_parameters": params.as_dict(),
        "engine_info": info,
        "fidelity": fidelity,
        "medoid": medoid_info,
        "sample_count": int(n),
        "skipped_bad_vectors": int(vectors.skipped),
        "dimension": int(dim),
        "requested": wanted.key(),
        "versions": engine_versions(wanted.engine),
    }


def _cluster_model(task: ModelTask, phase: list[str]) -> ModelResult:
    from threadpoolctl import threadpool_limits

    started = time.time()
    report_phase(task, "fetch", started)
    phase[0] = "fetching"
    t0 = time.perf_counter()
    vectors = _fetch(task)
    fetch_s = time.perf_counter() - t0
    n, dim = vectors.data.shape

    report_phase(task, "cluster", started)
    phase[0] = "clustering"
    faults.clustering_started()
    wanted = task.clustering
    if wanted.engine == "evoc":
        return _cluster_layers(task, vectors, started, fetch_s)
    params = wanted.engine_params(n)
    t0 = time.perf_counter()
    with threadpool_limits(limits=task.threads):
        share = CoreShare(task.status_dir, task.threads)
        data = l2_normalise(vectors.data)
        result = get_engine(wanted.engine)(data, params, on_block=share)
        cluster_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        medoids, medoid_info = medoid_indices(data, result.labels, result.probabilities, wanted.medoid)
    medoid_s = time.perf_counter() - t0
    report_phase(task, "done", started)
    info = dict(result.info)
    info.pop("engine", None)
    return ModelResult(
        model=task.model,
        embedding_ids=vectors.ids,
        labels=result.labels,
        medoid_rows=medoids,
        parameters=_parameters(task, vectors, params, info, medoid_info),
        started_at=started,
        completed_at=time.time(),
        timings={"fetch_s": fetch_s, "cluster_s": cluster_s, "medoid_s": medoid_s, **info.get("timings", {})},
        peak_rss_mb=peak_rss_mb(),
        pid=os.getpid(),
        probabilities=result.probabilities,
        outlier_scores=result.outlier_scores,
        tree=result.tree,
        cores=None if result.cores is None else (result.cores.core, result.cores.prediction),
    )


def _cluster_layers(task: ModelTask, vectors: Vectors, started: float, fetch_s: float) -> ModelResult:
    """The evoc engine: one result per layer (finest first), each with its medoids and strengths."""
    from threadpoolctl import threadpool_limits

    from cluster_workers.engines.evoc import cluster_layers

    wanted = task.clustering
    params = wanted.evoc_params()
    n, dim = vectors.data.shape
    data = l2_normalise(vectors.data)
    t0 = time.perf_counter()
    layers = cluster_layers(data, params)  # at the fixed thread count of `params`, not the worker's share
    cluster_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    with threadpool_limits(limits=task.threads):
        medoids = [medoid_indices(data, lab, s, wanted.medoid) for lab, s in zip(layers.labels, layers.strengths)]
    medoid_s = time.perf_counter() - t0
    report_phase(task, "done", started)
    completed = time.time()
    results = []
    for k, (labels, strengths) in enumerate(zip(layers.labels, layers.strengths)):
        rows, medoid_info = medoids[k]
        # a cluster and its parent named by their medoid rows: the same rows in every layer of the run
        parents = np.array(
            [(rows[c], pl, medoids[pl][0][pc] if pl >= 0 else -1) for c, (pl, pc) in enumerate(layers.parents[k])], dtype=np.int64
        ).reshape(-1, 3)
        parameters = _layer_parameters(task, vectors, layers, k, medoid_info)
        results.append(
            ModelResult(
                model=task.model,
                embedding_ids=vectors.ids,
                labels=labels,
                medoid_rows=rows,
                parameters=parameters,
                started_at=started,
                completed_at=completed - 1e-3 * k,  # layer 0 written last: the newest, listed first
                timings={"fetch_s": fetch_s, "cluster_s": cluster_s, "medoid_s": medoid_s, **layers.info["timings"]},
                peak_rss_mb=peak_rss_mb(),
                pid=os.getpid(),
                probabilities=strengths,
                layer=k,
                layer_values=LayerValues(len(layers), layers.persistence[k], parents),
            )
        )
    first = results[0]
    first.more_layers = results[1:]
    return first


def _layer_parameters(task: ModelTask, vectors: Vectors, layers, k: int, medoid_info: dict) -> dict:  # type: ignore[no-untyped-def]
    """What an evoc layer's result records of how it was made (``parameters``)."""
    from importlib.metadata import version

    from cluster_workers.engines.evoc import library_version

    params = task.clustering.evoc_params()
    n, dim = vectors.data.shape
    given = params.library_kwargs(n)
    return {
        "downsample": task.downsample,
        **({"offset": task.offset} if task.offset else {}),
        **({"experiment": task.experiment} if task.experiment else {}),
        "engine": "evoc",
        "layer": k,
        "layers": len(layers),
        "persistence": layers.persistence[k],
        "best_layer": layers.info["best_layer"],  # the package's labels_: the layer of highest persistence
        **{key: given[key] for key in ("noise_level", "base_min_cluster_size", "min_samples")},
        "metric": "cosine (EVoC on L2-normalised float32 vectors)",
        "engine_parameters": {**given, "threads": params.threads},
        "reproducible": {
            "threads": params.threads,
            "random_state": params.random_state,
            "rule": "numba and BLAS threads fixed for the fit: the same count gives the same labels on any machine",
        },
        "medoid": medoid_info,
        "sample_count": int(n),
        "skipped_bad_vectors": int(vectors.skipped),
        "dimension": int(dim),
        "requested": task.clustering.key(),
        "versions": {**{lib: version(lib) for lib in ("numpy", "numba", "scikit-learn")}, "evoc": library_version()},
    }

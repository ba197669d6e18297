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
from cluster_workers.db.vectors import fetch_vectors
from cluster_workers.engines import engine_versions, get_engine, l2_normalise, resolve_params
from cluster_workers.engines.medoids import medoid_indices
from cluster_workers.errors import ClusterWorkersError, WorkerFailed


@dataclass(frozen=True)
class ModelTask:
    """What a worker needs to cluster one model (picklable, no engine or session)."""

    model: str
    database_url: str
    downsample: int
    expected_count: int
    engine: str = "reference"
    min_cluster_size: int = 0
    min_samples: int = 0
    epsilon: float = 0.0
    allow_single_cluster: bool = False
    cluster_selection_method: str = "eom"
    busy_timeout: float = 30.0
    skip_bad_vectors: bool = False
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

    @property
    def n(self) -> int:
        return int(self.labels.size)

    @property
    def n_clusters(self) -> int:
        return int(self.medoid_rows.size)

    @property
    def outlier_share(self) -> float:
        return float(np.mean(self.labels < 0)) if self.labels.size else 0.0


def status_file(status_dir: str, model: str) -> Path:
    safe = "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in model)
    return Path(status_dir) / f"{safe}.json"


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

    Any error comes back as :class:`WorkerFailed` naming the model (plain text, so it pickles).
    """
    try:
        return _cluster_model(task)
    except ClusterWorkersError as exc:
        raise WorkerFailed(str(exc)) from None
    except Exception as exc:
        detail = str(getattr(exc, "orig", exc)).strip().splitlines()
        raise WorkerFailed(f"worker for model {task.model} failed: {type(exc).__name__}: {detail[0] if detail else ''}") from None


def _cluster_model(task: ModelTask) -> ModelResult:
    from threadpoolctl import threadpool_limits

    started = time.time()
    report_phase(task, "fetch", started)
    t0 = time.perf_counter()
    engine = make_engine(task.database_url, busy_timeout=task.busy_timeout, read_only=True)
    try:
        with engine.connect() as conn:
            vectors = fetch_vectors(conn, task.model, task.downsample, task.expected_count, task.skip_bad_vectors)
    finally:
        engine.dispose()
    fetch_s = time.perf_counter() - t0
    n, dim = vectors.data.shape

    report_phase(task, "cluster", started)
    params = resolve_params(
        n,
        task.min_cluster_size,
        task.min_samples,
        task.epsilon,
        task.allow_single_cluster,
        task.cluster_selection_method,
    )
    t0 = time.perf_counter()
    if task.engine == "fast":
        import faiss  # its OpenMP pool sizes k-means; give it our share of the cores

        faiss.omp_set_num_threads(task.threads)
    with threadpool_limits(limits=task.threads):
        data = l2_normalise(vectors.data)
        labels = get_engine(task.engine)(data, params)
        cluster_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        medoids = medoid_indices(data, labels)
    medoid_s = time.perf_counter() - t0
    report_phase(task, "done", started)

    parameters = {
        "downsample": task.downsample,
        **params.as_dict(),
        "metric": "euclidean on L2-normalised vectors",
        "engine": task.engine,
        "medoid": "member with the least summed squared distance to its cluster",
        "sample_count": int(n),
        "skipped_bad_vectors": int(vectors.skipped),
        "dimension": int(dim),
        "requested": {
            "min_cluster_size": task.min_cluster_size,
            "min_samples": task.min_samples,
        },
        "versions": engine_versions(task.engine),
    }
    return ModelResult(
        model=task.model,
        embedding_ids=vectors.ids,
        labels=labels,
        medoid_rows=medoids,
        parameters=parameters,
        started_at=started,
        completed_at=time.time(),
        timings={"fetch_s": fetch_s, "cluster_s": cluster_s, "medoid_s": medoid_s},
        peak_rss_mb=peak_rss_mb(),
        pid=os.getpid(),
    )

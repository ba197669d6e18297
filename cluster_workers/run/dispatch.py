"""Dispatch: one worker process per model (joblib, loky or dask), watched by a monitor thread, results gathered.

The memory plan decides how many run at once; a worker that dies, raises or passes its timeout stops them all
and comes back as one :class:`~cluster_workers.errors.WorkerFailed` naming the model.
"""

from __future__ import annotations

import contextlib
import os
import queue
import shutil
import tempfile
import threading
import time
from typing import Callable, Iterator

from joblib import Parallel, delayed, parallel_config
from loguru import logger

from cluster_workers import stopping
from cluster_workers.db.snapshot import SampleBound
from cluster_workers.errors import ClusterWorkersError, ConfigError, Interrupted, WorkerFailed
from cluster_workers.run.config import Settings
from cluster_workers.run.memory_plan import available_bytes, plan_memory
from cluster_workers.run.monitor import WorkerMonitor
from cluster_workers.run.worker import ModelResult, ModelTask, cluster_model

RUN_SLACK_S = 60.0  # beyond timeout x rounds: starting processes and gathering results


def make_tasks(
    models: list[str], settings: Settings, after: dict[str, int], threads: int, status_dir: str, bound: SampleBound | None = None
) -> list[ModelTask]:
    return [
        ModelTask(
            model=m,
            database_url=settings.database_url,
            downsample=settings.downsample,
            offset=settings.offset,
            experiment=settings.experiment or None,
            expected_count=after[m],
            clustering=settings.clustering,
            db_limits=settings.db_limits,
            skip_bad_vectors=settings.skip_bad_vectors,
            threads=threads,
            status_dir=status_dir,
            bound=bound or SampleBound(),
        )
        # largest first, so the longest job starts at once when workers < models
        for m in sorted(models, key=lambda m: -after[m])
    ]


def _quiet_resource_tracker() -> None:
    """Start loky's resource tracker with its stderr on /dev/null (once per process).

    When a run is stopped, the tracker can print a traceback of its own while it
    deletes joblib's temporary folder a second time (a known, harmless loky
    race: joblib issue #1595); the user must see our one-line message, not that.
    """
    from joblib.externals.loky.backend import resource_tracker

    if getattr(resource_tracker._resource_tracker, "_pid", None) is not None:
        return
    saved = os.dup(2)
    try:
        with open(os.devnull, "w") as devnull:
            os.dup2(devnull.fileno(), 2)
            resource_tracker.ensure_running()
    finally:
        os.dup2(saved, 2)
        os.close(saved)


@contextlib.contextmanager
def _backend(backend: str, scheduler: str) -> Iterator[object]:
    """loky: nothing to set up. dask: a ``distributed.Client`` on ``scheduler``, joblib's dask backend."""
    if backend != "dask":
        yield None
        return
    try:
        from distributed import Client
    except ImportError:
        raise ConfigError("--backend dask needs dask.distributed: pip install 'cluster-workers[dask]'") from None
    if not scheduler:
        raise ConfigError("--backend dask needs --scheduler ADDRESS (e.g. tcp://10.0.0.5:8786)")
    try:
        client = Client(scheduler, timeout=30)
    except OSError as exc:
        raise WorkerFailed(f"cannot reach the dask scheduler at {scheduler}: {exc}") from None
    try:
        logger.info("dask scheduler {} with {} worker(s)", scheduler, len(client.scheduler_info().get("workers", {})))
        with parallel_config(backend="dask"):
            yield client
    finally:
        client.close()


def _bounded(
    results: Iterator[ModelResult], monitor: WorkerMonitor, on_all_read: Callable[[], None] | None = None
) -> Iterator[ModelResult]:
    """Consume ``results`` in a helper thread so that a monitor verdict or a stop request ends the wait.

    joblib's dask backend can wait forever on a task whose worker died; the
    monitor notices (dead pid, timeout) and we stop waiting. A stop request
    (Ctrl-C, SIGTERM) is noticed within a quarter of a second. ``on_all_read``
    is called once, on this (the caller's) thread, as soon as every worker has
    read its sample.
    """
    box: queue.Queue = queue.Queue()

    def consume() -> None:
        try:
            for item in results:
                box.put(("result", item))
            box.put(("done", None))
        except BaseException as exc:  # noqa: BLE001 - handed to the waiting thread
            box.put(("error", exc))

    threading.Thread(target=consume, name="result-consumer", daemon=True).start()
    pending = on_all_read

    def notice_all_read() -> None:
        nonlocal pending
        if pending is not None and monitor.all_read():
            pending()
            pending = None

    while True:
        stopping.check(f"while clustering {monitor.running_description()}")
        notice_all_read()
        try:
            kind, value = box.get(timeout=0.25)
        except queue.Empty:
            if monitor.timed_out():
                raise WorkerFailed(monitor.timed_out()) from None
            continue
        if kind == "done":
            return
        if kind == "error":
            raise value
        notice_all_read()  # a worker reports "done" before its result arrives: the last result never waits for a poll
        yield value


# Reads in one piece: the backend set-up and the result loop in one place; failures are translated in _worker_failure.
def dispatch(
    tasks: list[ModelTask],
    n_jobs: int,
    monitor: WorkerMonitor,
    backend: str = "loky",
    on_result: Callable[[ModelResult], None] | None = None,
    scheduler: str = "",
    on_all_read: Callable[[], None] | None = None,
) -> list[ModelResult]:
    """Run every task in its own worker process; the first failure stops them all.

    ``on_all_read`` is called once every worker has read its sample (a worker on
    another machine cannot say so through the status folder: then it is not called).
    """
    results: list[ModelResult] = []
    monitor.start()
    try:
        with _backend(backend, scheduler) as client:
            if client is not None:  # remote workers cannot be killed from here: drop the connection instead
                monitor.on_timeout = client.close
            cores = os.cpu_count() or 1
            # loky caps BLAS/numba threads at cores // n_jobs for good; lift the cap so finished workers'
            # cores can be handed on (each worker starts at its share and follows monitor.share_cores)
            options = {"max_nbytes": None} if backend == "loky" else {}
            # the dask backend has had bugs with unordered generators: take results in order there
            return_as = "generator_unordered" if backend == "loky" else "generator"
            if backend == "loky":
                _quiet_resource_tracker()
            threads_cap = (
                parallel_config(backend="loky", inner_max_num_threads=cores) if backend == "loky" else contextlib.nullcontext()
            )
            with threads_cap:
                parallel = Parallel(n_jobs=n_jobs, return_as=return_as, **options)
            jobs = (delayed(cluster_model)(task) for task in tasks)
            stream = _bounded(parallel(jobs), monitor, on_all_read)
            for result in stream:
                if monitor.timed_out():
                    break
                monitor.finished(result.model)
                results.append(result)
                if backend == "loky" and monitor.unfinished():
                    threads = monitor.share_cores(cores, n_jobs)
                    logger.info("{} finished: the running worker(s) may use {} thread(s) each now", result.model, threads)
                if on_result:
                    on_result(result)
        if monitor.timed_out():
            raise WorkerFailed(monitor.timed_out())
    except Interrupted:
        monitor.kill_all("interrupted")
        raise
    except ConfigError:
        raise
    except ClusterWorkersError as exc:
        monitor.kill_all("a worker failed")
        raise WorkerFailed(monitor.timed_out() or str(exc)) from exc
    except Exception as exc:  # TerminatedWorkerError (a worker died), KilledWorker (dask), ...
        raise _worker_failure(exc, monitor) from exc
    finally:
        monitor.stop()
    return results


def _worker_failure(exc: Exception, monitor: WorkerMonitor) -> ClusterWorkersError:
    """One line for a worker that died or raised something of its own: which model, which phase, nothing written."""
    stopped = stopping.wait(0.5)  # Ctrl-C reaches the workers too: their death is the stop, not a crash
    reason = monitor.failure_reason()
    monitor.kill_all("a worker failed")
    if stopped:
        return Interrupted(
            f"{stopping.signal_name()}: interrupted while clustering {monitor.running_description()}; nothing was written"
        )
    if reason:
        return WorkerFailed(reason)
    if type(exc).__name__ == "TerminatedWorkerError":  # killed before it reported which model it had
        return WorkerFailed(
            f"a worker process died (killed, out of memory or crashed) while running {monitor.running_description()}; "
            "nothing was written"
        )
    detail = str(exc).strip().splitlines()[-1] if str(exc).strip() else type(exc).__name__
    return WorkerFailed(f"worker for {monitor.running_description()} failed: {type(exc).__name__}: {detail}; nothing was written")


# Reads in one piece: plan, tasks, monitor and dispatch in order; each step is a call.
def cluster_models(
    settings: Settings,
    models: list[str],
    counts: dict[str, int],
    deadline: float | None = None,
    heartbeat_s: float = 30.0,
    on_result: Callable[[ModelResult], None] | None = None,
    bound: SampleBound | None = None,
    dimensions: dict[str, int] | None = None,
    on_all_read: Callable[[], None] | None = None,
) -> tuple[list[ModelResult], int]:
    """Cluster ``models`` in worker processes; returns the results and the threads each worker had.

    With ``dimensions`` (per model), the memory plan decides how many workers
    run at once (largest models first), or refuses before any worker starts.
    ``on_all_read``: called once every worker has read its sample.
    """
    cpus = os.cpu_count() or 1
    n_jobs = min(len(models), settings.workers or cpus)
    if dimensions:
        models, n_jobs = _fit_memory(settings, models, counts, dimensions, n_jobs)
    threads = max(1, cpus // n_jobs)
    status_dir = tempfile.mkdtemp(prefix="cluster_workers_")
    try:
        tasks = make_tasks(models, settings, counts, threads, status_dir, bound)
        logger.info(
            "clustering {} model(s) with engine={} in {} worker process(es), {} thread(s) each",
            len(tasks),
            settings.engine,
            n_jobs,
            threads,
        )
        # each model may take ``timeout`` once it has started; the run as a whole never takes longer than the
        # rounds of models that implies, even if a worker dies before it could report (its model has no status)
        rounds = -(-len(tasks) // max(1, n_jobs))
        implied = time.monotonic() + settings.timeout * rounds + RUN_SLACK_S
        deadline = implied if deadline is None else min(deadline, implied)
        monitor = WorkerMonitor(status_dir, [t.model for t in tasks], settings.timeout, deadline, heartbeat_s)

        def _log_result(result: ModelResult) -> None:
            logger.info(
                "{}: {:,} vectors, fetch {:.2f} s, clustering {:.2f} s, {} clusters, {:.1%} outliers, worker peak {:.0f} MiB",
                result.model,
                result.n,
                result.timings["fetch_s"],
                result.timings["cluster_s"],
                result.n_clusters,
                result.outlier_share,
                result.peak_rss_mb,
            )
            engine_info = result.parameters.get("engine_info") or {}
            certificate = engine_info.get("certificate")
            if certificate:
                logger.info(
                    "{}: {:,} exact copies clustered once; core distances certified for all {:,} distinct vectors "
                    "({:,} by the float32 screen, {:,} recomputed in float64)",
                    result.model,
                    engine_info.get("copies", 0),
                    certificate["certified"],
                    certificate["proven_by_screen"],
                    certificate["recomputed"],
                )
                if certificate["certified"] < certificate["rows"]:
                    logger.warning(
                        "{}: {:,} core distances are not certified", result.model, certificate["rows"] - certificate["certified"]
                    )
            for layer in result.more_layers:
                logger.info(
                    "{}: evoc layer {}: {} clusters, {:.1%} outliers, persistence {:.1f}",
                    result.model,
                    layer.layer,
                    layer.n_clusters,
                    layer.outlier_share,
                    layer.parameters.get("persistence", 0.0),
                )
            if result.parameters.get("skipped_bad_vectors"):
                logger.warning("{}: left out {} bad vector(s)", result.model, result.parameters["skipped_bad_vectors"])
            if on_result:
                on_result(result)

        results = dispatch(tasks, n_jobs, monitor, settings.backend, _log_result, settings.scheduler, on_all_read)
        return results, threads
    finally:
        shutil.rmtree(status_dir, ignore_errors=True)


def _fit_memory(
    settings: Settings, models: list[str], counts: dict[str, int], dimensions: dict[str, int], n_jobs: int
) -> tuple[list[str], int]:
    """The memory plan: models largest first, and how many workers fit at once (logged; refuses if none fits)."""
    samples = {m: (counts[m], dimensions[m], settings.clustering.engine_params(counts[m]).min_samples) for m in models}
    memory = plan_memory(samples, settings.engine, n_jobs, available_bytes(settings.memory_limit_mb))
    for line in memory.describe():
        logger.info(line)
    if memory.workers < n_jobs:
        logger.warning(
            "memory: {} worker(s) at once instead of {}, so that the largest models fit together", memory.workers, n_jobs
        )
    return memory.order, min(n_jobs, memory.workers)

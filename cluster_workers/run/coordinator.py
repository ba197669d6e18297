"""The run: SQL counts -> skip rules -> one worker process per model (joblib) -> gather -> one commit.

The coordinator never touches vectors: workers fetch their own. It watches the
workers with a monitor thread of its own (per-model wall-clock timeout, an
optional overall deadline, a heartbeat line) and kills them when a limit
passes; any failure means nothing is written.
"""

from __future__ import annotations

import contextlib
import os
import queue
import shutil
import tempfile
import threading
import time
from dataclasses import dataclass, field
from typing import Callable, Iterator

import sqlalchemy as sa
from joblib import Parallel, delayed, parallel_config
from loguru import logger

from cluster_workers import stopping

from cluster_workers.run import faults
from cluster_workers.run.config import Settings
from cluster_workers.db import indexes, sampling
from cluster_workers.db.connect import db_error, describe, enable_wal, make_engine
from cluster_workers.db.lock import run_lock
from cluster_workers.db.results import ResultConflict, matching_results, write_results
from cluster_workers.db.detect import schema_of
from cluster_workers.db.snapshot import SampleBound, run_snapshot
from cluster_workers.errors import ClusterWorkersError, ConfigError, DatabaseError, Interrupted, WorkerFailed
from cluster_workers.run.memory_plan import available_bytes, plan_memory
from cluster_workers.run.monitor import WorkerMonitor
from cluster_workers.run.worker import ModelResult, ModelTask, cluster_model, peak_rss_mb


@dataclass
class RunReport:
    """What a run did, for the log, the CLI and the benchmark."""

    before: dict[str, int] = field(default_factory=dict)
    after: dict[str, int] = field(default_factory=dict)
    skipped: dict[str, str] = field(default_factory=dict)
    fingerprints: dict[str, dict] = field(default_factory=dict)  # per model: the counted sample's count and digest
    results: list[ModelResult] = field(default_factory=list)
    written: dict[str, int] = field(default_factory=dict)
    timings: dict[str, float] = field(default_factory=dict)
    peak_rss_mb: float = 0.0
    threads_per_worker: int = 1
    dimensions: dict[str, int] = field(default_factory=dict)  # per model, from one stored vector


RUN_SLACK_S = 60.0  # beyond timeout x rounds: starting processes and gathering results


def run_key(settings: Settings) -> dict:
    """The settings that define a result: a second run with the same key is skipped unless forced."""
    key = settings.clustering.run_key(settings.downsample)
    if settings.offset:  # offset 0 is the sample every earlier result was made from: its key unchanged
        key["offset"] = settings.offset
    return {**key, "experiment": settings.experiment} if settings.experiment else key


def check_tables(conn: sa.Connection) -> None:
    """Recognise the schema (one line naming what is missing for each, if neither) and log which it is."""
    logger.info("database schema: {}", schema_of(conn).describe())


def plan(conn: sa.Connection, settings: Settings, report: RunReport, bound: SampleBound | None = None) -> list[str]:
    """Counts per model (logged), skip rules applied; returns the models to cluster."""
    check_tables(conn)
    t0 = time.perf_counter()
    report.before, report.after, report.fingerprints = sampling.counts(conn, settings.downsample, bound, settings.experiment or None,
                                                                          settings.offset)
    calibration = sampling.calibration_runs(conn)
    logger.info("calibration runs left out (initial prompt {}): {}", "/".join(sampling.CALIBRATION_PROMPTS),
                ", ".join(f"{n} '{p}'" for p, n in sorted(calibration.items())) or "none found")
    if settings.experiment:
        logger.info("experiment {}: only its runs are sampled", settings.experiment)
    report.timings["counts_s"] = time.perf_counter() - t0
    models = sorted(report.before)
    if settings.models:
        unknown = [m for m in settings.models if m not in report.before]
        if unknown:
            raise ConfigError(
                f"unknown embedding model(s): {', '.join(unknown)}; the database has: {', '.join(models) or 'none'}"
            )
        models = [m for m in models if m in settings.models]
    logger.info("counts at downsample={} ({:.2f} s, in SQL):", settings.downsample, report.timings["counts_s"])
    if report.timings["counts_s"] > indexes.SLOW_COUNT_S and indexes.missing(conn):
        logger.info("hint: counting took {:.0f} s; `cluster-workers index` adds covering indexes that make it fast "
                    "on a cold cache (results do not change)", report.timings["counts_s"])
    for model in models:
        logger.info("  {:<14} {:>10,} embeddings -> {:>10,} sampled", model, report.before[model], report.after.get(model, 0))
    orphans = sampling.orphan_embeddings(conn, models)
    if orphans:
        listed = ", ".join(f"{emb_id} ({model})" for emb_id, model in orphans)
        if not settings.skip_bad_vectors:
            raise DatabaseError(
                f"embeddings whose invocation is missing: {listed}; fix the data or pass --skip-bad-vectors"
            )
        logger.warning("leaving out embeddings whose invocation is missing, e.g. {}", listed)
    key = run_key(settings)
    todo: list[str] = []
    fewest, rule = settings.min_samples_to_cluster, f"min_samples_to_cluster={settings.min_samples_to_cluster}"
    if settings.engine == "evoc" and settings.clustering.evoc_params().n_neighbors + 1 > fewest:
        neighbours = settings.clustering.evoc_params().n_neighbors
        fewest, rule = neighbours + 1, f"the n_neighbors + 1 = {neighbours + 1} the evoc engine needs"
    for model in models:
        n = report.after.get(model, 0)
        if n < fewest:
            report.skipped[model] = f"{n} sampled embeddings, fewer than {rule}"
            continue
        earlier = [] if settings.force else matching_results(conn, model, key)
        if any(params.get("sample") == report.fingerprints[model] for _, params in earlier):
            report.skipped[model] = "already clustered with the same parameters on the same sample (use --force to replace)"
            continue
        if earlier and schema_of(conn).layered:  # refused now, before any clustering, not at the commit
            was = earlier[-1][1].get("sample") or {}
            raise ResultConflict(
                f"model {model}: result {earlier[-1][0].hex[:8]} holds these parameters on an earlier sample "
                f"({was.get('count', 0):,} -> {n:,} embeddings), and the database allows one result per model, algorithm and "
                f"layer (its UNIQUE rule); pass --force to replace it in the same transaction"
            )
        if earlier:
            was = earlier[-1][1].get("sample") or {}
            logger.info(
                "{}: sample changed since the last result with these parameters: {:,} -> {:,} embeddings{}; clustering again",
                model, was.get("count", 0), n, "" if was.get("count") != n else " (same count, other embeddings)",
            )
        todo.append(model)
    for model, reason in report.skipped.items():
        logger.info("skip {}: {}", model, reason)
    return todo


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


# Longer than 50 lines on purpose: the backend set-up and the result loop in one place; failures are translated in _worker_failure.
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
            threads_cap = parallel_config(backend="loky", inner_max_num_threads=cores) if backend == "loky" else contextlib.nullcontext()
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
        return Interrupted(f"{stopping.signal_name()}: interrupted while clustering {monitor.running_description()}; nothing was written")
    if reason:
        return WorkerFailed(reason)
    if type(exc).__name__ == "TerminatedWorkerError":  # killed before it reported which model it had
        return WorkerFailed(
            f"a worker process died (killed, out of memory or crashed) while running {monitor.running_description()}; "
            "nothing was written"
        )
    detail = str(exc).strip().splitlines()[-1] if str(exc).strip() else type(exc).__name__
    return WorkerFailed(f"worker for {monitor.running_description()} failed: {type(exc).__name__}: {detail}; nothing was written")


# Longer than 50 lines on purpose: plan, tasks, monitor and dispatch in order; each step is a call.
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
            len(tasks), settings.engine, n_jobs, threads,
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
                result.model, result.n, result.timings["fetch_s"], result.timings["cluster_s"],
                result.n_clusters, result.outlier_share, result.peak_rss_mb,
            )
            engine_info = result.parameters.get("engine_info") or {}
            certificate = engine_info.get("certificate")
            if certificate:
                logger.info(
                    "{}: {:,} exact copies clustered once; core distances certified for all {:,} distinct vectors "
                    "({:,} by the float32 screen, {:,} recomputed in float64)",
                    result.model, engine_info.get("copies", 0), certificate["certified"],
                    certificate["proven_by_screen"], certificate["recomputed"],
                )
                if certificate["certified"] < certificate["rows"]:
                    logger.warning("{}: {:,} core distances are not certified", result.model, certificate["rows"] - certificate["certified"])
            for layer in result.more_layers:
                logger.info("{}: evoc layer {}: {} clusters, {:.1%} outliers, persistence {:.1f}", result.model, layer.layer,
                            layer.n_clusters, layer.outlier_share, layer.parameters.get("persistence", 0.0))
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
        logger.warning("memory: {} worker(s) at once instead of {}, so that the largest models fit together", memory.workers, n_jobs)
    return memory.order, min(n_jobs, memory.workers)


def commit(
    engine: sa.Engine, settings: Settings, results: list[ModelResult], fingerprints: dict[str, dict] | None = None
) -> dict[str, int]:
    """Write every result in one transaction (BEGIN IMMEDIATE on SQLite); all or nothing.

    An evoc result carries its coarser layers: each layer is written as a result of its own."""
    results = [layer for result in results for layer in result.all_layers()]
    for result in results:  # the sample each result was made from, so a later run can tell it changed
        if fingerprints and result.model in fingerprints:
            result.parameters["sample"] = fingerprints[result.model]
    total_rows = sum(r.n for r in results)
    logger.info("committing {} result(s), {:,} memberships in one transaction", len(results), total_rows)
    rolled_back = "the transaction was rolled back, nothing was written"

    def between_batches(_rows: int) -> None:
        faults.rows_written()
        stopping.check("during the commit", rolled_back)

    stopping.check("before the commit")
    try:
        enable_wal(engine)
        with engine.connect() as conn, conn.begin() as transaction:
            faults.commit_started(conn)
            written = write_results(conn, results, run_key(settings), replace=settings.force, progress=between_batches)
            stopping.check("during the commit", rolled_back)
            if settings.rollback:
                transaction.rollback()
                logger.info("rolled back as asked: every row was written, then the transaction undone; the database is unchanged")
    except sa.exc.SQLAlchemyError as exc:
        raise db_error(exc, settings.database_url, "during the commit") from exc
    if stopping.requested():  # COMMIT had returned: the results are in the database, say so
        logger.warning("{} arrived after the commit had finished: the results are written", stopping.signal_name())
    return written


def run_clustering(
    settings: Settings,
    deadline: float | None = None,
    heartbeat_s: float = 30.0,
    on_result: Callable[[ModelResult], None] | None = None,
    on_plan: Callable[[list[str]], None] | None = None,
) -> RunReport:
    """Cluster every eligible model and commit all results at once (or nothing).

    ``deadline`` (a ``time.monotonic()`` value) bounds the whole clustering phase.
    """
    t_start = time.perf_counter()
    report = RunReport()
    url = settings.database_url
    logger.info("database {}", describe(url))
    engine = make_engine(url, **settings.db_limits)
    try:
        with run_lock(url, settings.db_limits):
            _run_locked(engine, settings, report, deadline, heartbeat_s, on_result, on_plan)
    finally:
        engine.dispose()
    report.timings["total_s"] = time.perf_counter() - t_start
    report.peak_rss_mb = peak_rss_mb()
    logger.info("done in {:.2f} s, coordinator peak memory {:.0f} MiB", report.timings["total_s"], report.peak_rss_mb)
    return report


def _run_locked(
    engine: sa.Engine,
    settings: Settings,
    report: RunReport,
    deadline: float | None,
    heartbeat_s: float,
    on_result: Callable[[ModelResult], None] | None,
    on_plan: Callable[[list[str]], None] | None = None,
) -> None:
    """Plan, cluster, commit -- while this run holds the database's run lock.

    Counting and clustering happen inside one snapshot (see ``db.snapshot``), so
    the counts, every worker's sample and the fingerprints describe one database.
    """
    doing = "while counting"
    try:
        with run_snapshot(engine) as snapshot:
            conn, bound = snapshot.conn, snapshot.bound
            models = plan(conn, settings, report, bound)
            report.dimensions = sampling.vector_dimensions(conn, models)
            stopping.check("while counting")
            if bound.pg_snapshot is None:
                conn.rollback()  # SQLite: the rowid bound is enough; hold no lock while the workers run
            if deadline is not None and time.monotonic() > deadline:
                raise WorkerFailed("the run passed its time limit while counting; nothing was written")
            if on_plan:
                on_plan(models)
            if not models:
                logger.info("nothing to cluster")
                return
            logger.debug("workers read {}", bound.describe())
            doing = "while clustering"  # the snapshot stays open (PostgreSQL) until every worker has read its sample

            def release_snapshot() -> None:
                if snapshot.release():
                    logger.info("every worker has read its sample: snapshot {} released", bound.pg_snapshot)

            t0 = time.perf_counter()
            report.results, report.threads_per_worker = cluster_models(
                settings, models, report.after, deadline, heartbeat_s, on_result, bound, report.dimensions, release_snapshot
            )
            report.timings["clustering_wall_s"] = time.perf_counter() - t0
    except sa.exc.SQLAlchemyError as exc:
        raise db_error(exc, settings.database_url, doing) from exc
    t0 = time.perf_counter()
    report.written = commit(engine, settings, report.results, report.fingerprints)
    report.timings["commit_s"] = time.perf_counter() - t0
    rows = report.written["memberships"]
    logger.info("committed in {:.2f} s ({:,.0f} rows/s)", report.timings["commit_s"], rows / max(report.timings["commit_s"], 1e-9))

"""The run: SQL counts -> skip rules -> one worker process per model (joblib) -> gather -> one commit.

The coordinator never touches vectors: workers fetch their own. It watches the
workers with a monitor thread of its own (per-model wall-clock timeout, an
optional overall deadline, a heartbeat line) and kills them when a limit
passes; any failure means nothing is written.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import sqlalchemy as sa
from loguru import logger

from cluster_workers import stopping
from cluster_workers.db import experiment, indexes
from cluster_workers.db.catalog import dependency_refusal, dependents, find_results
from cluster_workers.db.connect import check_writable, db_error, describe, make_engine
from cluster_workers.db.detect import schema_of
from cluster_workers.db.lock import run_lock
from cluster_workers.db.results import matching_results
from cluster_workers.db.snapshot import SampleBound, run_snapshot
from cluster_workers.errors import ClusterWorkersError, DatabaseError, WorkerFailed
from cluster_workers.run.commit import commit, run_key
from cluster_workers.run.config import Settings
from cluster_workers.run.dispatch import cluster_models
from cluster_workers.run.worker import ModelResult, peak_rss_mb


@dataclass
class RunReport:
    """What a run did, for the log, the CLI and the benchmark."""

    embeddings: dict[str, int] = field(default_factory=dict)  # per model: every embedding, before downsampling
    sampled: dict[str, int] = field(default_factory=dict)  # per model: the embeddings the sample holds
    skipped: dict[str, str] = field(default_factory=dict)
    fingerprints: dict[str, dict] = field(default_factory=dict)  # per model: the counted sample's count and digest
    results: list[ModelResult] = field(default_factory=list)
    written: dict[str, int] = field(default_factory=dict)
    timings: dict[str, float] = field(default_factory=dict)
    peak_rss_mb: float = 0.0
    threads_per_worker: int = 1
    dimensions: dict[str, int] = field(default_factory=dict)  # per model, from one stored vector


def check_tables(conn: sa.Connection) -> None:
    """Recognise the schema (one line naming what is missing for each, if neither) and log which it is."""
    logger.info("database schema: {}", schema_of(conn).describe())


def plan(conn: sa.Connection, settings: Settings, report: RunReport, bound: SampleBound | None = None) -> list[str]:
    """Counts per model (logged), skip rules applied; returns the models to cluster."""
    check_tables(conn)
    t0 = time.perf_counter()
    report.embeddings, report.sampled, report.fingerprints = experiment.counts(
        conn, settings.downsample, bound, settings.experiment or None, settings.offset
    )
    calibration = experiment.calibration_runs(conn)
    logger.info(
        "calibration runs left out (initial prompt {}): {}",
        "/".join(experiment.CALIBRATION_PROMPTS),
        ", ".join(f"{n} '{p}'" for p, n in sorted(calibration.items())) or "none found",
    )
    if settings.experiment:
        logger.info("experiment {}: only its runs are sampled", settings.experiment)
    report.timings["counts_s"] = time.perf_counter() - t0
    models = sorted(report.embeddings)
    if settings.models:
        experiment.check_models(settings.models, report.embeddings)
        models = [m for m in models if m in settings.models]
    logger.info("counts at downsample={} ({:.2f} s, in SQL):", settings.downsample, report.timings["counts_s"])
    if report.timings["counts_s"] > indexes.SLOW_COUNT_S and indexes.missing(conn):
        logger.info(
            "hint: counting took {:.0f} s; `cluster-workers index` adds covering indexes that make it fast "
            "on a cold cache (results do not change)",
            report.timings["counts_s"],
        )
    for model in models:
        logger.info(
            "  {:<14} {:>10,} embeddings -> {:>10,} sampled", model, report.embeddings[model], report.sampled.get(model, 0)
        )
    orphans = experiment.orphan_embeddings(conn, models)
    if orphans:
        listed = ", ".join(f"{emb_id} ({model})" for emb_id, model in orphans)
        if not settings.skip_bad_vectors:
            raise DatabaseError(f"embeddings whose invocation is missing: {listed}; fix the data or pass --skip-bad-vectors")
        logger.warning("leaving out embeddings whose invocation is missing, e.g. {}", listed)
    key = run_key(settings)
    to_cluster: list[str] = []
    fewest, rule = settings.min_samples_to_cluster, f"min_samples_to_cluster={settings.min_samples_to_cluster}"
    evoc_needs = settings.clustering.evoc_params().n_neighbors + 1 if settings.engine == "evoc" else 0
    if evoc_needs > fewest:
        fewest, rule = evoc_needs, f"the n_neighbors + 1 = {evoc_needs} the evoc engine needs"
    for model in models:
        n = report.sampled.get(model, 0)
        if n < fewest:
            report.skipped[model] = f"{n} sampled embeddings, fewer than {rule}"
            continue
        if settings.force:  # what the commit will replace: refused now if other results were made from it
            replaced = [rid for rid, _ in matching_results(conn, model, key)]
            made_from = dependents(conn, replaced) if replaced else []
            if made_from and not settings.cascade:
                raise ClusterWorkersError(f"model {model}: " + dependency_refusal(find_results(conn, replaced), made_from))
        same_settings = [] if settings.force else matching_results(conn, model, key)
        if any(params.get("sample") == report.fingerprints[model] for _, params in same_settings):
            report.skipped[model] = "already clustered with the same parameters on the same sample (use --force to replace)"
            continue
        if same_settings:
            last_sample = same_settings[-1][1].get("sample") or {}
            logger.info(
                "{}: sample changed since the last result with these parameters: {:,} -> {:,} embeddings{}; clustering again",
                model,
                last_sample.get("count", 0),
                n,
                "" if last_sample.get("count") != n else " (same count, other embeddings)",
            )
        to_cluster.append(model)
    for model, reason in report.skipped.items():
        logger.info("skip {}: {}", model, reason)
    return to_cluster


COMPILE_SECONDS = {"fast": 15, "reference": 5, "evoc": 90}  # measured on the 2-core machine (docs/benchmarks.md)


@dataclass(frozen=True)
class FirstCompile:
    """The engine's numba code is compiled on its first use on a machine (then cached on disk): said before."""

    marker: Path

    def remember(self) -> None:
        try:
            self.marker.parent.mkdir(parents=True, exist_ok=True)
            self.marker.touch()
        except OSError:
            pass  # a cache directory we cannot write: the notice is said again next time, nothing worse


def first_compile(engine: str) -> FirstCompile | None:
    """Say, the first time an engine runs on this machine (this version, this numba), that it compiles first."""
    import numba

    from cluster_workers import __version__

    home = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "cluster_workers"
    marker = home / f"compiled-{engine}-{__version__}-numba{numba.__version__}"
    if marker.exists():
        return None
    logger.warning(
        "first run of the {} engine on this machine: its numba code compiles first, about {} s on 2 cores, once "
        "(then cached)", engine, COMPILE_SECONDS.get(engine, 30),
    )  # fmt: skip
    return FirstCompile(marker)


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
            if not settings.rollback:  # bench rolls back anyway: it may measure a database it cannot write
                check_writable(engine, url)
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
            report.dimensions = experiment.vector_dimensions(conn, models)
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
            compiled = first_compile(settings.engine)
            report.results, report.threads_per_worker = cluster_models(
                settings, models, report.sampled, deadline, heartbeat_s, on_result, bound, report.dimensions, release_snapshot
            )
            report.timings["clustering_wall_s"] = time.perf_counter() - t0
    except sa.exc.SQLAlchemyError as exc:
        raise db_error(exc, settings.database_url, doing) from exc
    t0 = time.perf_counter()
    report.written = commit(engine, settings, report.results, report.fingerprints)
    if compiled is not None:
        compiled.remember()
    report.timings["commit_s"] = time.perf_counter() - t0
    rows = report.written["memberships"]
    logger.info(
        "committed in {:.2f} s ({:,.0f} rows/s)", report.timings["commit_s"], rows / max(report.timings["commit_s"], 1e-9)
    )

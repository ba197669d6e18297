"""The command-line face: parses, calls one function, prints. No logic a test would need lives here."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import List, Optional

import typer
from loguru import logger

from cluster_workers import __version__, stopping
from cluster_workers.errors import ClusterWorkersError
from cluster_workers.progress import progress_bar, setup_logging

app = typer.Typer(
    help="Cluster sentence embeddings stored in SQL with HDBSCAN: one worker process per embedding model, one atomic commit.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

DEBUG = {"on": False}

DatabaseUrl = typer.Option(
    None, "--database-url", "--db-path", "-d", help="SQLAlchemy URL or SQLite file path (env CLUSTER_WORKERS_DATABASE_URL, or the config)."
)
ConfigFile = typer.Option(None, "--config", help="TOML config file (default: config/cluster_workers.toml).")
ResultId = typer.Argument(..., help="A result id (or a unique prefix) from `results`, `latest`, or `latest:MODEL`.")
AsJson = typer.Option(False, "--json", help="Print JSON instead of a table.")
Experiment = typer.Option(None, "--experiment", help="Only the runs of this experiment (its id); default every run.")


def fail(exc: BaseException) -> None:
    """Print a one-line error to stderr and exit non-zero (a traceback only with --debug)."""
    if DEBUG["on"]:
        logger.exception(exc)
    message = str(exc) if isinstance(exc, ClusterWorkersError) else f"{type(exc).__name__}: {exc}"
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(getattr(exc, "exit_code", 1))


def _version(value: bool) -> None:
    if value:
        typer.echo(f"cluster-workers {__version__}")
        raise typer.Exit()


@app.callback()
def main_options(
    version: bool = typer.Option(False, "--version", callback=_version, is_eager=True, help="Show the version and exit."),
    debug: bool = typer.Option(False, "--debug", help="Show tracebacks and debug logging."),
) -> None:
    DEBUG["on"] = debug
    setup_logging("DEBUG" if debug else "INFO")
    stopping.install()  # Ctrl-C / SIGTERM set a flag; every command stops at its next safe point (exit 130)


from cluster_workers.run.config import BACKENDS  # noqa: E402  the choices the help strings name, from where they are defined
from cluster_workers.run.params import ENGINES, MEDOID_RULES, SELECTION_METHODS  # noqa: E402

HDBSCAN_ENGINES = tuple(e for e in ENGINES if e != "evoc")


def _settings(config: Optional[Path], **overrides):  # type: ignore[no-untyped-def]
    from cluster_workers.run.config import load_settings

    return load_settings(config, overrides)


# Longer than 50 lines on purpose: the command's options are its documentation (typer); the body is one call and its printing.
@app.command()
def cluster(
    downsample: Optional[int] = typer.Option(None, "--downsample", "-n", min=1, help="Keep every N-th text output of every run."),
    offset: Optional[int] = typer.Option(None, "--offset", min=0, help="Keep the text outputs whose number is OFFSET modulo N (default 0)."),
    database_url: Optional[str] = DatabaseUrl,
    force: bool = typer.Option(False, "--force", help="Replace results already made with the same parameters."),
    epsilon: Optional[float] = typer.Option(None, "--epsilon", min=0.0, help="HDBSCAN cluster_selection_epsilon (default 0.5)."),
    min_cluster_size: Optional[int] = typer.Option(None, "--min-cluster-size", min=0, help="0 = max(2, int(n * 0.001)) (the default)."),
    min_samples: Optional[int] = typer.Option(
        None, "--min-samples", min=0,
        help="0 = same as min_cluster_size (the default). scikit-learn's convention: the point itself counts "
        "(the hdbscan package and the fast engine are given min_samples - 1).",
    ),
    allow_single_cluster: Optional[bool] = typer.Option(None, "--allow-single-cluster/--no-allow-single-cluster", help="Allow a single cluster (default: allow)."),
    medoid: Optional[str] = typer.Option(None, "--medoid", help=f"{' or '.join(MEDOID_RULES)}: {MEDOID_RULES[0]} is scikit-learn's store_centers='medoid' (default), mean the member nearest the centroid (the users' EVoC rows)."),
    min_samples_to_cluster: Optional[int] = typer.Option(None, "--min-samples-to-cluster", min=2, help="Skip models with fewer sampled embeddings."),
    model: Optional[List[str]] = typer.Option(None, "--model", "-m", help="Cluster only this embedding model (repeatable)."),
    experiment: Optional[str] = typer.Option(None, "--experiment", help="Sample only this experiment's runs (its id); default every run."),
    engine: Optional[str] = typer.Option(None, "--engine", help=f"One of {', '.join(ENGINES)}: fast = exact HDBSCAN (default), reference = the hdbscan package, evoc = the users' EVoC (every layer a result)."),
    engine_param: Optional[List[str]] = typer.Option(
        None, "--engine-param", "-p",
        help="KEY=VALUE for the evoc engine (repeatable): any evoc.EVoC parameter, or threads=K (the fit's fixed thread count, default 1).",
    ),
    workers: Optional[int] = typer.Option(None, "--workers", "-w", min=0, help="Worker processes at once (0 = one per model, at most the cores)."),
    timeout: Optional[float] = typer.Option(None, "--timeout", min=0.001, help="Seconds each model may take before all workers are stopped."),
    busy_timeout: Optional[float] = typer.Option(None, "--busy-timeout", min=0.0, help="Seconds to wait for a database locked by another writer."),
    backend: Optional[str] = typer.Option(None, "--backend", help=f"One of {', '.join(BACKENDS)}: loky runs workers on this machine, dask on a dask.distributed cluster."),
    scheduler: Optional[str] = typer.Option(None, "--scheduler", help="dask scheduler address, e.g. tcp://10.0.0.5:8786."),
    skip_bad_vectors: bool = typer.Option(False, "--skip-bad-vectors", help="Leave out (and count) bad vectors and orphan embeddings instead of failing."),
    memory_limit_mb: Optional[float] = typer.Option(
        None, "--memory-limit-mb", min=0.0,
        help="Memory the workers may use together (default: what the system reports available); the plan fits workers to it.",
    ),
    config: Optional[Path] = ConfigFile,
) -> None:
    """Cluster every embedding model's sampled vectors and commit all labels in one transaction."""
    from cluster_workers.run.coordinator import run_clustering

    settings = _settings(
        config,
        downsample=downsample,
        offset=offset,
        database_url=database_url,
        force=force or None,
        epsilon=epsilon,
        min_cluster_size=min_cluster_size,
        min_samples=min_samples,
        allow_single_cluster=allow_single_cluster,
        medoid=medoid,
        min_samples_to_cluster=min_samples_to_cluster,
        models=tuple(model) if model else None,
        experiment=experiment,
        engine=engine,
        engine_params=tuple(engine_param) if engine_param else None,
        workers=workers,
        timeout=timeout,
        busy_timeout=busy_timeout,
        skip_bad_vectors=skip_bad_vectors or None,
        backend=backend,
        scheduler=scheduler,
        memory_limit_mb=memory_limit_mb,
    )
    done: list[str] = []
    with progress_bar(0, "models clustered") as advance:

        def on_result(result) -> None:  # type: ignore[no-untyped-def]
            done.append(result.model)
            advance(len(done))

        report = run_clustering(settings, on_result=on_result, on_plan=lambda models: advance(0, len(models)))
    typer.echo(
        f"clustered {len(report.results)} model(s), skipped {len(report.skipped)}, "
        f"wrote {report.written.get('memberships', 0):,} memberships in {report.timings['total_s']:.1f} s"
    )


@app.command()
def results(
    database_url: Optional[str] = DatabaseUrl,
    as_json: bool = AsJson,
    stale_check: bool = typer.Option(
        True, "--stale-check/--no-stale-check", help="Compare each result's sample with the database now (one count per downsample)."
    ),
    config: Optional[Path] = ConfigFile,
) -> None:
    """List clustering results: id, model, sample count, clusters, outliers, duration, stale or current, parameters."""
    from cluster_workers.views import tables

    settings = _settings(config, database_url=database_url)
    rows = tables.load_results(settings.database, stale_check)
    typer.echo(json.dumps(tables.results_json(rows), indent=2) if as_json else tables.results_table(rows))


@app.command()
def show(
    result_id: str = ResultId,
    database_url: Optional[str] = DatabaseUrl,
    as_json: bool = AsJson,
    limit: int = typer.Option(20, "--limit", min=0, help="Show at most this many clusters (0 = all)."),
    config: Optional[Path] = ConfigFile,
) -> None:
    """Show one result's clusters: size and medoid text, largest first; outliers counted apart."""
    from cluster_workers.views import tables

    settings = _settings(config, database_url=database_url)
    summary, clusters = tables.load_clusters(settings.database, result_id)
    if as_json:
        typer.echo(json.dumps(tables.clusters_json(summary, clusters, limit), indent=2))
    else:
        typer.echo(tables.clusters_table(summary, clusters, limit))


@app.command()
def export(
    result_id: str = ResultId,
    output: Path = typer.Option(..., "--output", "-o", help="File to write: CSV, or Parquet when it ends in .parquet."),
    database_url: Optional[str] = DatabaseUrl,
    config: Optional[Path] = ConfigFile,
) -> None:
    """Write one result as a table: one row per sampled embedding with its run, step, cluster rank and text."""
    from cluster_workers.views.export import export_result

    settings = _settings(config, database_url=database_url)
    rows = export_result(settings.database, result_id, output)
    typer.echo(f"wrote {rows:,} rows to {output}")


@app.command()
def compare(
    downsample: Optional[int] = typer.Option(None, "--downsample", "-n", min=1, help="Only models clustered at this downsample."),
    result: Optional[List[str]] = typer.Option(None, "--result", "-r", help="Compare these two results (give it twice), whatever their parameters."),
    experiment: Optional[str] = Experiment,
    database_url: Optional[str] = DatabaseUrl,
    as_json: bool = AsJson,
    config: Optional[Path] = ConfigFile,
) -> None:
    """Do the models agree? ARI and AMI for each pair of models' newest current results with the same downsample,
    parameters and engine (stale results left out, and said so), and cluster matches."""
    from cluster_workers.views.compare import compare as compare_results, compare_table

    settings = _settings(config, database_url=database_url)
    found = compare_results(settings.database, downsample, results=result or None, experiment=experiment)
    typer.echo(json.dumps(found.as_dict(), indent=2) if as_json else compare_table(found))


@app.command()
def trajectories(
    result_id: str = ResultId,
    database_url: Optional[str] = DatabaseUrl,
    last_k: int = typer.Option(3, "--last-k", min=1, help="A run never settles when its last K sampled texts span more than one cluster."),
    by: str = typer.Option("prompt", "--by", help="Group runs by initial prompt (default) or network (their chain of models)."),
    experiment: Optional[str] = Experiment,
    as_json: bool = AsJson,
    limit: int = typer.Option(20, "--limit", min=0, help="Rows per table (0 = all)."),
    config: Optional[Path] = ConfigFile,
) -> None:
    """Where runs end and when they settle: per end cluster, and per initial prompt or network."""
    from cluster_workers.views.trajectories import load_trajectories, trajectories_table

    settings = _settings(config, database_url=database_url)
    found = load_trajectories(settings.database, result_id, last_k, by, experiment)
    typer.echo(json.dumps(found.as_dict(), indent=2) if as_json else trajectories_table(found, limit))


@app.command()
def transitions(
    result_id: str = ResultId,
    by: Optional[str] = typer.Option(None, "--by", help="Group runs by network (their chain of models) or prompt."),
    include_outliers: bool = typer.Option(False, "--include-outliers", help="Keep outliers in each run's sequence (default: dropped first)."),
    experiment: Optional[str] = Experiment,
    database_url: Optional[str] = DatabaseUrl,
    as_json: bool = AsJson,
    limit: int = typer.Option(20, "--limit", min=0, help="Rows per group (0 = all)."),
    config: Optional[Path] = ConfigFile,
) -> None:
    """Cluster transitions along each run: (from, to) counts over consecutive sampled texts, per group."""
    from cluster_workers.views import chains

    settings = _settings(config, database_url=database_url)
    found = chains.load_transitions(settings.database, result_id, by, include_outliers, experiment)
    typer.echo(json.dumps(found.rows(), indent=2) if as_json else chains.transitions_table(found, limit))


@app.command("fixed-points")
def fixed_points(
    min_repeats: int = typer.Option(3, "--min-repeats", min=1, help="Texts the constant tail must hold to count as a fixed point."),
    normalise: str = typer.Option("exact", "--normalise", help="exact (the default) or fold (whitespace collapsed, case folded)."),
    by: str = typer.Option("network", "--by", help="Summarise per network (default) or prompt."),
    experiment: Optional[str] = Experiment,
    database_url: Optional[str] = DatabaseUrl,
    as_json: bool = AsJson,
    limit: int = typer.Option(20, "--limit", min=0, help="Groups in the table (0 = all)."),
    config: Optional[Path] = ConfigFile,
) -> None:
    """Fixed points by exact caption repetition (no clustering, every text step): when each run's caption stops changing."""
    from cluster_workers.views import dynamics

    settings = _settings(config, database_url=database_url)
    found = dynamics.load_fixed_points(settings.database, min_repeats, normalise, by, experiment)
    typer.echo(json.dumps(found.as_dict(), indent=2) if as_json else dynamics.fixed_points_table(found, limit))


@app.command()
def density(
    result_id: str = ResultId,
    database_url: Optional[str] = DatabaseUrl,
    as_json: bool = AsJson,
    config: Optional[Path] = ConfigFile,
) -> None:
    """Is the outlier share real sparsity? The core distances' quantiles and histogram, Hartigan's dip test of their
    log (the diptest package), the outlier share per density decile, and caption length against outlier status."""
    from cluster_workers.views.density import density_table, load_density

    settings = _settings(config, database_url=database_url)
    summary, found = load_density(settings.database, result_id)
    typer.echo(json.dumps({"result": str(summary.id), "model": summary.model, **found.as_dict()}, indent=2) if as_json
               else density_table(summary, found))  # fmt: skip


@app.command()
def stability(
    model: Optional[List[str]] = typer.Argument(None, help="Embedding models (default: every model with a sample)."),
    downsample: int = typer.Option(..., "--downsample", "-n", min=2, help="Each sample keeps every N-th text output."),
    offsets: int = typer.Option(3, "--offsets", "-k", min=2, help="Disjoint samples: offsets 0 .. K-1."),
    engine: Optional[str] = typer.Option(None, "--engine", help=f"One of {', '.join(HDBSCAN_ENGINES)} (default: the config's)."),
    keep: bool = typer.Option(False, "--keep", help="Write each sample's clustering as a result (as cluster --offset R would)."),
    experiment: Optional[str] = Experiment,
    database_url: Optional[str] = DatabaseUrl,
    as_json: bool = AsJson,
    config: Optional[Path] = ConfigFile,
) -> None:
    """Are cluster assignments stable under subsampling? Clusters K disjoint samples (offsets) with the users'
    parameters, assigns each to every other clustering by HDBSCAN's prediction rule, and reports the agreement
    (ARI on the same points) of every pair and each model's worst. Writes nothing without --keep."""
    from cluster_workers.run.stability import stability as run_stability
    from cluster_workers.views.tables import stability_table

    settings = _settings(config, database_url=database_url, downsample=downsample, engine=engine, experiment=experiment)
    models = list(model) if model else _sampled_models(settings)
    found = run_stability(settings, models, offsets, keep)
    typer.echo(json.dumps(found.as_dict(), indent=2) if as_json else stability_table(found))


def _sampled_models(settings) -> list[str]:  # type: ignore[no-untyped-def]
    from cluster_workers.db import sampling

    after = settings.database.read(lambda conn: sampling.counts(conn, settings.downsample, None, settings.experiment or None)[1])
    return sorted(m for m, n in after.items() if n >= settings.min_samples_to_cluster)


CoreProbability = typer.Option(0.5, "--core-probability", min=0.0, max=1.0,
                               help="A member with at least this membership probability is a core step (1.0: only the densest).")
FillInitial = typer.Option("none", "--fill-initial", help="none: steps before a run's first core take no state; first: the first core's.")


@app.command()
def states(
    result_id: str = ResultId,
    core_probability: float = CoreProbability,
    fill_initial: str = FillInitial,
    experiment: Optional[str] = Experiment,
    database_url: Optional[str] = DatabaseUrl,
    as_json: bool = AsJson,
    config: Optional[Path] = ConfigFile,
) -> None:
    """Core-set milestoning: every run's state sequence (a transit step keeps the last core visited)."""
    from cluster_workers.views import dynamics

    settings = _settings(config, database_url=database_url)
    found = dynamics.load_states(settings.database, result_id, core_probability, fill_initial, experiment)
    if found.warning and not as_json:
        logger.warning(found.warning)
    typer.echo(json.dumps(found.as_dict(), indent=2) if as_json else dynamics.states_table(found))


@app.command()
def kinetics(
    result_id: str = ResultId,
    by: str = typer.Option("network", "--by", help="Per network (default), prompt, or all runs together."),
    core_probability: float = CoreProbability,
    fill_initial: str = FillInitial,
    min_stay: int = typer.Option(3, "--min-stay", min=1, help="A run is absorbed when its last stay holds at least this many sampled steps."),
    lag: int = typer.Option(1, "--lag", min=1, help="The Markov chain's lag, in sampled steps."),
    experiment: Optional[str] = Experiment,
    database_url: Optional[str] = DatabaseUrl,
    as_json: bool = AsJson,
    limit: int = typer.Option(20, "--limit", min=0, help="Groups in the table (0 = all)."),
    config: Optional[Path] = ConfigFile,
) -> None:
    """Kinetics of the states: jumps, dwell times (censored, tail test), absorption, transit share, a Markov chain."""
    from cluster_workers.views import dynamics

    settings = _settings(config, database_url=database_url)
    found = dynamics.load_kinetics(settings.database, result_id, by, core_probability, fill_initial, min_stay, lag, experiment)
    typer.echo(json.dumps(found.as_dict(), indent=2, default=float) if as_json else dynamics.kinetics_table(found, limit))


@app.command("run-lengths")
def run_lengths(
    result_id: str = ResultId,
    include_outliers: bool = typer.Option(False, "--include-outliers", help="Keep outliers in each run's sequence (default: dropped first)."),
    experiment: Optional[str] = Experiment,
    database_url: Optional[str] = DatabaseUrl,
    as_json: bool = AsJson,
    limit: int = typer.Option(20, "--limit", min=0, help="Clusters in the summary (0 = all)."),
    config: Optional[Path] = ConfigFile,
) -> None:
    """How long chains stay in a cluster: each run's run-length encoding (JSON: every stretch; table: per cluster)."""
    from cluster_workers.views import chains

    settings = _settings(config, database_url=database_url)
    found = chains.load_run_lengths(settings.database, result_id, include_outliers, experiment)
    typer.echo(json.dumps(found.rows(), indent=2) if as_json else chains.run_lengths_table(found, limit))


@app.command()
def delete(
    result_id: Optional[str] = typer.Argument(None, help="A result id (or unique prefix), `latest` or `latest:MODEL`."),
    model: Optional[str] = typer.Option(None, "--model", "-m", help="Delete every result of this embedding model that this tool made."),
    all_results: bool = typer.Option(False, "--all", help="Delete every clustering result this tool made (the users' own only by id)."),
    yes: bool = typer.Option(False, "--yes", "-y", help="Do not ask for confirmation (needed when stdin is not a terminal)."),
    database_url: Optional[str] = DatabaseUrl,
    config: Optional[Path] = ConfigFile,
) -> None:
    """Delete results and their memberships in one transaction (under the run lock); asks first on a terminal."""
    from cluster_workers.run import removal
    from cluster_workers.errors import ConfigError

    if sum([result_id is not None, model is not None, all_results]) != 1:
        raise ConfigError("delete takes exactly one of: RESULT_ID, --model NAME, --all")
    settings = _settings(config, database_url=database_url)
    chosen = removal.chosen_results(settings.database, result_id, model)
    theirs = removal.left_alone(settings.database, result_id, model)
    if theirs:
        typer.echo(f"leaving {theirs} result(s) this tool did not make (the users' own); delete one by naming its id", err=True)
    if not chosen:
        typer.echo("no clustering results to delete")
        return
    rows = sum(r.sample_count for r in chosen)
    what = f"{len(chosen)} result(s) with {rows:,} memberships: " + ", ".join(f"{r.id.hex[:8]} ({r.model})" for r in chosen[:10])
    what += f", … {len(chosen) - 10} more" if len(chosen) > 10 else ""
    if not yes:
        if not sys.stdin.isatty():
            raise ConfigError(f"refusing to delete {len(chosen)} result(s) without --yes: stdin is not a terminal")
        if not typer.confirm(f"delete {what}?", default=False):
            typer.echo("nothing deleted", err=True)
            raise typer.Exit(1)
    removed = removal.delete(settings.database_url, chosen, settings.db_limits)
    typer.echo(f"deleted {len(chosen)} result(s) and {removed:,} memberships: " + ", ".join(f"{r.id} ({r.model})" for r in chosen))


@app.command()
def recut(
    result_id: str = ResultId,
    min_cluster_size: Optional[int] = typer.Option(None, "--min-cluster-size", min=2, help="New min_cluster_size."),
    epsilon: Optional[float] = typer.Option(None, "--epsilon", min=0.0, help="New cluster_selection_epsilon."),
    method: Optional[str] = typer.Option(None, "--method", help=f"Cluster selection method: {' or '.join(SELECTION_METHODS)}."),
    allow_single_cluster: Optional[bool] = typer.Option(None, "--allow-single-cluster/--no-allow-single-cluster", help="Allow one cluster of everything."),
    min_samples: Optional[int] = typer.Option(None, "--min-samples", min=1, help="Only the tree's own value is accepted (another needs `cluster`)."),
    force: bool = typer.Option(False, "--force", help="Replace an existing result with the same parameters on the same sample."),
    database_url: Optional[str] = DatabaseUrl,
    config: Optional[Path] = ConfigFile,
) -> None:
    """Write a new result from a result's stored tree with new selection parameters: no reclustering, the same
    labels, probabilities and medoids as a fresh `cluster` of that sample (one transaction, under the run lock)."""
    from cluster_workers.run import recut as recut_mod

    overrides = {"min_cluster_size": min_cluster_size, "cluster_selection_epsilon": epsilon, "cluster_selection_method": method,
                 "allow_single_cluster": allow_single_cluster, "min_samples": min_samples}  # fmt: skip
    settings = _settings(config, database_url=database_url)
    done = recut_mod.recut(settings.database_url, result_id, overrides, settings.db_limits, force)
    if done.result_id is None:
        typer.echo(f"not written: result {done.existing} already has these parameters on the same sample (--force replaces it)")
        return
    typer.echo(
        f"wrote result {done.result_id} ({done.source.model}): {done.clusters} clusters, {done.outlier_share:.1%} outliers; "
        f"tree {done.timings['tree_s']:.2f} s, medoids {done.timings['medoid_s']:.2f} s"
    )


@app.command()
def assign(
    result_id: str = ResultId,
    downsample: int = typer.Option(1, "--downsample", "-n", min=1, help="Which embeddings to assign: every N-th text output (default 1: all)."),
    offset: int = typer.Option(0, "--offset", min=0, help="... those whose number is OFFSET modulo N."),
    experiment: Optional[str] = Experiment,
    force: bool = typer.Option(False, "--force", help="Replace an earlier assignment with the same settings."),
    database_url: Optional[str] = DatabaseUrl,
    as_json: bool = AsJson,
    config: Optional[Path] = ConfigFile,
) -> None:
    """Label the model's embeddings that a result's sample did not hold by HDBSCAN's own prediction rule
    (the hdbscan package's approximate_predict) against that frozen sample. Writes a new result holding the
    frozen sample unchanged and the assigned rows (one transaction); the source result is never changed."""
    from cluster_workers.run.assign import assign as assign_result

    settings = _settings(config, database_url=database_url)
    with progress_bar(0, "embeddings assigned") as advance:
        seen = [0]

        def on_rows(n: int) -> None:
            seen[0] += n
            advance(seen[0])

        done = assign_result(settings.database_url, result_id, downsample, offset, experiment, settings.db_limits, force,
                             on_rows=on_rows)  # fmt: skip
    if as_json:
        typer.echo(json.dumps(done.as_dict(), indent=2))
    elif done.result_id is None:
        typer.echo(f"not written: result {done.existing} already assigns these embeddings to {done.source.id} (--force replaces it)")
    else:
        rate = done.assigned / max(done.timings["predict_s"], 1e-9)
        typer.echo(
            f"wrote result {done.result_id} ({done.source.model}): {done.frozen:,} frozen from {done.source.id.hex[:8]} + "
            f"{done.assigned:,} assigned ({done.assigned_outliers / max(done.assigned, 1):.1%} outliers); "
            f"predict {done.timings['predict_s']:.2f} s ({rate:,.0f} rows/s), peak {done.peak_rss_mb:,.0f} MiB"
        )


@app.command()
def sweep(
    result_id: str = ResultId,
    epsilon: Optional[str] = typer.Option(None, "--epsilon", help="Comma-separated epsilons or a range START:STOP:STEP (default: the result's)."),
    min_cluster_size: Optional[str] = typer.Option(
        None, "--min-cluster-size", help="Comma-separated sizes or a range, e.g. 5:2000:log20 (20 log-spaced sizes); default: the result's."),
    method: Optional[str] = typer.Option(None, "--method", help=f"Cluster selection method: {' or '.join(SELECTION_METHODS)} (default: the result's)."),
    database_url: Optional[str] = DatabaseUrl,
    as_json: bool = AsJson,
    config: Optional[Path] = ConfigFile,
) -> None:
    """Try selection parameters on a result's stored tree; writes nothing. Per setting: clusters, outlier share,
    the largest cluster's share, and the ARI against the stored result; and where along min_cluster_size the
    clusters and outliers are flattest."""
    from cluster_workers.views import sweep as sweep_view
    from cluster_workers.views.tables import sweep_table

    settings = _settings(config, database_url=database_url)
    epsilons, sizes = sweep_view.parse_values(epsilon, float), sweep_view.parse_values(min_cluster_size, int)
    summary, rows = sweep_view.sweep(settings.database, result_id, epsilons, sizes, method)
    plateaus = sweep_view.flattest(rows)
    if as_json:
        typer.echo(json.dumps({"settings": [r.as_dict() for r in rows], "flattest": [p.as_dict() for p in plateaus]}, indent=2))
    else:
        typer.echo(sweep_table(summary, rows, plateaus))


@app.command()
def report(
    database_url: Optional[str] = DatabaseUrl,
    output: Path = typer.Option(Path("report"), "--output", "-o", help="Directory for report.html."),
    config: Optional[Path] = ConfigFile,
) -> None:
    """Write a self-contained HTML report: per result the size distribution and top clusters; models compared."""
    from cluster_workers.views.report import write_report

    settings = _settings(config, database_url=database_url)
    path = write_report(settings.database, output)
    typer.echo(f"wrote {path}")


@app.command()
def index(
    database_url: Optional[str] = DatabaseUrl,
    drop: bool = typer.Option(False, "--drop", help="Drop the indexes instead."),
    config: Optional[Path] = ConfigFile,
) -> None:
    """Create (or drop) covering indexes that make counts fast on a cold cache. Idempotent; never changes a result.

    PostgreSQL: built CONCURRENTLY (inserts go on meanwhile). SQLite: the build holds the write lock, said before it
    starts. Under the run lock, bounded by the statement timeout."""
    from cluster_workers.db.indexes import build_indexes

    settings = _settings(config, database_url=database_url)
    changes = build_indexes(settings.database_url, settings.db_limits, drop=drop)
    for c in changes:
        size = f"  {c.size_bytes / 2**20:,.0f} MiB" if c.size_bytes else ""
        typer.echo(f"{c.name}: {c.action} ({c.seconds:.1f} s){size}")


@app.command("demo-db")
def demo_db(
    path: Optional[str] = typer.Argument(None, help="SQLite file to write (or use --database-url)."),
    database_url: Optional[str] = typer.Option(None, "--database-url", "-d", help="Write into this database instead (e.g. PostgreSQL)."),
    embeddings: int = typer.Option(9_025, "--embeddings", "-e", min=145, help="Total embeddings (production: 3288025)."),
    seed: int = typer.Option(0, "--seed", help="Random seed; the same seed gives the same database."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace an existing SQLite file."),
    schema: str = typer.Option("legacy", "--schema", help="legacy (run/invocation/embedding, three 768-d models) or current "
                               "(the users' schema today: one 256-d model and their own EVoC layers)."),
    models: Optional[str] = typer.Option(None, "--models", help="Comma-separated embedding models instead of the schema's default."),
    dim: Optional[int] = typer.Option(None, "--dim", min=2, max=768, help="Vector dimension (default: 768 legacy, 256 current)."),
    user_results: Optional[bool] = typer.Option(None, "--user-results/--no-user-results",
                                                help="Write the users' own EVoC layers (default: with the current schema)."),
) -> None:
    """Build a synthetic experiment database (small demo up to the production shape), in either schema."""
    from cluster_workers.tools.demo import build_demo_database

    target = database_url or path
    if not target:
        fail(ClusterWorkersError("give a PATH or --database-url"))
    last = {"t": time.monotonic()}

    with progress_bar(embeddings, "embeddings written") as advance:

        def progress(done: int) -> None:
            stopping.check("while building the database", "nothing was kept")
            advance(done)
            if time.monotonic() - last["t"] >= 10 or done == embeddings:
                last["t"] = time.monotonic()
                logger.info("demo-db: {:,}/{:,} embeddings ({:.0%})", done, embeddings, done / embeddings)

        shape = build_demo_database(
            target, embeddings=embeddings, seed=seed, overwrite=overwrite, progress=progress, schema=schema,
            models=tuple(m.strip() for m in models.split(",") if m.strip()) if models else None, dim=dim,
            user_results=user_results,
        )
    from cluster_workers.db.connect import describe

    typer.echo(f"wrote {describe(target)} ({schema} schema): {shape.total:,} embeddings in {shape.runs} runs")


@app.command()
def bench(
    downsample: int = typer.Option(..., "--downsample", "-n", min=1, help="Downsample to benchmark."),
    database_url: Optional[str] = DatabaseUrl,
    timeout: float = typer.Option(3600.0, "--timeout", min=0.001, help="Hard wall-clock limit in seconds for the run."),
    baseline: bool = typer.Option(False, "--baseline", help="Also cluster the same samples the straightforward way and compare."),
    engine: Optional[str] = typer.Option(None, "--engine", help=f"One of {', '.join(ENGINES)}."),
    workers: Optional[int] = typer.Option(None, "--workers", "-w", min=0),
    min_cluster_size: Optional[int] = typer.Option(None, "--min-cluster-size", min=0),
    min_samples: Optional[int] = typer.Option(None, "--min-samples", min=0),
    model: Optional[List[str]] = typer.Option(None, "--model", "-m", help="Only these embedding models (repeat the option)."),
    heartbeat: float = typer.Option(30.0, "--heartbeat", min=0.1, help="Seconds between heartbeat log lines."),
    output_dir: Optional[Path] = typer.Option(
        None, "--output-dir",
        help="Where the JSON goes (default: $XDG_CACHE_HOME/cluster_workers/bench, i.e. ~/.cache/cluster_workers/bench).",
    ),
    config: Optional[Path] = ConfigFile,
) -> None:
    """Benchmark the workflow (forced re-run, then one commit) under a hard time limit; table + JSON.

    The commit writes every row inside its transaction and then rolls it back: the database's results are left
    exactly as they were (safe on a live database). Use `cluster --force` to keep what you measure."""
    from cluster_workers.tools import bench as bench_mod

    settings = _settings(
        config, downsample=downsample, database_url=database_url, engine=engine, workers=workers,
        min_cluster_size=min_cluster_size, min_samples=min_samples, models=tuple(model) if model else None,
    )
    result = bench_mod.run_benchmark(settings, timeout=timeout, baseline=baseline, heartbeat_s=heartbeat)
    data = result.as_json()
    path = bench_mod.save(data, output_dir or bench_mod.default_output_dir())
    typer.echo(bench_mod.format_table(data))
    typer.echo(f"json: {path}")
    if result.status != "ok":
        typer.echo(f"error: {result.error}", err=True)
        raise typer.Exit(1)


def main() -> None:
    """Console-script entry point."""
    try:
        app()
    except ClusterWorkersError as exc:  # the one error path: every command raises, this prints one line
        try:
            fail(exc)
        except typer.Exit as done:
            sys.exit(done.exit_code)
    except KeyboardInterrupt:  # only before the handlers are installed (startup): same message, same status
        typer.echo("error: interrupted", err=True)
        sys.exit(130)


if __name__ == "__main__":
    main()

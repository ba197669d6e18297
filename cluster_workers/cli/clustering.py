"""Commands that write results: cluster, recut, assign, delete, publish, repair; and index (covering indexes)."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import List, Optional

import typer

from cluster_workers.cli.app import AsJson, ConfigFile, DatabaseUrl, Experiment, ResultId, app, settings_for
from cluster_workers.progress import progress_bar
from cluster_workers.run.config import BACKENDS  # the choices the help strings name, from where they are defined
from cluster_workers.run.params import ENGINES, MEDOID_RULES, SELECTION_METHODS


# Reads in one piece: the command's options are its documentation (typer); the body is one call and its printing.
@app.command()
def cluster(
    downsample: Optional[int] = typer.Option(None, "--downsample", "-n", min=1, help="Keep every N-th text output of every run."),
    offset: Optional[int] = typer.Option(
        None, "--offset", min=0, help="Keep the text outputs whose number is OFFSET modulo N (default 0)."
    ),
    database_url: Optional[str] = DatabaseUrl,
    force: bool = typer.Option(False, "--force", help="Replace results already made with the same parameters."),
    cascade: bool = typer.Option(
        False, "--cascade", help="With --force: also delete the results made from those replaced (assigned or recut from them)."
    ),
    epsilon: Optional[float] = typer.Option(None, "--epsilon", min=0.0, help="HDBSCAN cluster_selection_epsilon (default 0.5)."),
    min_cluster_size: Optional[int] = typer.Option(
        None, "--min-cluster-size", min=0, help="0 = max(2, int(n * 0.001)) (the default)."
    ),
    min_samples: Optional[int] = typer.Option(
        None,
        "--min-samples",
        min=0,
        help="0 = same as min_cluster_size (the default). scikit-learn's convention: the point itself counts "
        "(the hdbscan package and the fast engine are given min_samples - 1).",
    ),
    allow_single_cluster: Optional[bool] = typer.Option(
        None, "--allow-single-cluster/--no-allow-single-cluster", help="Allow a single cluster (default: allow)."
    ),
    medoid: Optional[str] = typer.Option(
        None,
        "--medoid",
        help=f"{' or '.join(MEDOID_RULES)}: {MEDOID_RULES[0]} is scikit-learn's store_centers='medoid' (default), mean the member nearest the centroid (the application's EVoC rows).",
    ),
    min_samples_to_cluster: Optional[int] = typer.Option(
        None, "--min-samples-to-cluster", min=2, help="Skip models with fewer sampled embeddings."
    ),
    model: Optional[List[str]] = typer.Option(None, "--model", "-m", help="Cluster only this embedding model (repeatable)."),
    experiment: Optional[str] = typer.Option(
        None, "--experiment", help="Sample only this experiment's runs (its id); default every run."
    ),
    engine: Optional[str] = typer.Option(
        None,
        "--engine",
        help=f"One of {', '.join(ENGINES)}: fast = exact HDBSCAN (default), reference = the hdbscan package, evoc = the application's EVoC (every layer a result).",
    ),
    engine_param: Optional[List[str]] = typer.Option(
        None,
        "--engine-param",
        "-p",
        help="KEY=VALUE for the evoc engine (repeatable): any evoc.EVoC parameter, or threads=K (the fit's fixed thread count, default 1).",
    ),
    workers: Optional[int] = typer.Option(
        None, "--workers", "-w", min=0, help="Worker processes at once (0 = one per model, at most the cores)."
    ),
    timeout: Optional[float] = typer.Option(
        None, "--timeout", min=0.001, help="Seconds each model may take before all workers are stopped."
    ),
    busy_timeout: Optional[float] = typer.Option(
        None, "--busy-timeout", min=0.0, help="Seconds to wait for a database locked by another writer."
    ),
    backend: Optional[str] = typer.Option(
        None,
        "--backend",
        help=f"One of {', '.join(BACKENDS)}: loky runs workers on this machine, dask on a dask.distributed cluster.",
    ),
    scheduler: Optional[str] = typer.Option(None, "--scheduler", help="dask scheduler address, e.g. tcp://10.0.0.5:8786."),
    skip_bad_vectors: bool = typer.Option(
        False, "--skip-bad-vectors", help="Leave out (and count) bad vectors and orphan embeddings instead of failing."
    ),
    memory_limit_mb: Optional[float] = typer.Option(
        None,
        "--memory-limit-mb",
        min=0.0,
        help="Memory the workers may use together (default: what the system reports available); the plan fits workers to it.",
    ),
    config: Optional[Path] = ConfigFile,
) -> None:
    """Cluster every embedding model's sampled vectors and commit all labels in one transaction."""
    from cluster_workers.run.coordinator import run_clustering

    settings = settings_for(
        config,
        downsample=downsample,
        offset=offset,
        database_url=database_url,
        force=force or None,
        cascade=cascade or None,
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
def recut(
    result_id: str = ResultId,
    min_cluster_size: Optional[int] = typer.Option(None, "--min-cluster-size", min=2, help="New min_cluster_size."),
    epsilon: Optional[float] = typer.Option(None, "--epsilon", min=0.0, help="New cluster_selection_epsilon."),
    method: Optional[str] = typer.Option(None, "--method", help=f"Cluster selection method: {' or '.join(SELECTION_METHODS)}."),
    allow_single_cluster: Optional[bool] = typer.Option(
        None, "--allow-single-cluster/--no-allow-single-cluster", help="Allow one cluster of everything."
    ),
    min_samples: Optional[int] = typer.Option(
        None, "--min-samples", min=1, help="Only the tree's own value is accepted (another needs `cluster`)."
    ),
    force: bool = typer.Option(False, "--force", help="Replace an existing result with the same parameters on the same sample."),
    database_url: Optional[str] = DatabaseUrl,
    config: Optional[Path] = ConfigFile,
) -> None:
    """Write a new result from a result's stored tree with new selection parameters: no reclustering, the same
    labels, probabilities and medoids as a fresh `cluster` of that sample (one transaction, under the run lock)."""
    from cluster_workers.run import recut as recut_mod

    overrides = {"min_cluster_size": min_cluster_size, "cluster_selection_epsilon": epsilon, "cluster_selection_method": method,
                 "allow_single_cluster": allow_single_cluster, "min_samples": min_samples}  # fmt: skip
    settings = settings_for(config, database_url=database_url)
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
    downsample: int = typer.Option(
        1, "--downsample", "-n", min=1, help="Which embeddings to assign: every N-th text output (default 1: all)."
    ),
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

    settings = settings_for(config, database_url=database_url)
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
        typer.echo(
            f"not written: result {done.existing} already assigns these embeddings to {done.source.id} (--force replaces it)"
        )
    else:
        rate = done.assigned / max(done.timings["predict_s"], 1e-9)
        typer.echo(
            f"wrote result {done.result_id} ({done.source.model}): {done.frozen:,} frozen from {done.source.id.hex[:8]} + "
            f"{done.assigned:,} assigned ({done.assigned_outliers / max(done.assigned, 1):.1%} outliers); "
            f"predict {done.timings['predict_s']:.2f} s ({rate:,.0f} rows/s), peak {done.peak_rss_mb:,.0f} MiB"
        )


@app.command()
def delete(
    result_id: Optional[str] = typer.Argument(None, help="A result id (or unique prefix), `latest` or `latest:MODEL`."),
    model: Optional[str] = typer.Option(
        None, "--model", "-m", help="Delete every result of this embedding model that this tool made."
    ),
    all_results: bool = typer.Option(
        False, "--all", help="Delete every clustering result this tool made (the application's own only by id)."
    ),
    yes: bool = typer.Option(False, "--yes", "-y", help="Do not ask for confirmation (needed when stdin is not a terminal)."),
    cascade: bool = typer.Option(
        False, "--cascade", help="Also delete the results made from these (assigned or recut from them)."
    ),
    database_url: Optional[str] = DatabaseUrl,
    config: Optional[Path] = ConfigFile,
) -> None:
    """Delete results and their memberships in one transaction (under the run lock); asks first on a terminal."""
    from cluster_workers.errors import ConfigError
    from cluster_workers.run import removal

    if sum([result_id is not None, model is not None, all_results]) != 1:
        raise ConfigError("delete takes exactly one of: RESULT_ID, --model NAME, --all")
    settings = settings_for(config, database_url=database_url)
    chosen = removal.chosen_results(settings.database, result_id, model, cascade)
    theirs = removal.left_alone(settings.database, result_id, model)
    if theirs:
        typer.echo(
            f"leaving {theirs} result(s) this tool did not make (the application's own); delete one by naming its id", err=True
        )
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
    typer.echo(
        f"deleted {len(chosen)} result(s) and {removed:,} memberships: " + ", ".join(f"{r.id} ({r.model})" for r in chosen)
    )


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

    settings = settings_for(config, database_url=database_url)
    changes = build_indexes(settings.database_url, settings.db_limits, drop=drop)
    for c in changes:
        size = f"  {c.size_bytes / 2**20:,.0f} MiB" if c.size_bytes else ""
        typer.echo(f"{c.name}: {c.action} ({c.seconds:.1f} s){size}")


@app.command()
def publish(
    result_id: str = ResultId,
    layers: Optional[str] = typer.Option(
        None,
        "--layers",
        help="HDBSCAN: comma-separated min_cluster_size values, one layer each (finest first), cut "
        "from the result's stored tree; default: the result itself as layer 0. An evoc run publishes its own layers.",
    ),
    partial: bool = typer.Option(False, "--partial", help="Publish a result that does not hold every embedding of the model."),
    dry_run: bool = typer.Option(False, "--dry-run", help="Say what would be deleted and written; write nothing."),
    yes: bool = typer.Option(False, "--yes", "-y", help="Do not ask for confirmation (needed when stdin is not a terminal)."),
    database_url: Optional[str] = DatabaseUrl,
    as_json: bool = AsJson,
    config: Optional[Path] = ConfigFile,
) -> None:
    """Make one of this tool's results the experiment application's clustering of its model: every row of that
    model in the application's clustering_results / embedding_clusters replaced, in one transaction, by ours in the
    application's own format (one row per layer, one membership per embedding per layer). Our copy stays."""
    from cluster_workers.errors import ConfigError
    from cluster_workers.run.publish import publish as publish_result
    from cluster_workers.views.sweep import parse_values

    settings = settings_for(config, database_url=database_url)
    sizes = parse_values(layers, int) if layers else None
    plan = publish_result(
        settings.database_url, result_id, settings.db_limits, sizes, partial, dry_run=True, db=settings.database
    )
    deleted = sum(r.memberships for r in plan.replaced)
    written = sum(len(p.embedding_ids) for p in plan.layers)
    what = (f"{plan.model}: delete the application's {len(plan.replaced)} result(s) ({deleted:,} memberships), write "
            f"{len(plan.layers)} layer(s) of result {plan.source.id.hex[:8]} ({written:,} memberships"
            f"{f'; {plan.gone:,} of its rows gone and left out' if plan.gone else ''})")  # fmt: skip
    if dry_run:
        typer.echo(json.dumps(plan.as_dict(), indent=2) if as_json else f"would {what}")
        return
    if not yes:
        if not sys.stdin.isatty():
            raise ConfigError("refusing to replace the application's clustering without --yes: stdin is not a terminal")
        if not typer.confirm(f"{what}?", default=False):
            typer.echo("nothing published", err=True)
            raise typer.Exit(1)
    plan = publish_result(settings.database_url, result_id, settings.db_limits, sizes, partial, db=settings.database)
    typer.echo(
        json.dumps(plan.as_dict(), indent=2)
        if as_json
        else f"published result {plan.source.id.hex[:8]} as the application's {plan.model} clustering: "
        + ", ".join(f"layer {p.layer} {rid.hex[:8]} ({p.clusters} clusters)" for p, rid in zip(plan.layers, plan.result_ids))
    )


@app.command()
def repair(
    database_url: Optional[str] = DatabaseUrl,
    config: Optional[Path] = ConfigFile,
) -> None:
    """Move what cluster-workers 0.2.0 wrote into the application's tables (its results, memberships, and side
    tables with foreign keys into them) into this tool's own tables, in one transaction. Every command that writes
    does the same first; the application's own rows are never changed."""
    from cluster_workers.db.repair import repair_database

    settings = settings_for(config, database_url=database_url)
    moved = repair_database(settings.database_url, settings.db_limits)
    typer.echo(f"repaired: moved {moved.describe()} into this tool's own tables" if moved else "nothing to repair")

"""Read-only commands on results: results, show, export, compare, trajectories, transitions, run-lengths, sweep, report."""

from __future__ import annotations

import json
from pathlib import Path
from typing import List, Optional

import typer

from cluster_workers.cli.app import AsJson, ConfigFile, DatabaseUrl, Experiment, ResultId, app, settings_for
from cluster_workers.run.params import SELECTION_METHODS


@app.command()
def results(
    database_url: Optional[str] = DatabaseUrl,
    as_json: bool = AsJson,
    stale_check: bool = typer.Option(
        True,
        "--stale-check/--no-stale-check",
        help="Compare each result's sample with the database now (one count per downsample).",
    ),
    limit: int = typer.Option(0, "--limit", min=0, help="The newest N results (0 = all)."),
    config: Optional[Path] = ConfigFile,
) -> None:
    """List clustering results: id, model, who made it, members, clusters, outliers, duration, whether the sample is the
    same now, parameters."""
    from cluster_workers.views import tables

    settings = settings_for(config, database_url=database_url)
    rows = tables.load_results(settings.database, stale_check)
    shown = rows[:limit] if limit else rows
    out = json.dumps(tables.results_json(shown), indent=2) if as_json else tables.results_table(shown)
    if len(shown) < len(rows) and not as_json:
        out += f"\n… {len(rows) - len(shown)} older result(s); use --limit 0 to see all"
    typer.echo(out)


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

    settings = settings_for(config, database_url=database_url)
    summary, clusters = tables.load_clusters(settings.database, result_id)
    if as_json:
        typer.echo(json.dumps(tables.clusters_json(summary, clusters, limit), indent=2))
    else:
        typer.echo(tables.clusters_table(summary, clusters, limit))


@app.command()
def export(
    result_id: str = ResultId,
    output: str = typer.Option(
        ..., "--output", "-o", help="File to write, its format by its extension (.csv, .parquet, .json/.jsonl); - for stdout."
    ),
    fmt: Optional[str] = typer.Option(None, "--format", help="csv, parquet or jsonl, whatever the file is called."),
    database_url: Optional[str] = DatabaseUrl,
    config: Optional[Path] = ConfigFile,
) -> None:
    """Write one result as a table: one row per sampled embedding with its run, step, cluster rank and text."""
    from cluster_workers.views.export import STDOUT, export_result

    settings = settings_for(config, database_url=database_url)
    rows = export_result(settings.database, result_id, output, fmt)
    typer.echo(f"wrote {rows:,} rows to {output}", err=output == STDOUT)


@app.command()
def compare(
    downsample: Optional[int] = typer.Option(None, "--downsample", "-n", min=1, help="Only models clustered at this downsample."),
    result: Optional[List[str]] = typer.Option(
        None, "--result", "-r", help="Compare these two results (give it twice), whatever their parameters."
    ),
    experiment: Optional[str] = Experiment,
    database_url: Optional[str] = DatabaseUrl,
    as_json: bool = AsJson,
    config: Optional[Path] = ConfigFile,
) -> None:
    """Do the models agree? ARI and AMI for each pair of models' newest current results with the same downsample,
    parameters and engine (stale results left out, and said so), and cluster matches."""
    from cluster_workers.views.compare import compare as compare_results
    from cluster_workers.views.compare import compare_table

    settings = settings_for(config, database_url=database_url)
    found = compare_results(settings.database, downsample, results=result or None, experiment=experiment)
    typer.echo(json.dumps(found.as_dict(), indent=2) if as_json else compare_table(found))


@app.command()
def trajectories(
    result_id: str = ResultId,
    database_url: Optional[str] = DatabaseUrl,
    last_k: int = typer.Option(
        3, "--last-k", min=1, help="A run never settles when its last K sampled texts span more than one cluster."
    ),
    by: str = typer.Option("prompt", "--by", help="Group runs by initial prompt (default) or network (their chain of models)."),
    experiment: Optional[str] = Experiment,
    as_json: bool = AsJson,
    limit: int = typer.Option(20, "--limit", min=0, help="Rows per table (0 = all)."),
    config: Optional[Path] = ConfigFile,
) -> None:
    """Where runs end and when they settle: per end cluster, and per initial prompt or network."""
    from cluster_workers.views.trajectories import load_trajectories, trajectories_table

    settings = settings_for(config, database_url=database_url)
    found = load_trajectories(settings.database, result_id, last_k, by, experiment)
    typer.echo(json.dumps(found.as_dict(), indent=2) if as_json else trajectories_table(found, limit))


@app.command()
def transitions(
    result_id: str = ResultId,
    by: Optional[str] = typer.Option(None, "--by", help="Group runs by network (their chain of models) or prompt."),
    include_outliers: bool = typer.Option(
        False, "--include-outliers", help="Keep outliers in each run's sequence (default: dropped first)."
    ),
    experiment: Optional[str] = Experiment,
    database_url: Optional[str] = DatabaseUrl,
    as_json: bool = AsJson,
    limit: int = typer.Option(20, "--limit", min=0, help="Rows per group (0 = all)."),
    config: Optional[Path] = ConfigFile,
) -> None:
    """Cluster transitions along each run: (from, to) counts over consecutive sampled texts, per group."""
    from cluster_workers.views import chains

    settings = settings_for(config, database_url=database_url)
    found = chains.load_transitions(settings.database, result_id, by, include_outliers, experiment)
    typer.echo(json.dumps(found.rows(), indent=2) if as_json else chains.transitions_table(found, limit))


@app.command("run-lengths")
def run_lengths(
    result_id: str = ResultId,
    include_outliers: bool = typer.Option(
        False, "--include-outliers", help="Keep outliers in each run's sequence (default: dropped first)."
    ),
    experiment: Optional[str] = Experiment,
    database_url: Optional[str] = DatabaseUrl,
    as_json: bool = AsJson,
    limit: int = typer.Option(20, "--limit", min=0, help="Clusters in the summary (0 = all)."),
    config: Optional[Path] = ConfigFile,
) -> None:
    """How long chains stay in a cluster: each run's run-length encoding (JSON: every stretch; table: per cluster)."""
    from cluster_workers.views import chains

    settings = settings_for(config, database_url=database_url)
    found = chains.load_run_lengths(settings.database, result_id, include_outliers, experiment)
    typer.echo(json.dumps(found.rows(), indent=2) if as_json else chains.run_lengths_table(found, limit))


@app.command()
def sweep(
    result_id: str = ResultId,
    epsilon: Optional[str] = typer.Option(
        None, "--epsilon", help="Comma-separated epsilons or a range START:STOP:STEP (default: the result's)."
    ),
    min_cluster_size: Optional[str] = typer.Option(
        None,
        "--min-cluster-size",
        help="Comma-separated sizes or a range, e.g. 5:2000:log20 (20 log-spaced sizes); default: the result's.",
    ),
    method: Optional[str] = typer.Option(
        None, "--method", help=f"Cluster selection method: {' or '.join(SELECTION_METHODS)} (default: the result's)."
    ),
    database_url: Optional[str] = DatabaseUrl,
    as_json: bool = AsJson,
    config: Optional[Path] = ConfigFile,
) -> None:
    """Try selection parameters on a result's stored tree; writes nothing. Per setting: clusters, outlier share,
    the largest cluster's share, and the ARI against the stored result; and where along min_cluster_size the
    clusters and outliers are flattest."""
    from cluster_workers.views import sweep as sweep_view
    from cluster_workers.views.tables import sweep_table

    settings = settings_for(config, database_url=database_url)
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
    output: Path = typer.Option(
        Path("report"), "--output", "-o", help="The HTML file to write (a name ending in .html), or a directory for report.html."
    ),
    config: Optional[Path] = ConfigFile,
) -> None:
    """Write a self-contained HTML report: per result the size distribution and top clusters; models compared."""
    from cluster_workers.views.report import write_report

    settings = settings_for(config, database_url=database_url)
    path = write_report(settings.database, output)
    typer.echo(f"wrote {path}")

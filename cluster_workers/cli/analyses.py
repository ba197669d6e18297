"""The analyses: fixed-points, states, kinetics (symbolic dynamics), density and stability."""

from __future__ import annotations

import json
from pathlib import Path
from typing import List, Optional

import typer

from cluster_workers.cli.app import AsJson, ConfigFile, DatabaseUrl, Experiment, ResultId, app, settings_for
from cluster_workers.run.params import ENGINES  # the choices the help strings name, from where they are defined

HDBSCAN_ENGINES = tuple(e for e in ENGINES if e != "evoc")
GroupLimit = typer.Option(20, "--limit", min=0, help="Groups in the table (0 = all).")


@app.command("fixed-points")
def fixed_points(
    min_repeats: int = typer.Option(
        3, "--min-repeats", min=1, help="Texts the constant tail must hold to count as a fixed point."
    ),
    normalise: str = typer.Option(
        "exact", "--normalise", help="exact (the default) or fold (whitespace collapsed, case folded)."
    ),
    by: str = typer.Option("network", "--by", help="Summarise per network (default) or prompt."),
    experiment: Optional[str] = Experiment,
    database_url: Optional[str] = DatabaseUrl,
    as_json: bool = AsJson,
    limit: int = GroupLimit,
    config: Optional[Path] = ConfigFile,
) -> None:
    """Fixed points by exact caption repetition (no clustering, every text step): when each run's caption stops changing."""
    from cluster_workers.views import dynamics

    settings = settings_for(config, database_url=database_url)
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

    settings = settings_for(config, database_url=database_url)
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
    """Are cluster assignments stable under subsampling? Clusters K disjoint samples (offsets) with the application's
    parameters, assigns each to every other clustering by HDBSCAN's prediction rule, and reports the agreement
    (ARI on the same points) of every pair and each model's worst. Writes nothing without --keep."""
    from cluster_workers.run.stability import stability as run_stability
    from cluster_workers.views.tables import stability_table

    settings = settings_for(config, database_url=database_url, downsample=downsample, engine=engine, experiment=experiment)
    models = list(model) if model else _sampled_models(settings)
    found = run_stability(settings, models, offsets, keep)
    typer.echo(json.dumps(found.as_dict(), indent=2) if as_json else stability_table(found))


def _sampled_models(settings) -> list[str]:  # type: ignore[no-untyped-def]

    from cluster_workers.db import experiment

    after = settings.database.read(
        lambda conn: experiment.counts(conn, settings.downsample, None, settings.experiment or None)[1]
    )
    return sorted(m for m, n in after.items() if n >= settings.min_samples_to_cluster)


CoreProbability = typer.Option(
    0.5,
    "--core-probability",
    min=0.0,
    max=1.0,
    help="A member with at least this membership probability is a core step (1.0: only the densest).",
)
FillInitial = typer.Option(
    "none", "--fill-initial", help="none: steps before a run's first core take no state; first: the first core's."
)


@app.command()
def states(
    result_id: str = ResultId,
    core_probability: float = CoreProbability,
    fill_initial: str = FillInitial,
    experiment: Optional[str] = Experiment,
    limit: int = typer.Option(10, "--limit", min=0, help="Runs listed in the table (0 = all)."),
    database_url: Optional[str] = DatabaseUrl,
    as_json: bool = AsJson,
    config: Optional[Path] = ConfigFile,
) -> None:
    """Core-set milestoning: every run's state sequence (a transit step keeps the last core visited)."""
    from cluster_workers.views import dynamics

    settings = settings_for(config, database_url=database_url)
    found = dynamics.load_states(settings.database, result_id, core_probability, fill_initial, experiment)
    typer.echo(json.dumps(found.as_dict(), indent=2) if as_json else dynamics.states_table(found, limit))


@app.command()
def kinetics(
    result_id: str = ResultId,
    by: str = typer.Option("network", "--by", help="Per network (default), prompt, or all runs together."),
    core_probability: float = CoreProbability,
    fill_initial: str = FillInitial,
    min_stay: int = typer.Option(
        3, "--min-stay", min=1, help="A run is absorbed when its last stay holds at least this many sampled steps."
    ),
    lag: int = typer.Option(1, "--lag", min=1, help="The Markov chain's lag, in sampled steps."),
    experiment: Optional[str] = Experiment,
    database_url: Optional[str] = DatabaseUrl,
    as_json: bool = AsJson,
    limit: int = GroupLimit,
    config: Optional[Path] = ConfigFile,
) -> None:
    """Kinetics of the states: jumps, dwell times (censored, tail test), absorption, transit share, a Markov chain."""
    from cluster_workers.views import dynamics

    settings = settings_for(config, database_url=database_url)
    found = dynamics.load_kinetics(settings.database, result_id, by, core_probability, fill_initial, min_stay, lag, experiment)
    typer.echo(json.dumps(found.as_dict(), indent=2, default=float) if as_json else dynamics.kinetics_table(found, limit))

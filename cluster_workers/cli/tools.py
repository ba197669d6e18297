"""Around the product: demo-db (a synthetic experiment database) and bench (the time-limited benchmark)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import List, Optional

import typer
from loguru import logger

from cluster_workers import stopping
from cluster_workers.cli.app import ConfigFile, DatabaseUrl, app, fail, settings_for
from cluster_workers.errors import ClusterWorkersError
from cluster_workers.progress import progress_bar
from cluster_workers.run.params import ENGINES


@app.command("demo-db")
def demo_db(
    path: Optional[str] = typer.Argument(None, help="SQLite file to write (or use --database-url)."),
    database_url: Optional[str] = typer.Option(
        None, "--database-url", "-d", help="Write into this database instead (e.g. PostgreSQL)."
    ),
    embeddings: int = typer.Option(9_025, "--embeddings", "-e", min=145, help="Total embeddings (production: 3288025)."),
    seed: int = typer.Option(0, "--seed", help="Random seed; the same seed gives the same database."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace an existing SQLite file."),
    schema: str = typer.Option(
        "legacy",
        "--schema",
        help="legacy (run/invocation/embedding, three 768-d models) or current "
        "(the application's schema today: one 256-d model and their own EVoC layers).",
    ),
    models: Optional[str] = typer.Option(
        None, "--models", help="Comma-separated embedding models instead of the schema's default."
    ),
    dim: Optional[int] = typer.Option(None, "--dim", min=2, max=768, help="Vector dimension (default: 768 legacy, 256 current)."),
    user_results: Optional[bool] = typer.Option(
        None,
        "--user-results/--no-user-results",
        help="Write the application's own EVoC layers (default: with the current schema).",
    ),
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
            target,
            embeddings=embeddings,
            seed=seed,
            overwrite=overwrite,
            progress=progress,
            schema=schema,
            models=tuple(m.strip() for m in models.split(",") if m.strip()) if models else None,
            dim=dim,
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
        None,
        "--output-dir",
        help="Where the JSON goes (default: $XDG_CACHE_HOME/cluster_workers/bench, i.e. ~/.cache/cluster_workers/bench).",
    ),
    config: Optional[Path] = ConfigFile,
) -> None:
    """Benchmark the workflow (forced re-run, then one commit) under a hard time limit; table + JSON.

    The commit writes every row inside its transaction and then rolls it back: the database's results are left
    exactly as they were (safe on a live database). Use `cluster --force` to keep what you measure."""
    from cluster_workers.tools import bench as bench_mod

    settings = settings_for(
        config,
        downsample=downsample,
        database_url=database_url,
        engine=engine,
        workers=workers,
        min_cluster_size=min_cluster_size,
        min_samples=min_samples,
        models=tuple(model) if model else None,
    )
    result = bench_mod.run_benchmark(settings, timeout=timeout, baseline=baseline, heartbeat_s=heartbeat)
    data = result.as_json()
    path = bench_mod.save(data, output_dir or bench_mod.default_output_dir())
    typer.echo(bench_mod.format_table(data))
    typer.echo(f"json: {path}")
    if result.status != "ok":
        typer.echo(f"error: {result.error}", err=True)
        raise typer.Exit(1)

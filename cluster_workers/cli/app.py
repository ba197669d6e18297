"""The command-line application: the typer app, the options every command shares, and the one error path."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Optional

import typer
from loguru import logger

from cluster_workers import __version__, stopping
from cluster_workers.errors import ClusterWorkersError
from cluster_workers.progress import setup_logging

app = typer.Typer(
    help="Cluster sentence embeddings stored in SQL with HDBSCAN: one worker process per embedding model, one atomic commit.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

DEBUG = {"on": False}

DatabaseUrl = typer.Option(
    None,
    "--database-url",
    "--db-path",
    "-d",
    help="SQLAlchemy URL or SQLite file path (env CLUSTER_WORKERS_DATABASE_URL, or the config).",
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


def settings_for(config: Optional[Path], **overrides):  # type: ignore[no-untyped-def]
    from cluster_workers.run.config import load_settings

    return load_settings(config, overrides)


def main() -> None:
    """Console-script entry point: every error, a usage error included, is one line on stderr."""
    try:
        status = app(standalone_mode=False)
    except ClusterWorkersError as exc:  # the one error path: every command raises, this prints one line
        try:
            fail(exc)
        except typer.Exit as done:
            sys.exit(done.exit_code)
    except KeyboardInterrupt:  # only before the handlers are installed (startup): same message, same status
        typer.echo("error: interrupted", err=True)
        sys.exit(130)
    except Exception as exc:
        if type(exc).__name__ == "Abort":  # a confirmation answered with Ctrl-C / Ctrl-D
            typer.echo("error: aborted; nothing was done", err=True)
            sys.exit(1)
        if not hasattr(exc, "format_message"):
            raise
        # a usage error (an unknown option, a missing argument, a bad value): one line, as every other error
        ctx = getattr(exc, "ctx", None)
        hint = f" (see `{ctx.command_path} --help`)" if ctx is not None else ""
        typer.echo(f"error: {exc.format_message()}{hint}", err=True)
        sys.exit(getattr(exc, "exit_code", 2))
    sys.exit(status if isinstance(status, int) else 0)

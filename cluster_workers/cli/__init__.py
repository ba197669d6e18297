"""The command-line face: parses, calls one function, prints. No logic a test would need lives here.

``app.py`` holds the typer app, the shared options and the one error path; the commands are grouped by what they
do: ``clustering`` (writes results), ``reading`` (read-only views of results), ``analyses`` (dynamics, density,
stability) and ``tools`` (demo-db, bench). Importing them registers their commands, in this order.
"""

# importing a group registers its commands: --help lists them in this order  # isort: skip_file
from cluster_workers.cli import (
    analyses,  # noqa: F401
    clustering,  # noqa: F401
    reading,  # noqa: F401
    tools,  # noqa: F401
)
from cluster_workers.cli.app import app, main

__all__ = ["app", "main"]

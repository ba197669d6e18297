"""Log lines on stderr, and a progress bar when stderr is a terminal (never under nohup / in a file)."""

from __future__ import annotations

import contextlib
import sys
from typing import Any, Callable, Iterator

from loguru import logger

LOG_FORMAT = "{time:YYYY-MM-DD HH:mm:ss} | {level:<7} | {message}"
_LEVEL = {"name": "INFO"}


def setup_logging(level: str = "INFO", sink: Any = None) -> None:
    """One loguru sink: stderr, or ``sink`` (the bar's console while a bar is shown)."""
    _LEVEL["name"] = level.upper()
    logger.remove()
    logger.add(sink or sys.stderr, level=_LEVEL["name"], format=LOG_FORMAT, colorize=False)


@contextlib.contextmanager
def progress_bar(total: int, description: str) -> Iterator[Callable[..., None]]:
    """Yield ``update(done, total=None)``; a rich bar on a terminal, a no-op otherwise."""
    if not sys.stderr.isatty():
        yield lambda done, total=None: None
        return
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    console = Console(stderr=True)
    with Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
        transient=True,
    ) as bar:
        setup_logging(_LEVEL["name"], lambda message: console.print(message, end="", markup=False, highlight=False))
        task = bar.add_task(description, total=total)
        try:
            yield lambda done, total=None: bar.update(task, completed=done, **({"total": total} if total else {}))
        finally:
            setup_logging(_LEVEL["name"])

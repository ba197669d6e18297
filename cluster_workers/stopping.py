"""One way to stop: Ctrl-C (SIGINT) and ``kill PID`` (SIGTERM) set a flag; the work stops at safe points.

The handlers never raise into whatever the program happens to be doing. Code
that runs long calls :func:`check` between steps (the coordinator while it waits
for workers and between commit batches, ``demo-db`` between batches, ``export``
between rows); SQLite statements in progress are aborted through a progress
handler (see ``db.connect``). :func:`check` raises
:class:`~cluster_workers.errors.Interrupted` (exit status 130) with a message that
says what was written. A stop that arrives after a commit has returned does not
undo it: the caller reports that the results are written.
"""

from __future__ import annotations

import signal
import threading
from types import FrameType

from cluster_workers.errors import Interrupted

_state: dict[str, object] = {"signal": None}
_event = threading.Event()


def _handler(signum: int, _frame: FrameType | None) -> None:
    if not _event.is_set():
        request(signal.Signals(signum).name)


def install() -> None:
    """Forget an earlier stop request, and route SIGINT and SIGTERM to the flag (main thread only; elsewhere
    the request is forgotten and nothing routed)."""
    reset()
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGINT, _handler)
        signal.signal(signal.SIGTERM, _handler)


def requested() -> bool:
    return _event.is_set()


def signal_name() -> str:
    return str(_state["signal"] or "a stop request")


def wait(seconds: float) -> bool:
    """Sleep up to ``seconds``, waking early on a stop request; True when one came."""
    return _event.wait(seconds)


def check(doing: str, written: str = "nothing was written") -> None:
    """Raise :class:`Interrupted` if a stop was requested: ``"<SIGNAL>: interrupted <doing>; <written>"``."""
    if _event.is_set():
        raise Interrupted(f"{signal_name()}: interrupted {doing}; {written}")


def request(name: str = "SIGTERM") -> None:
    """Ask for a stop: what SIGINT and SIGTERM do (and tests, from code)."""
    _state["signal"] = name
    _event.set()


def reset() -> None:
    """Forget a stop request (a command starting, or tests running several commands in one process)."""
    _state["signal"] = None
    _event.clear()

"""A watchdog thread over the worker processes: per-model timeout, overall deadline, heartbeat.

Workers report ``{pid, phase, started}`` in a small JSON file each (see
``worker.report_phase``). The monitor reads them, logs a heartbeat, and on a
timeout SIGKILLs the worker processes (only our own child processes), which
makes joblib raise in the coordinator. A timeout inside the task could not
interrupt HDBSCAN's C code; killing the process always works.
"""

from __future__ import annotations

import json
import os
import signal
import threading
import time
from pathlib import Path
from typing import Callable

import psutil
from loguru import logger

from cluster_workers.db.lock import HOST  # this machine, as the run lock records it
from cluster_workers.run.worker import status_file, threads_file

DEAD_GRACE_S = 2.0


def _died(dead: list[str]) -> str:
    return (
        f"worker process for {', '.join(dead)} died (killed, crashed or out of memory); "
        "the other workers were stopped and nothing was written"
    )


def _alive(pid: int) -> bool:
    """A running process (a killed worker not yet reaped by its parent is a zombie: dead)."""
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


class WorkerMonitor:
    def __init__(
        self,
        status_dir: str,
        models: list[str],
        timeout: float,
        deadline: float | None = None,
        heartbeat_s: float = 30.0,
        poll_s: float = 0.25,
    ) -> None:
        self.status_dir = status_dir
        self.models = list(models)
        self.timeout = timeout
        self.deadline = deadline
        self.heartbeat_s = heartbeat_s
        self.poll_s = poll_s
        self._done: set[str] = set()
        self._reason: str | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, name="worker-monitor", daemon=True)
        self._lock = threading.Lock()
        self._dead_seen = 0.0
        self.on_timeout: Callable[[], object] | None = None  # e.g. close a dask client

    # --- state ---------------------------------------------------------------------------
    def status(self, model: str) -> dict | None:
        path = status_file(self.status_dir, model)
        try:
            return json.loads(Path(path).read_text())
        except (OSError, ValueError):
            return None

    def finished(self, model: str) -> None:
        with self._lock:
            self._done.add(model)

    def share_cores(self, cores: int, n_jobs: int) -> int:
        """Hand the cores of finished workers to the running ones (they pick it up between blocks of work)."""
        running = max(1, min(n_jobs, len(self.unfinished())))
        threads = max(1, cores // running)
        path = threads_file(self.status_dir)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(str(threads))
        os.replace(tmp, path)
        return threads

    def unfinished(self) -> list[str]:
        with self._lock:
            return [m for m in self.models if m not in self._done]

    def all_read(self) -> bool:
        """Every model's worker has read its sample (its fetch's transaction is over): the snapshot can go."""
        return all((self.status(m) or {}).get("phase") in ("cluster", "done") for m in self.unfinished())

    def running_description(self) -> str:
        parts = []
        now = time.time()
        for model in self.unfinished():
            st = self.status(model)
            if st is None:
                parts.append(f"{model} (not started)")
            else:
                parts.append(f"{model} (phase {st['phase']}, {now - st['started']:.0f} s)")
        return ", ".join(parts) or "no model"

    def _dead(self) -> list[str]:
        """Unfinished models whose worker process (on this host) is gone."""
        dead = []
        for model in self.unfinished():
            st = self.status(model)
            if st and st["phase"] != "done" and st.get("host", HOST) == HOST and not _alive(st["pid"]):
                dead.append(f"{model} (phase {st['phase']})")
        return dead

    def failure_reason(self) -> str | None:
        """Why the run failed, if the monitor knows: a timeout it enforced, or a worker that died."""
        if self._reason:
            return self._reason
        dead = self._dead()
        return _died(dead) if dead else None

    # --- actions -------------------------------------------------------------------------
    def kill_all(self, why: str) -> None:
        """SIGKILL the worker processes of every unfinished model (our own children only)."""
        children = {p.pid for p in psutil.Process().children(recursive=True)}
        for model in self.unfinished():
            st = self.status(model)
            if st and st["pid"] in children:
                try:
                    os.kill(st["pid"], signal.SIGKILL)
                    logger.warning("stopped worker {} (pid {}): {}", model, st["pid"], why)
                except ProcessLookupError:
                    pass

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=5)

    def timed_out(self) -> str | None:
        """The reason, once a timeout or the deadline has passed."""
        return self._reason

    def _watch(self) -> None:
        last_beat = time.monotonic()
        while not self._stop.wait(self.poll_s):
            if self._reason:  # keep stopping workers that start after the limit passed
                self.kill_all("timeout")
                continue
            now = time.time()
            for model in self.unfinished():
                st = self.status(model)
                if st and st["phase"] != "done" and now - st["started"] > self.timeout:
                    self._reason = (
                        f"model {model} passed its timeout of {self.timeout:g} s in phase {st['phase']}; "
                        "all workers were stopped and nothing was written"
                    )
                    break
            if self._reason is None:
                dead = self._dead()
                if dead and not self._dead_seen:
                    self._dead_seen = time.monotonic()  # give the backend a moment to report it itself
                elif dead and time.monotonic() - self._dead_seen > DEAD_GRACE_S:
                    self._reason = _died(dead)
            if self._reason is None and self.deadline is not None and time.monotonic() > self.deadline:
                self._reason = (
                    f"the run passed its time limit while clustering {self.running_description()}; "
                    "all workers were stopped and nothing was written"
                )
            if self._reason:
                logger.error(self._reason)
                self.kill_all("timeout")
                if self.on_timeout is not None:
                    try:
                        self.on_timeout()
                    except Exception as exc:  # noqa: BLE001 - best effort; the reason is already recorded
                        logger.warning("could not stop remote workers: {}", exc)
                continue
            if time.monotonic() - last_beat >= self.heartbeat_s:
                last_beat = time.monotonic()
                logger.info("heartbeat: still running {}", self.running_description())

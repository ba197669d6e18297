"""One clustering run per database at a time: a lock released when the run dies, however it dies.

SQLite: ``flock`` on the database file itself (independent of SQLite's own
POSIX locks on Linux, and no extra file left behind); the kernel drops it with
the process. A journal or WAL left by a run killed inside its commit is logged
and rolled back by SQLite itself on the next open. PostgreSQL: a session-level
advisory lock held on a connection of its own, named ``cluster_workers:HOST:PID``.
The server drops it when that session ends; if the session outlives its process
(a killed coordinator whose connection the server has not yet noticed), the next
run sees the named process is gone, ends that session and takes the lock, with a
log line.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import socket
import time
import zlib
from pathlib import Path
from typing import Iterator

import psutil
import sqlalchemy as sa
from loguru import logger

from cluster_workers.db.connect import check_sqlite_file, db_error, describe, make_engine, normalise_url, sqlite_path
from cluster_workers.errors import DatabaseError

ADVISORY_KEY = zlib.crc32(b"cluster_workers.run")
APP_PREFIX = "cluster_workers"
HOST = socket.gethostname()


def _leftovers(path: Path) -> None:
    """Log a rollback journal or WAL that a writer killed mid-transaction left (SQLite recovers it)."""
    journal, wal = Path(f"{path}-journal"), Path(f"{path}-wal")
    if journal.exists() and journal.stat().st_size > 0:
        logger.warning("{} was left by a writer that stopped inside a transaction; SQLite rolls it back on open", journal.name)
    elif wal.exists() and wal.stat().st_size > 0:
        logger.info(
            "{} holds {:,} bytes from earlier writers; SQLite applies only committed transactions", wal.name, wal.stat().st_size
        )


def _stale_holder(conn: sa.Connection) -> int | None:
    """The backend pid holding our advisory lock for a process of this host that no longer runs, if any."""
    rows = conn.execute(
        sa.text(
            "SELECT a.pid, a.application_name FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid "
            "WHERE l.locktype = 'advisory' AND l.granted AND l.objid = :key"
        ),
        {"key": ADVISORY_KEY & 0xFFFFFFFF},
    ).all()
    for backend, name in rows:
        prefix, _, rest = (name or "").partition(":")
        host, _, pid = rest.rpartition(":")
        if prefix == APP_PREFIX and host == HOST and pid.isdigit() and not psutil.pid_exists(int(pid)):
            return int(backend)
    return None


def _busy(url: str) -> DatabaseError:
    return DatabaseError(
        f"another clustering run is already using {describe(url)}; wait for it to finish (or stop it) and try again"
    )


@contextlib.contextmanager
def run_lock(url: str, db_limits: dict | None = None) -> Iterator[None]:
    """Hold the database's run lock for the ``with`` block; refuse at once if another run holds it."""
    url = normalise_url(url)
    path = sqlite_path(url)
    if path is not None:
        check_sqlite_file(url)
        fd = os.open(path, os.O_RDONLY)
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                raise _busy(url) from None
            _leftovers(path)
            yield
        finally:
            os.close(fd)  # releases the flock
        return
    if sa.make_url(normalise_url(url)).get_backend_name() != "postgresql":
        yield
        return
    engine = make_engine(url, **(db_limits or {}))
    try:
        try:
            conn = engine.connect()
            got = _acquire(conn)
        except sa.exc.SQLAlchemyError as exc:
            raise db_error(exc, url, "while taking the run lock") from exc
        with conn:
            if not got:
                raise _busy(url)
            try:
                yield
            finally:
                conn.execute(sa.select(sa.func.pg_advisory_unlock(ADVISORY_KEY)))
                conn.commit()
    finally:
        engine.dispose()


def _acquire(conn: sa.Connection) -> bool:
    """Try the advisory lock under this process's name; clear a stale holder once. True when held."""
    conn.execute(sa.text("SELECT set_config('application_name', :name, false)"), {"name": f"{APP_PREFIX}:{HOST}:{os.getpid()}"})
    got = conn.execute(sa.select(sa.func.pg_try_advisory_lock(ADVISORY_KEY))).scalar_one()
    if not got:
        stale = _stale_holder(conn)
        if stale is not None:
            conn.execute(sa.select(sa.func.pg_terminate_backend(stale)))
            logger.warning("cleared a stale run lock: server session {} belonged to a run on this host that is gone", stale)
            for _ in range(50):
                got = conn.execute(sa.select(sa.func.pg_try_advisory_lock(ADVISORY_KEY))).scalar_one()
                if got:
                    break
                time.sleep(0.1)
    conn.commit()
    return bool(got)

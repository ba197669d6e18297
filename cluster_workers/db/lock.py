"""One clustering run per database at a time: a lock the operating system releases if the run dies.

SQLite: ``flock`` on the database file itself (independent of SQLite's own
POSIX locks on Linux, and no extra file left behind). PostgreSQL: a
session-level advisory lock held on a connection of its own.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import zlib
from typing import Iterator

import sqlalchemy as sa

from cluster_workers.db.connect import check_sqlite_file, describe, make_engine, normalise_url, sqlite_path
from cluster_workers.errors import DatabaseError

ADVISORY_KEY = zlib.crc32(b"cluster_workers.run")


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
        except sa.exc.OperationalError as exc:
            raise DatabaseError(f"cannot connect to {describe(url)}: {str(exc.orig).strip().splitlines()[0]}") from exc
        with conn:
            got = conn.execute(sa.select(sa.func.pg_try_advisory_lock(ADVISORY_KEY))).scalar_one()
            conn.commit()
            if not got:
                raise _busy(url)
            try:
                yield
            finally:
                conn.execute(sa.select(sa.func.pg_advisory_unlock(ADVISORY_KEY)))
                conn.commit()
    finally:
        engine.dispose()

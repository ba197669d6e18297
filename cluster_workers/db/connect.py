"""Engines for the coordinator (read/write) and the workers (read-only), with SQLite pragmas.

SQLite: every connection gets ``busy_timeout`` so a locked database means a
bounded wait; writes start with ``BEGIN IMMEDIATE`` (pysqlite recipe:
autocommit driver mode plus our own BEGIN) so a writer that must wait waits
at its first statement instead of failing mid-transaction; worker connections
are ``query_only``. WAL is switched on only just before the single commit
(:func:`enable_wal`), so a run that fails earlier leaves the file byte-identical.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.engine import Engine, make_url

from cluster_workers import stopping
from cluster_workers.db.snapshot import SQLITE_HASH_FUNCTION, id_hash
from cluster_workers.errors import ClusterWorkersError, DatabaseError, Interrupted

SQLITE_HEADER = b"SQLite format 3\x00"


def is_sqlite(url: str | sa.URL) -> bool:
    return make_url(url).get_backend_name() == "sqlite"


def sqlite_path(url: str | sa.URL) -> Path | None:
    """The file behind a SQLite URL, or None for in-memory / non-SQLite URLs."""
    u = make_url(url)
    if u.get_backend_name() != "sqlite" or not u.database or u.database == ":memory:":
        return None
    return Path(u.database)


def normalise_url(url: str) -> str:
    """Accept a bare file path as a SQLite database, and prefer psycopg 3 for PostgreSQL."""
    if "://" not in url:
        return f"sqlite:///{url}"
    u = make_url(url)
    if u.drivername in ("postgresql", "postgres"):
        u = u.set(drivername="postgresql+psycopg")
    return u.render_as_string(hide_password=False)


def check_sqlite_file(url: str) -> None:
    """Fail clearly if a SQLite URL names a missing file or one that is not a database."""
    path = sqlite_path(url)
    if path is None:
        return
    if not path.exists():
        raise DatabaseError(f"database file not found: {path}")
    if path.is_dir():
        raise DatabaseError(f"database path is a directory, not a SQLite file: {path}")
    with open(path, "rb") as fh:
        header = fh.read(16)
    if header and header != SQLITE_HEADER:
        raise DatabaseError(f"not a SQLite database: {path}")


def make_engine(
    url: str,
    *,
    busy_timeout: float = 30.0,
    read_only: bool = False,
    create: bool = False,
    statement_timeout: float = 3600.0,
    connect_timeout: float = 10.0,
) -> Engine:
    """Create an engine; SQLite files must exist unless ``create``.

    Every wait is bounded. ``busy_timeout``: how long to wait for a lock another
    writer holds (SQLite ``busy_timeout``; PostgreSQL ``lock_timeout``).
    PostgreSQL also gets ``statement_timeout`` (0 = none) and ``connect_timeout``.
    A SQLite statement in progress is aborted when a stop is requested (see
    :mod:`cluster_workers.stopping`).
    """
    url = normalise_url(url)
    if is_sqlite(url):
        if not create:
            check_sqlite_file(url)
        engine = sa.create_engine(url, connect_args={"timeout": busy_timeout}, poolclass=sa.pool.NullPool)
        _install_sqlite_hooks(engine, busy_timeout=busy_timeout, read_only=read_only)
        return engine
    options = f"-c lock_timeout={int(busy_timeout * 1000)} -c statement_timeout={int(statement_timeout * 1000)}"
    connect_args = {"connect_timeout": max(1, int(round(connect_timeout))), "options": options}
    try:
        engine = sa.create_engine(url, connect_args=connect_args, pool_pre_ping=True)
    except ModuleNotFoundError as exc:
        raise DatabaseError(
            f"{describe(url)} needs a driver that is not installed ({exc.name}): {driver_hint(exc.name)}"
        ) from None
    if read_only:
        engine = engine.execution_options(postgresql_readonly=True)
    return engine


DRIVER_PACKAGES = {
    "psycopg": "pip install 'cluster-workers[postgres]'",
    "psycopg2": "pip install 'cluster-workers[postgres]' and name the driver postgresql+psycopg://",
    "MySQLdb": "pip install mysqlclient",
    "pymysql": "pip install pymysql",
}


def driver_hint(module: str | None) -> str:
    """How to install a missing database driver (SQLite and PostgreSQL are the databases this tool is tested on)."""
    hint = DRIVER_PACKAGES.get(module or "", f"pip install the package that provides {module}")
    return hint if module in ("psycopg", "psycopg2") else f"{hint} (this tool is tested on SQLite and PostgreSQL only)"


STOP_CHECK_OPS = 100_000  # SQLite VM steps between checks for a stop request


def _abort_on_stop() -> int:
    return 1 if stopping.requested() else 0


def _install_sqlite_hooks(engine: Engine, *, busy_timeout: float, read_only: bool) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn, _record) -> None:  # type: ignore[no-untyped-def]
        dbapi_conn.isolation_level = None  # we emit BEGIN ourselves
        cur = dbapi_conn.cursor()
        cur.execute(f"PRAGMA busy_timeout = {int(busy_timeout * 1000)}")
        cur.execute("PRAGMA foreign_keys = ON")  # as the experiment application's connections run: we see what it sees
        if read_only:
            cur.execute("PRAGMA query_only = 1")
        cur.close()
        dbapi_conn.create_function(SQLITE_HASH_FUNCTION, 1, id_hash, deterministic=True)
        # a stop request (Ctrl-C, SIGTERM) aborts a long statement instead of waiting for it to end
        dbapi_conn.set_progress_handler(_abort_on_stop, STOP_CHECK_OPS)

    @event.listens_for(engine, "begin")
    def _on_begin(conn: sa.Connection) -> None:
        conn.exec_driver_sql("BEGIN" if read_only else "BEGIN IMMEDIATE")


def sqlite_pragma(conn: sa.Connection, pragma: str) -> None:
    """Run a PRAGMA outside any transaction (SQLAlchemy would otherwise BEGIN first)."""
    if conn.dialect.name == "sqlite":
        conn.connection.dbapi_connection.execute(f"PRAGMA {pragma}")  # type: ignore[union-attr]


def enable_wal(engine: Engine) -> None:
    """Switch a SQLite file to WAL (persistent) so readers can work beside our writer."""
    if engine.dialect.name != "sqlite":
        return
    with engine.connect() as conn:
        sqlite_pragma(conn, "journal_mode=WAL")


WRITE_PROBE = "cluster_workers_write_probe"


def check_writable(engine: Engine, url: str) -> None:
    """Refuse, before any work, a database this run could not commit to: a write transaction is begun, a table
    created in it and the transaction rolled back (nothing stays; SQLite's journal goes with the rollback). A
    read-only file or file system, a full disk, missing rights or a lock held past the busy timeout fail here, in
    one line, instead of at the commit after all the clustering."""
    path = sqlite_path(normalise_url(url))
    sidecars = [Path(f"{path}{suffix}") for suffix in ("-wal", "-shm")] if path is not None else []
    were = {p for p in sidecars if p.exists()}
    try:
        with engine.connect() as conn, conn.begin() as transaction:
            conn.exec_driver_sql(f"CREATE TABLE {WRITE_PROBE} (x INTEGER)")
            transaction.rollback()
    except sa.exc.SQLAlchemyError as exc:
        engine.dispose()
        for sidecar in sidecars:  # a WAL database opened but never written: leave no -wal / -shm of ours behind
            if sidecar not in were and sidecar.exists() and (sidecar.name.endswith("-shm") or sidecar.stat().st_size == 0):
                sidecar.unlink(missing_ok=True)
        error = db_error(exc, url, "checking that the database can be written, before any work")
        raise DatabaseError(f"{error}; nothing was done") from exc


def describe(url: str) -> str:
    """The URL without its password, for logs."""
    return make_url(normalise_url(url)).render_as_string(hide_password=True)


def db_error(exc: BaseException, url: str, doing: str = "") -> ClusterWorkersError:
    """One line for a failed statement or connection; a stop request that aborted the statement says so."""
    if stopping.requested():
        return Interrupted(f"{stopping.signal_name()}: interrupted {doing or 'a database statement'}; nothing was written")
    text = str(getattr(exc, "orig", exc)).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    where = describe(url)
    when = f" {doing}" if doing else ""
    if "lock timeout" in text:
        return DatabaseError(f"database {where} is locked by another session (waited busy_timeout for it){when}: {text}")
    if "statement timeout" in text:
        return DatabaseError(f"a statement on {where} ran past statement_timeout and was cancelled{when}: {text}")
    if "locked" in text or "busy" in text:
        return DatabaseError(f"database {where} is locked by another writer (waited for it){when}: {text}")
    if isinstance(exc, sa.exc.OperationalError) and any(
        k in text.lower() for k in ("connect", "refused", "timeout expired", "resolve host")
    ):
        return DatabaseError(f"cannot connect to {where}{when}: {text}")
    return DatabaseError(f"database error on {where}{when}: {text}")


@dataclass(frozen=True)
class Database:
    """A database URL and how long a read waits for a lock another writer holds: set once (from the settings),
    passed to every read-only command."""

    url: str
    busy_timeout: float = 30.0

    def read(self, fn):  # type: ignore[no-untyped-def]
        """``fn(conn)`` on a read-only connection (:func:`read_with`)."""
        return read_with(self.url, self.busy_timeout, fn)


def as_database(db: str | Database) -> Database:
    """A URL alone waits the default 30 s."""
    return db if isinstance(db, Database) else Database(db)


def read_with(url: str, busy_timeout: float, fn):  # type: ignore[no-untyped-def]
    """``fn(conn)`` on a read-only connection; SQL errors become one-line :class:`DatabaseError`."""
    engine = make_engine(url, busy_timeout=busy_timeout, read_only=True)
    try:
        with engine.connect() as conn:
            return fn(conn)
    except sa.exc.SQLAlchemyError as exc:
        stopping.check("while reading the database")  # a stop request aborted the statement
        raise DatabaseError(f"cannot read results: {str(getattr(exc, 'orig', exc)).splitlines()[0]}") from exc
    finally:
        engine.dispose()

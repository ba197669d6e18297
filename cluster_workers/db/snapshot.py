"""One snapshot per run: the counts, every worker's sample and the run key see the same database.

While the experiment keeps writing, a run must not count one database and
cluster another. PostgreSQL: the coordinator counts inside a REPEATABLE READ
transaction, exports its snapshot (``pg_export_snapshot()``) and keeps that
transaction open while the workers run; each worker reads inside the same
snapshot (``SET TRANSACTION SNAPSHOT``). The coordinator ends its transaction
as soon as every worker has read its sample (the workers say so through the
status folder; a worker's own read transaction ends with its fetch), so the
snapshot is held for the reads, not for the clustering. The transaction lifts
the server's ``idle_in_transaction_session_timeout`` for itself; while it is
open, VACUUM cannot remove row versions that became dead after the run started
(the experiment's inserts are not blocked). SQLite: the coordinator notes the
largest ``embedding`` rowid before counting, and the counts and every worker's
fetch leave out rows inserted after it (SQLite appends rowids; an experiment
that only inserts is seen exactly as it was when counted).

The sample's fingerprint (count and a digest of the sampled embedding ids,
computed in SQL) goes into each result, so a later run can tell that the
database changed since.
"""

from __future__ import annotations

import contextlib
import hashlib
import re
from dataclasses import dataclass
from typing import Iterator

import sqlalchemy as sa
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.functions import FunctionElement

SQLITE_HASH_FUNCTION = "cw_id_hash"
SNAPSHOT_APPLICATION = "cluster_workers snapshot"  # the exporting session's application_name while it holds the snapshot
_SNAPSHOT_ID = re.compile(r"^[0-9A-Fa-f]+-[0-9A-Fa-f]+(-[0-9A-Fa-f]+)?$")


@dataclass(frozen=True)
class SampleBound:
    """What one run's counts saw; plain values, so it travels to the workers."""

    max_rowid: int | None = None  # SQLite: embeddings with a larger rowid came later
    pg_snapshot: str | None = None  # PostgreSQL: the coordinator's exported snapshot

    def describe(self) -> str:
        if self.pg_snapshot:
            return f"PostgreSQL snapshot {self.pg_snapshot}"
        if self.max_rowid is not None:
            return f"embeddings up to rowid {self.max_rowid:,}"
        return "no bound"


def id_hash(value: object) -> int:
    """A 32-bit hash of an id's text (SQLite's user function for the sample digest)."""
    return int.from_bytes(hashlib.blake2b(str(value).encode(), digest_size=4).digest(), "big")


class id_digest(FunctionElement):
    """A 32-bit hash of an id column, per dialect; summed over a sample it fingerprints the sample."""

    type = sa.BigInteger()
    inherit_cache = True


@compiles(id_digest, "sqlite")
def _digest_sqlite(element, compiler, **kw):  # type: ignore[no-untyped-def]
    return f"{SQLITE_HASH_FUNCTION}({compiler.process(element.clauses, **kw)})"


@compiles(id_digest, "postgresql")
def _digest_postgresql(element, compiler, **kw):  # type: ignore[no-untyped-def]
    return f"('x' || substr(md5(CAST({compiler.process(element.clauses, **kw)} AS TEXT)), 1, 8))::bit(32)::bigint"


def embedding_rowid(table: str = "embedding") -> sa.ColumnElement:
    """SQLite's rowid of the embedding table (``embedding`` or ``embeddings``, by schema)."""
    return sa.literal_column(f"{table}.rowid", sa.Integer)


class RunSnapshot:
    """A connection to count on, the bound the workers read within, and :meth:`release` for when they have read."""

    def __init__(self, conn: sa.Connection, bound: SampleBound, transaction: sa.RootTransaction | None = None) -> None:
        self.conn = conn
        self.bound = bound
        self._transaction = transaction

    @property
    def held(self) -> bool:
        """Whether the exported snapshot's transaction is still open (PostgreSQL)."""
        return self._transaction is not None and self._transaction.is_active

    def release(self) -> bool:
        """End the exported snapshot's transaction, once no reader still has to import it; True if it was open."""
        if not self.held:
            return False
        self._transaction.rollback()  # it only read
        return True


@contextlib.contextmanager
def run_snapshot(engine: sa.Engine) -> Iterator[RunSnapshot]:
    """Count inside a snapshot the workers can read too; held until :meth:`RunSnapshot.release` or the block ends."""
    with engine.connect() as conn:
        if conn.dialect.name == "postgresql":
            conn = conn.execution_options(isolation_level="REPEATABLE READ")
            transaction = conn.begin()
            try:
                # this transaction waits, idle, until every worker has imported its snapshot: a server-wide
                # idle_in_transaction_session_timeout would end it and the workers still to start could not import
                # its snapshot; the setting is the session's own to lift
                conn.exec_driver_sql("SET LOCAL idle_in_transaction_session_timeout = 0")
                conn.exec_driver_sql(f"SET LOCAL application_name = '{SNAPSHOT_APPLICATION}'")  # pg_stat_activity names it
                snapshot = conn.exec_driver_sql("SELECT pg_export_snapshot()").scalar_one()
                yield RunSnapshot(conn, SampleBound(pg_snapshot=str(snapshot)), transaction)
            finally:
                if transaction.is_active:
                    transaction.rollback()
            return
        if conn.dialect.name == "sqlite":
            from cluster_workers.db.detect import schema_of  # here: detect imports nothing of this module

            table = schema_of(conn).embedding.name
            top = conn.execute(sa.text(f"SELECT max(rowid) FROM {table}")).scalar()
            conn.commit()
            yield RunSnapshot(conn, SampleBound(max_rowid=int(top or 0)))
            return
        yield RunSnapshot(conn, SampleBound())


def enter_snapshot(conn: sa.Connection, bound: SampleBound) -> sa.Connection:
    """Make ``conn``'s transaction read the run's snapshot (PostgreSQL); a no-op elsewhere."""
    if not bound.pg_snapshot or conn.dialect.name != "postgresql":
        return conn
    if not _SNAPSHOT_ID.match(bound.pg_snapshot):
        raise ValueError(f"not a PostgreSQL snapshot id: {bound.pg_snapshot!r}")
    conn = conn.execution_options(isolation_level="REPEATABLE READ")
    conn.begin()
    conn.exec_driver_sql(f"SET TRANSACTION SNAPSHOT '{bound.pg_snapshot}'")
    return conn

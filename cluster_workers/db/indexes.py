"""Opt-in covering indexes for the count and fetch queries (``cluster-workers index``).

Counting a downsample reads, for every kept text invocation, the embeddings of
that invocation: their model and id. Without an index holding those columns,
SQLite reads the embedding rows themselves -- 3 KB vectors included -- so a cold
count reads the whole 11.8 GB file. With ``ix_cw_embedding_invocation`` it reads
the index only; ``ix_cw_invocation_text`` does the same for numbering each run's
text invocations. Indexes change no result: the queries are the same. The current
schema gets the same two on its own tables, and a third its migrations lack:
``ix_cw_embedding_clusters_result`` on ``embedding_clusters.clustering_result_id``, without
which reading one result's memberships (``show``, ``export``, every analysis) scans
every membership row of every result.

Safe on a live database. PostgreSQL: ``CREATE INDEX CONCURRENTLY`` (and ``DROP
INDEX CONCURRENTLY``), outside a transaction, so the experiment's inserts go on
during the build; an invalid index left by an interrupted build is dropped and
built again. SQLite has no concurrent build: ``CREATE INDEX`` holds the write
lock until it finishes (writers wait up to their busy timeout), which
:func:`sqlite_warning` says before it starts. Either way the command holds the
run lock (no clustering runs meanwhile) and every statement is bounded by the
statement timeout.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import sqlalchemy as sa
from loguru import logger

from cluster_workers.db.detect import schema_of
from cluster_workers.db.experiment import is_text
from cluster_workers.db.schema import SCHEMAS, Schema


def _covering(s: Schema) -> tuple[sa.Index, ...]:
    """The opt-in indexes of one schema, on copies of its tables (so that create_all() never builds them)."""
    own = sa.MetaData()
    emb, inv = s.embedding.to_metadata(own), s.invocation.to_metadata(own)
    found = [
        sa.Index("ix_cw_embedding_invocation", emb.c.invocation_id, emb.c.embedding_model, emb.c.id),
        # in the order the sampling numbers them (no sort); on SQLite partial: text invocations only
        sa.Index(
            "ix_cw_invocation_text", inv.c.run_id, inv.c.sequence_number, inv.c.id, inv.c.type, sqlite_where=is_text(inv)
        ),  # PostgreSQL refuses the enum cast in a predicate: a full index there
    ]
    if s.layered:  # the application's migrations index embedding_clusters on (embedding_id, clustering_result_id) only
        ec = s.application_membership.to_metadata(own)
        found.append(sa.Index("ix_cw_embedding_clusters_result", ec.c.clustering_result_id))
    return tuple(found)


COVERING_BY_SCHEMA = {name: _covering(s) for name, s in SCHEMAS.items()}
COVERING = COVERING_BY_SCHEMA["legacy"]
SLOW_COUNT_S = 10.0  # counts slower than this, without the indexes, get a hint in the log


@dataclass(frozen=True)
class IndexChange:
    name: str
    action: str  # created, dropped, exists, absent
    seconds: float
    size_bytes: int | None


def covering(conn: sa.Connection) -> tuple[sa.Index, ...]:
    """The opt-in indexes for the connection's schema."""
    return COVERING_BY_SCHEMA[schema_of(conn).name]


def existing(conn: sa.Connection) -> set[str]:
    inspector = sa.inspect(conn)
    names: set[str] = set()
    for table in {ix.table.name for ix in covering(conn)}:
        if inspector.has_table(table):
            names.update(ix["name"] for ix in inspector.get_indexes(table))
    return names


def missing(conn: sa.Connection) -> list[str]:
    have = existing(conn)
    return [ix.name for ix in covering(conn) if ix.name not in have]


def index_size(conn: sa.Connection, name: str) -> int | None:
    """Bytes on disk (SQLite: dbstat when compiled in; PostgreSQL: pg_relation_size)."""
    try:
        if conn.dialect.name == "postgresql":
            return int(conn.execute(sa.text("SELECT pg_relation_size(CAST(:n AS regclass))"), {"n": name}).scalar_one())
        if conn.dialect.name == "sqlite":
            return int(conn.execute(sa.text("SELECT sum(pgsize) FROM dbstat WHERE name = :n"), {"n": name}).scalar_one() or 0)
    except sa.exc.SQLAlchemyError:
        return None
    return None


def invalid(conn: sa.Connection) -> set[str]:
    """PostgreSQL: our indexes left invalid by an interrupted ``CREATE INDEX CONCURRENTLY``."""
    if conn.dialect.name != "postgresql":
        return set()
    rows = conn.execute(sa.text(
        "SELECT c.relname FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid WHERE NOT i.indisvalid AND c.relname = ANY(:names)"
    ), {"names": [ix.name for ix in covering(conn)]})  # fmt: skip
    return {name for (name,) in rows}


def sqlite_warning(conn: sa.Connection, drop: bool) -> str | None:
    """What an index build will hold on SQLite, said before it starts (None elsewhere or when nothing is to do)."""
    if conn.dialect.name != "sqlite" or drop or not missing(conn):
        return None
    rows = conn.execute(sa.select(sa.func.count()).select_from(schema_of(conn).embedding)).scalar_one()
    return (
        f"SQLite builds an index under the database's write lock: writers wait (up to their busy timeout) until it "
        f"finishes; {rows:,} embeddings to index (docs/production.md gives the time measured on the production shape)"
    )


def _statement(ix: sa.Index, conn: sa.Connection, drop: bool) -> None:
    concurrently = conn.dialect.name == "postgresql"
    if drop:
        conn.exec_driver_sql(f"DROP INDEX {'CONCURRENTLY ' if concurrently else ''}IF EXISTS {ix.name}")
    else:
        ix.dialect_options["postgresql"]["concurrently"] = concurrently
        ix.create(conn)
    if conn.in_transaction():  # SQLite: each change committed on its own
        conn.commit()


def apply(conn: sa.Connection, drop: bool = False) -> list[IndexChange]:
    """Create (or drop) the covering indexes; idempotent. Each change a step of its own (autocommit), logged.

    On PostgreSQL ``conn`` must be in autocommit mode (a concurrent build cannot run in a transaction).
    """
    changes = []
    broken = invalid(conn)
    for ix in covering(conn):
        if ix.name in broken:
            logger.warning("index {}: invalid (an interrupted build); dropping it to build it again", ix.name)
            _statement(ix, conn, drop=True)
        present = ix.name in existing(conn)
        started = time.perf_counter()
        if drop and present:
            size = index_size(conn, ix.name)
            _statement(ix, conn, drop=True)
            action = "dropped"
        elif not drop and not present:
            _statement(ix, conn, drop=False)
            size = index_size(conn, ix.name)
            action = "created"
        else:
            size = index_size(conn, ix.name) if present else None
            action = "exists" if present else "absent"
        change = IndexChange(ix.name, action, time.perf_counter() - started, size)
        logger.info(
            "index {}: {} in {:.1f} s{}",
            change.name,
            change.action,
            change.seconds,
            f", {change.size_bytes / 2**20:,.0f} MiB" if change.size_bytes else "",
        )
        changes.append(change)
    return changes


def build_indexes(url: str, db_limits: dict, drop: bool = False) -> list[IndexChange]:
    """``index``: under the run lock, bounded by the statement timeout, concurrent on PostgreSQL."""
    from cluster_workers.db.connect import db_error, make_engine
    from cluster_workers.db.lock import run_lock

    with run_lock(url, db_limits):
        try:  # said before the build: read on a read-only connection (a writer's BEGIN IMMEDIATE would wait first)
            reader = make_engine(url, read_only=True, **db_limits)
            with reader.connect() as conn:
                warning = sqlite_warning(conn, drop)
            reader.dispose()
        except sa.exc.SQLAlchemyError as exc:
            raise db_error(exc, url, "while indexing") from exc
        if warning:
            logger.warning(warning)
        engine = make_engine(url, **db_limits)
        try:
            with engine.connect() as conn:
                if conn.dialect.name == "postgresql":
                    conn = conn.execution_options(isolation_level="AUTOCOMMIT")
                return apply(conn, drop=drop)
        except sa.exc.SQLAlchemyError as exc:
            raise db_error(exc, url, "while indexing") from exc
        finally:
            engine.dispose()

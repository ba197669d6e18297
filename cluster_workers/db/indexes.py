"""Opt-in covering indexes for the count and fetch queries (``cluster-workers index``).

Counting a downsample reads, for every kept text invocation, the embeddings of
that invocation: their model and id. Without an index holding those columns,
SQLite reads the embedding rows themselves -- 3 KB vectors included -- so a cold
count reads the whole 11.8 GB file. With ``ix_cw_embedding_invocation`` it reads
the index only; ``ix_cw_invocation_text`` does the same for numbering each run's
text invocations. Indexes change no result: the queries are the same.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import sqlalchemy as sa
from loguru import logger

from cluster_workers.db.sampling import is_text
from cluster_workers.db.schema import embedding, invocation

# copies of the tables, so that these opt-in indexes are not part of the schema that create_all() builds
_own = sa.MetaData()
_embedding, _invocation = embedding.to_metadata(_own), invocation.to_metadata(_own)
COVERING = (
    sa.Index("ix_cw_embedding_invocation", _embedding.c.invocation_id, _embedding.c.embedding_model, _embedding.c.id),
    # in the order the sampling numbers them (no sort); on SQLite partial: text invocations only
    sa.Index("ix_cw_invocation_text", _invocation.c.run_id, _invocation.c.sequence_number, _invocation.c.id, _invocation.c.type,
             sqlite_where=is_text(_invocation)),  # PostgreSQL refuses the enum cast in a predicate: a full index there
)
SLOW_COUNT_S = 10.0  # counts slower than this, without the indexes, get a hint in the log


@dataclass(frozen=True)
class IndexChange:
    name: str
    action: str  # created, dropped, exists, absent
    seconds: float
    size_bytes: int | None


def existing(conn: sa.Connection) -> set[str]:
    inspector = sa.inspect(conn)
    names: set[str] = set()
    for table in ("embedding", "invocation"):
        if inspector.has_table(table):
            names.update(ix["name"] for ix in inspector.get_indexes(table))
    return names


def missing(conn: sa.Connection) -> list[str]:
    have = existing(conn)
    return [ix.name for ix in COVERING if ix.name not in have]


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


def apply(conn: sa.Connection, drop: bool = False) -> list[IndexChange]:
    """Create (or drop) the covering indexes; idempotent. Each change in its own committed step, logged."""
    changes = []
    for ix in COVERING:
        present = ix.name in existing(conn)
        started = time.perf_counter()
        if drop and present:
            size = index_size(conn, ix.name)
            ix.drop(conn)
            conn.commit()
            action = "dropped"
        elif not drop and not present:
            ix.create(conn)
            conn.commit()
            size = index_size(conn, ix.name)
            action = "created"
        else:
            size = index_size(conn, ix.name) if present else None
            action = "exists" if present else "absent"
        change = IndexChange(ix.name, action, time.perf_counter() - started, size)
        logger.info(
            "index {}: {} in {:.1f} s{}", change.name, change.action, change.seconds,
            f", {change.size_bytes / 2**20:,.0f} MiB" if change.size_bytes else "",
        )
        changes.append(change)
    return changes

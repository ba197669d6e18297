"""Write every model's result in one transaction; read results back for listing and inspection."""

from __future__ import annotations

import datetime as dt
import os
import time
import uuid
from dataclasses import dataclass
from typing import Any, Callable, Protocol, Sequence

import numpy as np
import sqlalchemy as sa

from cluster_workers.db.schema import (
    RESULT_TABLES,
    clustering_result,
    embedding,
    embedding_cluster,
    invocation,
    metadata,
)
from cluster_workers.db.trees import byte_order, delete_trees, encode, sorted_positions, write_tree
from cluster_workers.errors import DatabaseError

INSERT_CHUNK = 50_000  # rows between progress calls (and stop checks) inside the commit
INSERT_MEMBERSHIPS = (
    "INSERT INTO embeddingcluster (id, embedding_id, clustering_result_id, medoid_embedding_id) VALUES (?, ?, ?, ?)"
)
NULL_TEXT = "\\N"  # NULL in COPY's text format
COPY_MEMBERSHIPS = "COPY embeddingcluster (id, embedding_id, clustering_result_id, medoid_embedding_id) FROM STDIN"
ALGORITHM = "hdbscan"


class ResultLike(Protocol):
    """What the writer needs of a worker's result (see ``worker.ModelResult``)."""

    model: str
    embedding_ids: np.ndarray
    labels: np.ndarray
    medoid_rows: np.ndarray
    parameters: dict
    started_at: float
    completed_at: float


def _utc(ts: float) -> dt.datetime:
    return dt.datetime.fromtimestamp(ts, tz=dt.timezone.utc).replace(tzinfo=None)


def time_ordered_ids(n: int, when: float) -> np.ndarray:
    """``n`` new UUIDs (version 7 layout: 48-bit millisecond time, 26 random bits, then a 48-bit counter
    from a random start), increasing in order, as ``(n, 16)`` bytes: appended at the end of the primary-key
    index, not scattered. Batches made in the same millisecond differ in the random bits and counter range."""
    ids = np.zeros((n, 16), dtype=np.uint8)
    ids[:, :6] = np.frombuffer(int(when * 1000).to_bytes(6, "big"), dtype=np.uint8)
    ids[:, 6:10] = np.frombuffer(os.urandom(4), dtype=np.uint8)
    start = int.from_bytes(os.urandom(5), "big")  # < 2**40: the counter never wraps its 48 bits
    counter = (start + np.arange(n, dtype=np.uint64)).astype(">u8").view(np.uint8).reshape(n, 8)
    ids[:, 10:] = counter[:, 2:]  # the low 48 bits
    ids[:, 6] = (ids[:, 6] & 0x0F) | 0x70  # version 7
    ids[:, 8] = (ids[:, 8] & 0x3F) | 0x80  # RFC 4122 variant
    return ids


def hex_rows(id_bytes: np.ndarray) -> list[str]:
    """32-char lower-case hex per row of ``(n, 16)`` bytes: how ``sa.Uuid`` stores a UUID on SQLite."""
    text = np.ascontiguousarray(id_bytes).tobytes().hex()
    return [text[i : i + 32] for i in range(0, len(text), 32)]


def membership_columns(result: ResultLike, result_id: uuid.UUID, when: float) -> tuple[list[str], list[str], str, list[str | None]]:
    """The ``embeddingcluster`` rows of one result as hex columns ``(ids, embedding ids, result id, medoid ids)``,
    sorted by embedding id (so the unique index is filled in order); outliers get a NULL medoid."""
    order = byte_order(result.embedding_ids)
    embedding_hex = hex_rows(result.embedding_ids[order])
    medoid_hex = hex_rows(result.embedding_ids[np.asarray(result.medoid_rows, dtype=np.int64)]) if len(result.medoid_rows) else []
    labels = result.labels[order].tolist()
    medoids = [medoid_hex[label] if label >= 0 else None for label in labels]
    return hex_rows(time_ordered_ids(len(order), when)), embedding_hex, result_id.hex, medoids


def _insert_memberships(conn: sa.Connection, result: ResultLike, result_id: uuid.UUID, progress: Any) -> int:
    """Write one result's memberships on the caller's transaction, the fastest way the driver has.

    SQLite: ``executemany`` of plain tuples on the driver connection; PostgreSQL: ``COPY``;
    anything else: SQLAlchemy's ``insert``. ``progress(rows)`` after each batch (it may raise to stop).
    """
    ids, embedding_ids, rid, medoids = membership_columns(result, result_id, time.time())
    n = len(ids)
    driver = conn.connection.driver_connection
    if conn.dialect.name == "postgresql":
        for start in range(0, n, INSERT_CHUNK):
            stop = min(n, start + INSERT_CHUNK)
            block = "".join(
                f"{ids[k]}\t{embedding_ids[k]}\t{rid}\t{medoids[k] or NULL_TEXT}\n" for k in range(start, stop)
            )  # COPY's text format; hex ids need no escaping
            with driver.cursor() as cur, cur.copy(COPY_MEMBERSHIPS) as copy:
                copy.write(block)
            if progress is not None:
                progress(stop - start)
        return n
    for start in range(0, n, INSERT_CHUNK):
        stop = min(n, start + INSERT_CHUNK)
        if conn.dialect.name == "sqlite":
            driver.executemany(INSERT_MEMBERSHIPS, zip(ids[start:stop], embedding_ids[start:stop], [rid] * (stop - start), medoids[start:stop]))
        else:
            conn.execute(sa.insert(embedding_cluster), [
                {"id": uuid.UUID(ids[k]), "embedding_id": uuid.UUID(embedding_ids[k]), "clustering_result_id": result_id,
                 "medoid_embedding_id": None if medoids[k] is None else uuid.UUID(medoids[k])} for k in range(start, stop)
            ])
        if progress is not None:
            progress(stop - start)
    return n


def create_result_tables(conn: sa.Connection) -> None:
    metadata.create_all(conn, tables=list(RESULT_TABLES), checkfirst=True)


def matching_results(conn: sa.Connection, model: str, run_key: dict) -> list[tuple[uuid.UUID, dict]]:
    """``(id, parameters)`` of the model's results made with the same run key, oldest first."""
    if not sa.inspect(conn).has_table(clustering_result.name):
        return []
    rows = conn.execute(
        sa.select(clustering_result.c.id, clustering_result.c.parameters)
        .where(clustering_result.c.embedding_model == model)
        .order_by(clustering_result.c.created_at)
    )
    return [(rid, params) for rid, params in rows if isinstance(params, dict) and params.get("run_key") == run_key]


def matching_result_ids(conn: sa.Connection, model: str, run_key: dict) -> list[uuid.UUID]:
    """Ids of the model's results made with the same run key (the settings that define a result)."""
    return [rid for rid, _ in matching_results(conn, model, run_key)]


def write_results(
    conn: sa.Connection,
    results: Sequence[ResultLike],
    run_key: dict,
    replace: bool,
    progress: Any = None,
    result_ids: Sequence[uuid.UUID] | None = None,
) -> dict[str, int]:
    """Insert every result on ``conn`` (the caller owns the one transaction).

    With ``replace``, the models' earlier results with the same run key are
    deleted first, in the same transaction. ``result_ids`` (one per result, in
    order) names the new rows; by default each gets a fresh uuid4. Returns row
    counts written.
    """
    if result_ids is not None and len(result_ids) != len(results):
        raise ValueError(f"{len(result_ids)} result ids for {len(results)} results")
    named = list(zip(results, result_ids if result_ids is not None else [None] * len(results)))
    create_result_tables(conn)
    if conn.dialect.name == "sqlite":
        conn.exec_driver_sql("PRAGMA cache_size = -1048576")  # up to 1 GiB of pages: index pages stay in memory
    deleted = 0
    if replace:
        for result in results:
            old = matching_result_ids(conn, result.model, run_key)
            if old:
                delete_trees(conn, old)
                deleted += conn.execute(
                    sa.delete(embedding_cluster).where(embedding_cluster.c.clustering_result_id.in_(old))
                ).rowcount
                conn.execute(sa.delete(clustering_result).where(clustering_result.c.id.in_(old)))
    written = 0
    created_at: dt.datetime | None = None
    for result, given_id in sorted(named, key=lambda pair: pair[0].completed_at):
        # each model's completion time, strictly increasing so "latest result" lookups are well defined
        stamp = _utc(result.completed_at)
        created_at = stamp if created_at is None or stamp > created_at else created_at + dt.timedelta(microseconds=1)
        result_id = given_id or uuid.uuid4()
        conn.execute(
            sa.insert(clustering_result),
            [
                {
                    "id": result_id,
                    "created_at": created_at,
                    "started_at": _utc(result.started_at),
                    "completed_at": _utc(result.completed_at),
                    "embedding_model": result.model,
                    "algorithm": ALGORITHM,
                    "parameters": {**result.parameters, "run_key": run_key},
                }
            ],
        )
        written += _insert_memberships(conn, result, result_id, progress)
        tree = getattr(result, "tree", None)
        if tree is not None:
            write_tree(conn, result_id, encode(tree, sorted_positions(result.embedding_ids), result.probabilities, result.outlier_scores))
    return {"results": len(results), "memberships": written, "deleted_memberships": deleted}


# --- reading back -------------------------------------------------------------------------


@dataclass(frozen=True)
class ResultSummary:
    id: uuid.UUID
    model: str
    created_at: dt.datetime | None
    started_at: dt.datetime | None
    completed_at: dt.datetime | None
    algorithm: str
    parameters: dict
    sample_count: int
    clusters: int
    outliers: int
    stale: bool | None = None  # the database's sample for these parameters differs now (None: not checked / unknown)

    @property
    def outlier_share(self) -> float:
        return self.outliers / self.sample_count if self.sample_count else 0.0

    @property
    def duration_s(self) -> float | None:
        if self.started_at and self.completed_at:
            return (self.completed_at - self.started_at).total_seconds()
        return None


@dataclass(frozen=True)
class ClusterSummary:
    medoid_embedding_id: uuid.UUID | None  # None: the outliers
    size: int
    medoid_text: str | None


def _summaries(conn: sa.Connection, ids: list[uuid.UUID] | None = None) -> list[ResultSummary]:
    """Results with their sample, cluster and outlier counts, newest first (only ``ids`` when given)."""
    cr, ec = clustering_result, embedding_cluster
    query = (
        sa.select(
            cr.c.id,
            cr.c.embedding_model,
            cr.c.created_at,
            cr.c.started_at,
            cr.c.completed_at,
            cr.c.algorithm,
            cr.c.parameters,
            sa.func.count(ec.c.id),
            sa.func.count(sa.distinct(ec.c.medoid_embedding_id)),
            sa.func.count(ec.c.id) - sa.func.count(ec.c.medoid_embedding_id),
        )
        .select_from(cr.outerjoin(ec, ec.c.clustering_result_id == cr.c.id))
        .group_by(cr.c.id)
        .order_by(cr.c.created_at.desc(), cr.c.embedding_model)
    )
    if ids is not None:
        query = query.where(cr.c.id.in_(ids))
    return [ResultSummary(*row) for row in conn.execute(query)]


def list_results(conn: sa.Connection) -> list[ResultSummary]:
    """Every clustering result with its sample, cluster and outlier counts, newest first."""
    if not sa.inspect(conn).has_table(clustering_result.name):
        return []
    return _summaries(conn)


LATEST = "latest"


def resolve_result_id(conn: sa.Connection, result_id: str) -> uuid.UUID:
    """A result's id from a full id, a unique id prefix, ``latest`` (the newest result) or ``latest:MODEL``.

    Reads ``clusteringresult`` only (ids, models, creation times), never the memberships.
    """
    cr = clustering_result
    wanted = result_id.strip()
    if not sa.inspect(conn).has_table(cr.name):
        raise DatabaseError("the database has no clustering results yet")
    if wanted.lower() == LATEST or wanted.lower().startswith(LATEST + ":"):
        model = wanted.split(":", 1)[1] if ":" in wanted else None
        query = sa.select(cr.c.id).order_by(cr.c.created_at.desc(), cr.c.embedding_model).limit(1)
        if model is not None:
            query = query.where(cr.c.embedding_model == model)
        found = conn.execute(query).scalar()
        if found is None:
            raise DatabaseError(f"no clustering result for model {model!r}" if model else "the database has no clustering results yet")
        return found
    prefix = wanted.lower().replace("-", "")
    ids = [i for (i,) in conn.execute(sa.select(cr.c.id)) if prefix and i.hex.startswith(prefix)]
    if not ids:
        raise DatabaseError(f"no clustering result with id {result_id!r}")
    if len(ids) > 1:
        raise DatabaseError(f"id prefix {result_id!r} matches {len(ids)} results; give more characters")
    return ids[0]


def find_result(conn: sa.Connection, result_id: str) -> ResultSummary:
    """One result by full id, unique id prefix (as printed by ``results``), ``latest`` or ``latest:MODEL``."""
    return _summaries(conn, [resolve_result_id(conn, result_id)])[0]


def results_to_delete(conn: sa.Connection, result_id: str | None = None, model: str | None = None) -> list[ResultSummary]:
    """The results one ``delete`` names: one id (prefix, ``latest``), every result of ``model``, or all (neither)."""
    if result_id is not None:
        return [find_result(conn, result_id)]
    rows = list_results(conn)
    if model is not None:
        rows = [r for r in rows if r.model == model]
        if not rows:
            raise DatabaseError(f"no clustering result for model {model!r}")
    return rows


def delete_results(conn: sa.Connection, ids: list[uuid.UUID], after_batch: Callable[[], None] | None = None) -> int:
    """Delete results and their memberships (in the caller's transaction), one result at a time;
    returns the memberships removed. ``after_batch`` runs after each (a safe point to stop)."""
    removed = 0
    for result_id in ids:
        delete_trees(conn, [result_id])
        removed += conn.execute(sa.delete(embedding_cluster).where(embedding_cluster.c.clustering_result_id == result_id)).rowcount
        conn.execute(sa.delete(clustering_result).where(clustering_result.c.id == result_id))
        if after_batch is not None:
            after_batch()
    return removed


def cluster_summaries(conn: sa.Connection, result_id: uuid.UUID) -> list[ClusterSummary]:
    """The result's clusters, largest first, with the medoid's text; outliers as one row with no medoid."""
    ec = embedding_cluster
    sizes = (
        sa.select(ec.c.medoid_embedding_id.label("medoid"), sa.func.count().label("size"))
        .where(ec.c.clustering_result_id == result_id)
        .group_by(ec.c.medoid_embedding_id)
        .subquery("sizes")
    )
    query = (
        sa.select(sizes.c.medoid, sizes.c.size, invocation.c.output_text)
        .select_from(
            sizes.outerjoin(embedding, embedding.c.id == sizes.c.medoid).outerjoin(
                invocation, invocation.c.id == embedding.c.invocation_id
            )
        )
        .order_by(sizes.c.size.desc(), sizes.c.medoid)  # the rank order of db/memberships.cluster_ranks
    )
    return [ClusterSummary(medoid, int(size), text) for medoid, size, text in conn.execute(query)]

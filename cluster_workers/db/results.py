"""Write every model's result in one transaction, and delete results; reading back is :mod:`.catalog`."""

from __future__ import annotations

import datetime as dt
import os
import time
import uuid
from typing import Any, Callable, Protocol, Sequence

import numpy as np
import sqlalchemy as sa

from cluster_workers.db.attached import (
    add_core_columns,
    byte_order,
    delete_assignments,
    delete_layers,
    delete_trees,
    encode_layer,
    encode_tree,
    sorted_positions,
    write_layer,
    write_tree,
)
from cluster_workers.db.catalog import dependency_refusal, dependents, find_results, held_by, result_stores
from cluster_workers.db.detect import schema_of
from cluster_workers.db.schema import Schema
from cluster_workers.errors import ClusterWorkersError

INSERT_CHUNK = 50_000  # rows between progress calls (and stop checks) inside the commit
NULL_TEXT = "\\N"  # NULL in COPY's text format
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


def hex_rows(id_bytes: np.ndarray, dashed: bool = False) -> list[str]:
    """32-char lower-case hex per row of ``(n, 16)`` bytes (how ``sa.Uuid`` stores a UUID on SQLite), or the
    36-char dashed form (the current schema's), built in numpy rather than per id."""
    text = np.ascontiguousarray(id_bytes).tobytes().hex()
    if not dashed:
        return [text[i : i + 32] for i in range(0, len(text), 32)]
    n = len(id_bytes)
    digits = np.frombuffer(text.encode(), dtype="S1").reshape(n, 32)
    out = np.full((n, 36), b"-", dtype="S1")
    for src, dst in (
        (slice(0, 8), slice(0, 8)),
        (slice(8, 12), slice(9, 13)),
        (slice(12, 16), slice(14, 18)),
        (slice(16, 20), slice(19, 23)),
        (slice(20, 32), slice(24, 36)),
    ):
        out[:, dst] = digits[:, src]
    joined = out.tobytes().decode()
    return [joined[i : i + 36] for i in range(0, len(joined), 36)]


def membership_columns(
    s: Schema, result: ResultLike, result_id: uuid.UUID, when: float
) -> tuple[list[str], list[str], str, list[str | None]]:
    """The membership rows of one result as text columns ``(ids, embedding ids, result id, medoid ids)`` in the
    schema's id format (32-char hex, or dashed for the current schema), sorted by embedding id (so the unique index
    is filled in order); outliers get a NULL medoid."""
    order = byte_order(result.embedding_ids)
    dashed = s.dashed_ids
    embedding_hex = hex_rows(result.embedding_ids[order], dashed)
    medoid_hex = (
        hex_rows(result.embedding_ids[np.asarray(result.medoid_rows, dtype=np.int64)], dashed) if len(result.medoid_rows) else []
    )
    ids = hex_rows(time_ordered_ids(len(order), when), dashed)
    rid = str(result_id) if dashed else result_id.hex
    labels = result.labels[order].tolist()
    medoids = [medoid_hex[label] if label >= 0 else None for label in labels]
    return ids, embedding_hex, rid, medoids


def membership_names(s: Schema) -> list[str]:
    """The membership table's columns a raw insert fills, in order (the stamps too, where the schema has them)."""
    names = ["id", "embedding_id", "clustering_result_id", "medoid_embedding_id"]
    return names + (["inserted_at", "updated_at"] if s.stamped else [])


def _insert_memberships(conn: sa.Connection, result: ResultLike, result_id: uuid.UUID, progress: Any) -> int:
    """Write one result's memberships into our memberships table, on the caller's transaction."""
    s = schema_of(conn)
    ids, embedding_ids, rid, medoids = membership_columns(s, result, result_id, time.time())
    return insert_membership_rows(conn, s.embedding_cluster, ids, embedding_ids, rid, medoids, progress)


def insert_membership_rows(conn: sa.Connection, table: sa.Table, ids: list[str], embedding_ids: list[str], rid: str,
                           medoids: list[str | None], progress: Any = None) -> int:  # fmt: skip
    """Insert membership rows given as text columns in the schema's id format (ours, or the application's own
    table for ``publish``), the fastest way the driver has: SQLite ``executemany`` of plain tuples on the driver
    connection, PostgreSQL ``COPY``, anything else SQLAlchemy's ``insert``. ``progress(rows)`` after each batch
    (it may raise to stop)."""
    s = schema_of(conn)
    stamps = [s.timestamp_text(_utc(time.time()))] * 2 if s.stamped else []
    names = membership_names(s)
    n = len(ids)
    driver = conn.connection.driver_connection
    if conn.dialect.name == "postgresql":
        copy_sql = f"COPY {table.name} ({', '.join(names)}) FROM STDIN"
        tail = "".join(f"\t{v}" for v in stamps)
        for start in range(0, n, INSERT_CHUNK):
            stop = min(n, start + INSERT_CHUNK)
            block = "".join(
                f"{ids[k]}\t{embedding_ids[k]}\t{rid}\t{medoids[k] or NULL_TEXT}{tail}\n" for k in range(start, stop)
            )  # COPY's text format; ids and timestamps need no escaping
            with driver.cursor() as cur, cur.copy(copy_sql) as copy:
                copy.write(block)
            if progress is not None:
                progress(stop - start)
        return n
    insert_sql = f"INSERT INTO {table.name} ({', '.join(names)}) VALUES ({', '.join('?' * len(names))})"
    for start in range(0, n, INSERT_CHUNK):
        stop = min(n, start + INSERT_CHUNK)
        if conn.dialect.name == "sqlite":
            rows = zip(
                ids[start:stop],
                embedding_ids[start:stop],
                [rid] * (stop - start),
                medoids[start:stop],
                *([v] * (stop - start) for v in stamps),
            )
            driver.executemany(insert_sql, rows)
        else:
            conn.execute(
                sa.insert(table),
                [
                    {
                        "id": uuid.UUID(ids[k]),
                        "embedding_id": uuid.UUID(embedding_ids[k]),
                        "clustering_result_id": uuid.UUID(rid),
                        "medoid_embedding_id": None if medoids[k] is None else uuid.UUID(medoids[k]),
                    }
                    for k in range(start, stop)
                ],
            )
        if progress is not None:
            progress(stop - start)
    return n


def create_result_tables(conn: sa.Connection) -> None:
    """The tables this tool writes that the database lacks (results, memberships, trees), after moving what
    0.2.0 left in the application's tables into them (:func:`~cluster_workers.db.repair.repair`)."""
    from cluster_workers.db.repair import repair

    s = schema_of(conn)
    s.metadata.create_all(conn, tables=list(s.ours), checkfirst=True)
    repair(conn)
    add_core_columns(conn)


def algorithm_name(run_key: dict, algorithm: str = ALGORITHM) -> str:
    """The ``algorithm`` a result of ours is written with: the engine family (``hdbscan`` or ``evoc``); the
    parameters say the rest."""
    return "evoc" if run_key.get("engine") == "evoc" else algorithm


def matching_results(conn: sa.Connection, model: str, run_key: dict) -> list[tuple[uuid.UUID, dict]]:
    """``(id, parameters)`` of the model's results made with the same run key, oldest first (a database 0.2.0
    wrote, not yet repaired, holds ours in the application's tables: found there too)."""
    found = []
    for store in result_stores(conn):
        cr = store.results
        rows = conn.execute(sa.select(cr.c.created_at, cr.c.id, cr.c.parameters).where(cr.c.embedding_model == model))
        found += [
            (created, rid, params)
            for created, rid, params in rows
            if isinstance(params, dict) and params.get("run_key") == run_key
        ]
    found.sort(key=lambda row: row[0] or dt.datetime.min)
    return [(rid, params) for _, rid, params in found]


def matching_result_ids(conn: sa.Connection, model: str, run_key: dict) -> list[uuid.UUID]:
    """Ids of the model's results made with the same run key (the settings that define a result)."""
    return [rid for rid, _ in matching_results(conn, model, run_key)]


def _delete_rows(conn: sa.Connection, ids: list[uuid.UUID]) -> int:
    """Delete results, their side rows and memberships (the caller's transaction); returns memberships removed.

    A result of ours goes with its tree, assignment and layer rows; one of the application's (named by id)
    from its own two tables, memberships first, as the application deletes it."""
    removed = 0
    for store in result_stores(conn):
        held = held_by(conn, store, ids)
        if not held:
            continue
        if store.ours:
            delete_trees(conn, held)
            delete_assignments(conn, held)
            delete_layers(conn, held)
        ec, cr = store.memberships, store.results
        removed += conn.execute(sa.delete(ec).where(ec.c.clustering_result_id.in_(held))).rowcount
        conn.execute(sa.delete(cr).where(cr.c.id.in_(held)))
    return removed


def write_results(
    conn: sa.Connection,
    results: Sequence[ResultLike],
    run_key: dict,
    replace: bool,
    progress: Any = None,
    result_ids: Sequence[uuid.UUID] | None = None,
    cascade: bool = False,
) -> dict[str, int]:
    """Insert every result on ``conn`` (the caller owns the one transaction).

    With ``replace``, the models' earlier results with the same run key are
    deleted first, in the same transaction. ``result_ids`` (one per result, in
    order) names the new rows; by default each gets a fresh uuid4. Returns row
    counts written. On the current schema a result whose (model, algorithm, layer)
    is taken raises :class:`ResultConflict` before anything is inserted.
    """
    if result_ids is not None and len(result_ids) != len(results):
        raise ValueError(f"{len(result_ids)} result ids for {len(results)} results")
    s = schema_of(conn)
    named = list(zip(results, result_ids if result_ids is not None else [None] * len(results)))
    create_result_tables(conn)
    if conn.dialect.name == "sqlite":
        conn.exec_driver_sql("PRAGMA cache_size = -1048576")  # up to 1 GiB of pages: index pages stay in memory
    deleted = 0
    if replace:
        for result in results:
            old = matching_result_ids(conn, result.model, run_key)
            made_from = dependents(conn, old) if old else []
            if made_from and not cascade:  # recut --force, assign --force, or a dependent made since the plan
                raise ClusterWorkersError(
                    dependency_refusal(find_results(conn, old), made_from, "--cascade (cluster) or delete them first")
                )
            old += [r.id for r in made_from]
            if old:
                deleted += _delete_rows(conn, old)
    algorithm = algorithm_name(run_key)
    written = 0
    created_at: dt.datetime | None = None
    ids = [given_id or uuid.uuid4() for _, given_id in named]
    runs = {r.model: rid for (r, _), rid in zip(named, ids) if getattr(r, "layer_values", None) is not None and r.layer == 0}
    positions: dict[int, np.ndarray] = {}  # per id array: a run's layers share their rows
    for (result, _), result_id in sorted(zip(named, ids), key=lambda pair: pair[0][0].completed_at):
        # each model's completion time, strictly increasing so "latest result" lookups are well defined
        stamp = _utc(result.completed_at)
        created_at = stamp if created_at is None or stamp > created_at else created_at + dt.timedelta(microseconds=1)
        row = {
            "id": result_id,
            "created_at": created_at,
            "started_at": _utc(result.started_at),
            "completed_at": _utc(result.completed_at),
            "embedding_model": result.model,
            "algorithm": algorithm,
            "parameters": {**result.parameters, "run_key": run_key},
        }
        layer = int(getattr(result, "layer", 0))
        if s.layered:
            row["layer"] = layer
        elif layer:
            row["parameters"]["layer"] = layer  # the legacy schema has no layer column
        conn.execute(sa.insert(s.clustering_result), [row])
        written += _insert_memberships(conn, result, result_id, progress)
        tree, values = getattr(result, "tree", None), getattr(result, "layer_values", None)
        if tree is not None or values is not None:
            rows = positions.get(id(result.embedding_ids))
            if rows is None:
                rows = positions[id(result.embedding_ids)] = sorted_positions(result.embedding_ids)
        if tree is not None:
            write_tree(
                conn,
                result_id,
                encode_tree(tree, rows, result.probabilities, result.outlier_scores, getattr(result, "cores", None)),
            )
        if values is not None:
            write_layer(
                conn,
                result_id,
                encode_layer(
                    runs.get(result.model, result_id),
                    layer,
                    values.layers,
                    values.persistence,
                    rows,
                    result.probabilities,
                    values.parents,
                ),
            )
    return {"results": len(results), "memberships": written, "deleted_memberships": deleted}


def delete_results(conn: sa.Connection, ids: list[uuid.UUID], after_batch: Callable[[], None] | None = None) -> int:
    """Delete results and their memberships (in the caller's transaction), one result at a time;
    returns the memberships removed. ``after_batch`` runs after each (a safe point to stop). What 0.2.0 left in
    the application's tables is moved into ours first (:mod:`.repair`), so ids resolved before still name them."""
    from cluster_workers.db.repair import repair

    repair(conn)
    removed = 0
    for result_id in ids:
        removed += _delete_rows(conn, [result_id])
        if after_batch is not None:
            after_batch()
    return removed

"""Write every model's result in one transaction; read results back for listing and inspection."""

from __future__ import annotations

import datetime as dt
import uuid
from dataclasses import dataclass
from typing import Any, Iterable, Iterator, Protocol, Sequence

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
from cluster_workers.errors import DatabaseError

INSERT_CHUNK = 20_000
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


def _as_uuids(id_bytes: np.ndarray) -> list[uuid.UUID]:
    raw = np.ascontiguousarray(id_bytes).tobytes()
    return [uuid.UUID(bytes=raw[i : i + 16]) for i in range(0, len(raw), 16)]


def membership_rows(result: ResultLike, result_id: uuid.UUID) -> Iterator[dict[str, Any]]:
    """One ``embeddingcluster`` row per sampled embedding; outliers get a NULL medoid."""
    ids = _as_uuids(result.embedding_ids)
    medoid_ids = [ids[int(r)] for r in result.medoid_rows]
    for emb_id, label in zip(ids, result.labels.tolist()):
        yield {
            "id": uuid.uuid4(),
            "embedding_id": emb_id,
            "clustering_result_id": result_id,
            "medoid_embedding_id": medoid_ids[label] if label >= 0 else None,
        }


def _chunks(rows: Iterable[dict[str, Any]], size: int) -> Iterator[list[dict[str, Any]]]:
    chunk: list[dict[str, Any]] = []
    for row in rows:
        chunk.append(row)
        if len(chunk) == size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


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
) -> dict[str, int]:
    """Insert every result on ``conn`` (the caller owns the one transaction).

    With ``replace``, the models' earlier results with the same run key are
    deleted first, in the same transaction. Returns row counts written.
    """
    create_result_tables(conn)
    deleted = 0
    if replace:
        for result in results:
            old = matching_result_ids(conn, result.model, run_key)
            if old:
                deleted += conn.execute(
                    sa.delete(embedding_cluster).where(embedding_cluster.c.clustering_result_id.in_(old))
                ).rowcount
                conn.execute(sa.delete(clustering_result).where(clustering_result.c.id.in_(old)))
    written = 0
    created_at: dt.datetime | None = None
    for result in sorted(results, key=lambda r: r.completed_at):
        # each model's completion time, strictly increasing so "latest result" lookups are well defined
        stamp = _utc(result.completed_at)
        created_at = stamp if created_at is None or stamp > created_at else created_at + dt.timedelta(microseconds=1)
        result_id = uuid.uuid4()
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
        for chunk in _chunks(membership_rows(result, result_id), INSERT_CHUNK):
            conn.execute(sa.insert(embedding_cluster), chunk)
            written += len(chunk)
            if progress is not None:
                progress(len(chunk))
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


def list_results(conn: sa.Connection) -> list[ResultSummary]:
    """Every clustering result with its sample, cluster and outlier counts, newest first."""
    if not sa.inspect(conn).has_table(clustering_result.name):
        return []
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
    return [ResultSummary(*row) for row in conn.execute(query)]


def find_result(conn: sa.Connection, result_id: str) -> ResultSummary:
    """One result by full id or unique id prefix (as printed by ``results``)."""
    wanted = result_id.strip().lower().replace("-", "")
    matches = [r for r in list_results(conn) if r.id.hex.startswith(wanted)] if wanted else []
    if not matches:
        raise DatabaseError(f"no clustering result with id {result_id!r}")
    if len(matches) > 1:
        raise DatabaseError(f"id prefix {result_id!r} matches {len(matches)} results; give more characters")
    return matches[0]


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

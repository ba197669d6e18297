"""Reading results back: list, resolve an id or prefix, summarise a result's clusters. Writing is :mod:`.results`."""

from __future__ import annotations

import datetime as dt
import uuid
from dataclasses import dataclass

import sqlalchemy as sa

from cluster_workers.db.detect import schema_of
from cluster_workers.errors import DatabaseError


def has_results_table(conn: sa.Connection) -> bool:
    return sa.inspect(conn).has_table(schema_of(conn).clustering_result.name)


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
    layer: int = 0  # the current schema's column; the legacy schema keeps it in parameters
    ours: bool = True  # made by this tool; False for the users' own results (current schema, no run key: their EVoC layers)

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
    parent: tuple[int, int] | None = None  # an evoc layer's cluster: (layer, rank) of the coarser cluster holding it


def _parameters(value: object) -> dict:
    """A result's parameters as a dict, whoever wrote them (JSON text that was never decoded, or nothing)."""
    if isinstance(value, dict):
        return value
    if isinstance(value, str):
        import json

        try:
            decoded = json.loads(value)
        except ValueError:
            return {"raw": value}
        return decoded if isinstance(decoded, dict) else {"raw": decoded}
    return {} if value is None else {"raw": value}


def _summaries(conn: sa.Connection, ids: list[uuid.UUID] | None = None) -> list[ResultSummary]:
    """Results with their sample, cluster and outlier counts, newest first (only ``ids`` when given)."""
    s = schema_of(conn)
    cr, ec = s.clustering_result, s.embedding_cluster
    layer = cr.c.layer if s.layered else sa.literal(0)
    counts = (
        sa.select(
            ec.c.clustering_result_id.label("result_id"),
            sa.func.count().label("n"),
            sa.func.count(sa.distinct(ec.c.medoid_embedding_id)).label("clusters"),
            (sa.func.count() - sa.func.count(ec.c.medoid_embedding_id)).label("outliers"),
        )
        .group_by(ec.c.clustering_result_id)
    )
    if ids is not None:
        counts = counts.where(ec.c.clustering_result_id.in_(ids))
    counts = counts.subquery("counts")
    query = (
        sa.select(
            cr.c.id, cr.c.embedding_model, cr.c.created_at, cr.c.started_at, cr.c.completed_at, cr.c.algorithm, cr.c.parameters,
            sa.func.coalesce(counts.c.n, 0), sa.func.coalesce(counts.c.clusters, 0), sa.func.coalesce(counts.c.outliers, 0), layer,
        )
        .select_from(cr.outerjoin(counts, counts.c.result_id == cr.c.id))
        .order_by(cr.c.created_at.desc(), cr.c.embedding_model, layer)
    )
    if ids is not None:
        query = query.where(cr.c.id.in_(ids))
    out = []
    for rid, model, created, started, completed, algorithm, params, n, clusters, outliers, lay in conn.execute(query):
        params = _parameters(params)
        lay = int(lay) if s.layered else int(params.get("layer", 0) or 0)
        # legacy: the result tables are this tool's own; current: they are the users', and ours carry a run key
        mine = not s.layered or "run_key" in params
        out.append(ResultSummary(rid, model, created, started, completed, algorithm, params, int(n), int(clusters), int(outliers),
                                 layer=lay, ours=mine))
    return out


def list_results(conn: sa.Connection) -> list[ResultSummary]:
    """Every clustering result with its sample, cluster and outlier counts, newest first."""
    if not has_results_table(conn):
        return []
    return _summaries(conn)


LATEST = "latest"


def resolve_result_id(conn: sa.Connection, result_id: str) -> uuid.UUID:
    """A result's id from a full id, a unique id prefix, ``latest`` (the newest result) or ``latest:MODEL``.

    Reads the results table only (ids, models, creation times), never the memberships.
    """
    cr = schema_of(conn).clustering_result
    wanted = result_id.strip()
    if not has_results_table(conn):
        raise DatabaseError("the database has no clustering results yet")
    if wanted.lower() == LATEST or wanted.lower().startswith(LATEST + ":"):
        model = wanted.split(":", 1)[1] if ":" in wanted else None
        query = sa.select(cr.c.id).order_by(cr.c.created_at.desc(), cr.c.embedding_model).limit(1)
        if model is not None:
            query = query.where(cr.c.embedding_model == model)
        found = conn.execute(query).scalar()
        if found is None and model:
            have = sorted(conn.execute(sa.select(cr.c.embedding_model).distinct()).scalars())
            raise DatabaseError(f"no clustering result for model {model!r}; results exist for: {', '.join(have) or 'no model'}")
        if found is None:
            raise DatabaseError("the database has no clustering results yet")
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
    """The results one ``delete`` names: one id (prefix, ``latest``; anyone's result), or every result of
    ``model``, or all (neither) -- of *ours* only: the users' own results (no run key, e.g. their EVoC layers)
    are deleted only by naming their id."""
    if result_id is not None:
        return [find_result(conn, result_id)]
    rows = [r for r in list_results(conn) if r.ours]
    if model is not None:
        rows = [r for r in rows if r.model == model]
        if not rows:
            raise DatabaseError(f"no clustering result of this tool for model {model!r} (the users' own results are deleted by id)")
    return rows


def foreign_results(conn: sa.Connection, model: str | None = None) -> int:
    """How many results this tool did not make (left alone by ``delete --all`` / ``--model``)."""
    return sum(1 for r in list_results(conn) if not r.ours and (model is None or r.model == model))



def cluster_summaries(conn: sa.Connection, result_id: uuid.UUID) -> list[ClusterSummary]:
    """The result's clusters, largest first, with the medoid's text; outliers as one row with no medoid."""
    s = schema_of(conn)
    ec, embedding, invocation = s.embedding_cluster, s.embedding, s.invocation
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

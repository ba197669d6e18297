"""``publish``: one of our results made the experiment application's clustering of its model.

The application keeps one clustering per embedding model in its own ``clustering_results`` /
``embedding_clusters``: one results row per layer, one membership per embedding per layer
named by the cluster's medoid (NULL: noise). Its analysis loader pivots those rows on
``layer``, and its recompute replaces every row of the model. Publishing writes exactly
that shape from a result of ours -- every row of the model deleted the application's way
(memberships, then results), ours written, in one transaction -- so the application's
whole pipeline uses it unchanged. Our own copy stays in our tables. The rows carry no
``run_key`` (which marks rows 0.2.0 wrote, :mod:`.repair`): they are the application's now.
"""

from __future__ import annotations

import datetime as dt
import time
import uuid
from dataclasses import dataclass, field

import numpy as np
import sqlalchemy as sa

from cluster_workers.db.catalog import ResultSummary, id_chunks, memberships_of
from cluster_workers.db.detect import schema_of
from cluster_workers.db.experiment import id_hex, raw_column
from cluster_workers.db.results import hex_rows, insert_membership_rows, time_ordered_ids
from cluster_workers.errors import DatabaseError


@dataclass(frozen=True)
class PublishedLayer:
    """One layer as the application will hold it: its results row and its memberships (dashed ids)."""

    layer: int
    algorithm: str  # "hdbscan" or "evoc", as the application names its algorithms
    parameters: dict
    started_at: dt.datetime | None
    completed_at: dt.datetime | None
    embedding_ids: list[str]
    medoid_ids: list[str | None]

    @property
    def clusters(self) -> int:
        return len({m for m in self.medoid_ids if m is not None})


@dataclass(frozen=True)
class ReplacedResult:
    """One of the application's results of the model, deleted by ``publish``."""

    id: uuid.UUID
    algorithm: str
    layer: int
    memberships: int


@dataclass
class PublishPlan:
    model: str
    source: ResultSummary
    layers: list[PublishedLayer]
    replaced: list[ReplacedResult]
    embeddings: int  # the model's embeddings a whole result holds (calibration runs left out, as in every sample)
    covered: int  # of them, held by the published result
    gone: int = 0  # rows of the result whose embedding the application has deleted since (left out)
    result_ids: list[uuid.UUID] = field(default_factory=list)  # the application's new results, one per layer, when written

    def as_dict(self) -> dict:
        return {
            "model": self.model,
            "source": str(self.source.id),
            "embeddings": self.embeddings,
            "covered": self.covered,
            "gone": self.gone,
            "deleted": [
                {"id": str(r.id), "algorithm": r.algorithm, "layer": r.layer, "memberships": r.memberships} for r in self.replaced
            ],
            "written": [
                {"layer": p.layer, "algorithm": p.algorithm, "memberships": len(p.embedding_ids), "clusters": p.clusters}
                for p in self.layers
            ],
            "result_ids": [str(r) for r in self.result_ids],
        }


def applications_results(conn: sa.Connection, model: str) -> list[ReplacedResult]:
    """The application's results of ``model`` (every algorithm), with their membership counts."""
    s = schema_of(conn)
    cr, ec = s.application_result, s.application_membership
    if cr is None or ec is None:
        raise DatabaseError(
            "publish writes into the current schema's clustering_results; this is a legacy-schema "
            "database, whose result tables are this tool's own already"
        )
    counts = (
        sa.select(ec.c.clustering_result_id.label("rid"), sa.func.count().label("n"))
        .group_by(ec.c.clustering_result_id)
        .subquery()
    )
    rows = conn.execute(
        sa.select(cr.c.id, cr.c.algorithm, cr.c.layer, sa.func.coalesce(counts.c.n, 0))
        .select_from(cr.outerjoin(counts, counts.c.rid == cr.c.id))
        .where(cr.c.embedding_model == model)
        .order_by(cr.c.layer, cr.c.algorithm)
    )
    return [ReplacedResult(rid, algorithm, int(layer), int(n)) for rid, algorithm, layer, n in rows]


def model_embeddings(conn: sa.Connection, model: str) -> int:
    """The model's embeddings a whole result holds: every text step's of every run but the calibration runs (the
    sample of ``--downsample 1``)."""
    from cluster_workers.db.experiment import sampled_counts

    after, _ = sampled_counts(conn, 1)
    return after.get(model, 0)


def stored_layer(conn: sa.Connection, result_id: uuid.UUID) -> tuple[list[str], list[str | None], int]:
    """A result's memberships whose embedding still exists, as dashed ids ``(embeddings, medoids)``, and how many
    rows were left out because the application has deleted their embedding since."""
    s = schema_of(conn)
    ec, embedding = memberships_of(conn, result_id), s.embedding
    rows = conn.execute(
        sa.select(raw_column(ec.c.embedding_id), raw_column(ec.c.medoid_embedding_id), embedding.c.id.is_not(None))
        .select_from(ec.outerjoin(embedding, embedding.c.id == ec.c.embedding_id))
        .where(ec.c.clustering_result_id == result_id)
        .order_by(ec.c.embedding_id)
    ).all()
    kept = [(e, m) for e, m, present in rows if present]
    return (
        [str(uuid.UUID(hex=id_hex(e))) for e, _ in kept],
        [None if m is None else str(uuid.UUID(hex=id_hex(m))) for _, m in kept],
        len(rows) - len(kept),
    )


def layer_from_labels(
    embedding_ids: np.ndarray, labels: np.ndarray, medoid_rows: np.ndarray
) -> tuple[list[str], list[str | None]]:
    """Dashed ``(embedding ids, medoid ids)`` of a clustering given as ``(n, 16)`` id bytes, labels and medoid rows."""
    dashed = hex_rows(embedding_ids, dashed=True)
    medoid_of = [dashed[int(r)] for r in medoid_rows]
    return dashed, [medoid_of[int(label)] if label >= 0 else None for label in labels]


def missing_medoids(conn: sa.Connection, layers: list[PublishedLayer]) -> int:
    """How many clusters' medoids the application has deleted since (their rows would break its foreign key)."""
    embedding = schema_of(conn).embedding
    wanted = sorted({m for p in layers for m in p.medoid_ids if m is not None})
    present: set[str] = set()
    for chunk in id_chunks([uuid.UUID(m) for m in wanted]):
        present.update(str(i) for i in conn.execute(sa.select(embedding.c.id).where(embedding.c.id.in_(chunk))).scalars())
    return len(wanted) - len(present)


def write_published(conn: sa.Connection, plan: PublishPlan, after_layer=None) -> list[uuid.UUID]:  # type: ignore[no-untyped-def]
    """On the caller's transaction: delete every row of the model in the application's two tables (memberships
    first, as the application deletes), then write one results row and its memberships per layer. Returns the
    new results' ids. ``after_layer()`` runs after each layer is written (a safe point to stop)."""
    s = schema_of(conn)
    cr, ec = s.application_result, s.application_membership
    assert cr is not None and ec is not None  # applications_results refused the legacy schema already
    old = [r.id for r in plan.replaced]
    for chunk in id_chunks(old):
        conn.execute(sa.delete(ec).where(ec.c.clustering_result_id.in_(chunk)))
        conn.execute(sa.delete(cr).where(cr.c.id.in_(chunk)))
    now = dt.datetime.now(dt.timezone.utc).replace(tzinfo=None)
    written = []
    for p in plan.layers:
        result_id = uuid.uuid4()
        conn.execute(sa.insert(cr), [{
            "id": result_id, "embedding_model": plan.model, "algorithm": p.algorithm, "parameters": p.parameters,
            "layer": p.layer, "started_at": p.started_at or now, "completed_at": p.completed_at or now,
            "created_at": now, "updated_at": now,
        }])  # fmt: skip
        ids = hex_rows(time_ordered_ids(len(p.embedding_ids), time.time()), dashed=True)
        insert_membership_rows(conn, ec, ids, p.embedding_ids, str(result_id), p.medoid_ids)
        written.append(result_id)
        if after_layer is not None:
            after_layer()
    return written

"""One result's memberships read back, joined with the experiment: runs, text positions, texts, vectors.

Clusters are named by *rank*: 1 is the largest cluster of the result, 2 the next
(ties broken by medoid id, the same order ``show`` prints), and ``-1`` the
outliers. Everything here is SQL; the analyses in :mod:`cluster_workers.analysis`
get plain arrays.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Iterator

import numpy as np
import sqlalchemy as sa

from cluster_workers.db.attached import point_scores
from cluster_workers.db.catalog import memberships_of
from cluster_workers.db.detect import schema_of
from cluster_workers.db.experiment import (
    STREAM_ROWS,
    TextPositions,
    driver_rows,
    id_hex,
    is_text,
    network_label,
    raw_column,
    text_index,
    text_positions,
    uuid_bytes,
)
from cluster_workers.db.schema import Schema

OUTLIER = -1
EXPORT_COLUMNS = (
    "embedding_id",
    "invocation_id",
    "run_id",
    "network",
    "initial_prompt",
    "sequence_number",
    "text_index",
    "cluster",
    "medoid_embedding_id",
    "output_text",
    "probability",
    "outlier_score",
    "core_distance",
    "state",
    "core",
)
FLOAT_COLUMNS = ("probability", "outlier_score", "core_distance")  # empty for a result made before trees (cores) were kept


def cluster_ranks(conn: sa.Connection, result_id: uuid.UUID) -> dict[uuid.UUID, int]:
    """``medoid embedding id -> rank`` (1 = largest cluster); outliers (no medoid) are not in it."""
    ec = memberships_of(conn, result_id)
    sizes = conn.execute(
        sa.select(ec.c.medoid_embedding_id, sa.func.count())
        .where(ec.c.clustering_result_id == result_id, ec.c.medoid_embedding_id.is_not(None))
        .group_by(ec.c.medoid_embedding_id)
    ).all()
    return rank_by_size({medoid: n for medoid, n in sizes}, key=lambda medoid: medoid.hex)


def rank_by_size(sizes: dict, key=str) -> dict:  # type: ignore[no-untyped-def]
    """``medoid -> rank``: 1 for the largest cluster, ties in ``key(medoid)`` order (the order ``show`` prints)."""
    ordered = sorted(sizes, key=lambda medoid: (-sizes[medoid], key(medoid)))
    return {medoid: rank for rank, medoid in enumerate(ordered, 1)}


def _text_positions(s: Schema) -> sa.Subquery:
    """``(invocation_id, text_index)`` for every text invocation."""
    invocation = s.invocation
    return (
        sa.select(invocation.c.id.label("invocation_id"), text_index(s).label("text_index"))
        .where(is_text(invocation))
        .subquery("text_position")
    )


def membership_query(result_id: uuid.UUID, s: Schema, ec: sa.Table) -> sa.Select:
    """The export's columns (``cluster`` as the medoid id, ranked by the caller), in run and sequence order;
    ``ec``: the memberships table holding the result (:func:`~cluster_workers.db.catalog.memberships_of`)."""
    pos = _text_positions(s)
    embedding, invocation, run = s.embedding, s.invocation, s.run
    return (
        sa.select(
            ec.c.embedding_id,
            embedding.c.invocation_id,
            invocation.c.run_id,
            run.c.network,
            run.c.initial_prompt,
            invocation.c.sequence_number,
            pos.c.text_index,
            ec.c.medoid_embedding_id,
            invocation.c.output_text,
        )
        .select_from(
            ec.join(embedding, embedding.c.id == ec.c.embedding_id)
            .join(invocation, invocation.c.id == embedding.c.invocation_id)
            .join(run, run.c.id == invocation.c.run_id)
            .outerjoin(pos, pos.c.invocation_id == invocation.c.id)
        )
        .where(ec.c.clustering_result_id == result_id)
        .order_by(invocation.c.run_id, invocation.c.sequence_number, ec.c.embedding_id)
    )


def iter_memberships(
    conn: sa.Connection, result_id: uuid.UUID, states: dict[tuple[str, int], tuple[int, int]], batch: int = STREAM_ROWS
) -> Iterator[list[tuple]]:
    """Batches of rows in :data:`EXPORT_COLUMNS` order, streamed (a server-side cursor on PostgreSQL); ``state``
    and ``core`` from ``states``: ``(run id hex, text step) -> (state, core)``, as the caller milestoned them."""
    ranks = cluster_ranks(conn, result_id)
    scores = point_scores(conn, result_id)
    none, no_state = (None, None, None), (None, None)
    result = conn.execute(
        membership_query(result_id, schema_of(conn), memberships_of(conn, result_id)),
        execution_options={"stream_results": True, "yield_per": batch},
    )
    for part in result.partitions(batch):
        yield [
            (
                emb,
                inv,
                run_id,
                network_label(network),
                prompt,
                seq,
                tix,
                ranks.get(medoid, OUTLIER) if medoid is not None else OUTLIER,
                medoid,
                text,
                *scores.get(uuid_bytes(emb), none),
                *states.get((id_hex(run_id), tix), no_state),
            )
            for emb, inv, run_id, network, prompt, seq, tix, medoid, text in part
        ]


@dataclass(frozen=True)
class Labelled:
    """One result as arrays: per sampled embedding its invocation, run, text position and cluster rank."""

    invocation_ids: np.ndarray  # (n,) object: uuid.UUID
    run_ids: np.ndarray  # (n,) object: uuid.UUID
    prompts: np.ndarray  # (n,) object: the run's initial prompt
    networks: np.ndarray  # (n,) object: the run's network, its models joined by "→" (the application's label)
    text_index: np.ndarray  # (n,) int64
    clusters: np.ndarray  # (n,) int64 rank, -1 outlier
    medoids: dict[int, uuid.UUID]  # rank -> medoid embedding id
    probabilities: np.ndarray | None = None  # (n,) float64 membership probability (NaN: not stored), when asked for

    @property
    def stored_probabilities(self) -> np.ndarray | None:
        """The probabilities when the result stores any (a tree), else None (e.g. the application's EVoC layers)."""
        if self.probabilities is None or np.isnan(self.probabilities).all():
            return None
        return self.probabilities


def labelled(
    conn: sa.Connection,
    result_id: uuid.UUID,
    positions: "TextPositions | None" = None,
    experiment: str | uuid.UUID | None = None,
    with_probabilities: bool = False,
) -> Labelled:
    """The whole result in memory as arrays (no texts). ``positions`` from :func:`text_positions` (reused if given).

    ``experiment``: only the rows of that experiment's runs (the application clusters globally and analyses per
    experiment); clusters keep the ranks of the whole result, so they are named as ``show`` names them.
    """
    positions = text_positions(conn) if positions is None else positions
    s = schema_of(conn)
    ec, embedding, run = memberships_of(conn, result_id), s.embedding, s.run
    rows = driver_rows(
        conn,
        sa.select(raw_column(embedding.c.invocation_id), raw_column(ec.c.medoid_embedding_id), raw_column(ec.c.embedding_id))
        .select_from(ec.join(embedding, embedding.c.id == ec.c.embedding_id))
        .where(ec.c.clustering_result_id == result_id),
    )
    probabilities = _probabilities(conn, result_id, [e for _, _, e in rows]) if with_probabilities else None
    rows = [(i, m) for i, m, _ in rows]
    prompt_of, network_of = {}, {}
    for run_id, prompt, network in conn.execute(sa.select(raw_column(run.c.id), run.c.initial_prompt, run.c.network)):
        prompt_of[run_id], network_of[run_id] = prompt, network_label(network)
    inv, medoids = (list(col) for col in zip(*rows)) if rows else ([], [])
    where = positions.locate(inv)  # sampled invocations are text invocations
    runs = [r for r, _ in where]
    prompts = [prompt_of.get(r) for r in runs]
    sizes: dict[str, int] = {}
    medoid_hex = [None if m is None else id_hex(m) for m in medoids]
    for m in medoid_hex:
        if m is not None:
            sizes[m] = sizes.get(m, 0) + 1
    ranks = rank_by_size(sizes)
    data = Labelled(
        invocation_ids=np.array(inv, dtype=object),
        run_ids=np.array(runs, dtype=object),
        prompts=np.array(prompts, dtype=object),
        networks=np.array([network_of.get(r) for r in runs], dtype=object),
        text_index=np.array([k for _, k in where], dtype=np.int64),
        clusters=np.array([OUTLIER if m is None else ranks[m] for m in medoid_hex], dtype=np.int64),
        medoids={rank: uuid.UUID(hex=m) for m, rank in ranks.items()},
        probabilities=probabilities,
    )
    return data if experiment is None else _of_experiment(conn, data, experiment)


def _probabilities(conn: sa.Connection, result_id: uuid.UUID, embedding_ids: list) -> np.ndarray:
    """Each embedding's membership probability from the result's stored tree (NaN without one), matched in numpy:
    the tree's ``positions`` index the result's ids sorted by bytes, which these ids sort to as well."""
    from cluster_workers.db.attached import byte_order, read_points

    tree = read_points(conn, result_id)
    n = len(embedding_ids)
    if tree is None or tree.points != n:
        if tree is None:
            return np.full(n, np.nan)
        scores, nan = point_scores(conn, result_id), (float("nan"),)  # the tree and the rows differ: by id
        return np.array([scores.get(uuid_bytes(e), nan)[0] for e in embedding_ids], dtype=np.float64)
    ids = np.frombuffer(b"".join(uuid_bytes(e) for e in embedding_ids), dtype=np.uint8).reshape(n, 16)
    rank = np.empty(n, dtype=np.int64)
    rank[byte_order(ids)] = np.arange(n)
    by_sorted = np.empty(n, dtype=np.float64)
    by_sorted[tree.positions] = tree.probabilities
    return by_sorted[rank]


def _of_experiment(conn: sa.Connection, data: Labelled, experiment: str | uuid.UUID) -> Labelled:
    """``data``'s rows of one experiment's runs."""
    from cluster_workers.db.experiment import check_experiment, of_experiment

    s = schema_of(conn)
    check_experiment(conn, experiment)
    runs = {r for (r,) in conn.execute(sa.select(raw_column(s.run.c.id)).where(of_experiment(s, experiment)))}
    keep = np.fromiter((r in runs for r in data.run_ids.tolist()), dtype=bool, count=len(data.run_ids))
    present = set(np.unique(data.clusters[keep]).tolist())
    return Labelled(
        invocation_ids=data.invocation_ids[keep],
        run_ids=data.run_ids[keep],
        prompts=data.prompts[keep],
        networks=data.networks[keep],
        text_index=data.text_index[keep],
        clusters=data.clusters[keep],
        medoids={rank: m for rank, m in data.medoids.items() if rank in present},
        probabilities=None if data.probabilities is None else data.probabilities[keep],
    )


def sample_embedding_ids(
    conn: sa.Connection, result_id: uuid.UUID, limit: int, seed: int = 0
) -> list[tuple[uuid.UUID, uuid.UUID | None]]:
    """Up to ``limit`` ``(embedding id, medoid id)`` of the result, a seeded random sample (Python side)."""
    ec = memberships_of(conn, result_id)
    rows = conn.execute(
        sa.select(raw_column(ec.c.embedding_id), raw_column(ec.c.medoid_embedding_id)).where(
            ec.c.clustering_result_id == result_id
        )
    ).all()
    if len(rows) > limit:
        pick = np.random.default_rng(seed).choice(len(rows), size=limit, replace=False)
        rows = [rows[i] for i in sorted(pick.tolist())]
    return [(uuid.UUID(hex=id_hex(e)), None if m is None else uuid.UUID(hex=id_hex(m))) for e, m in rows]


@dataclass(frozen=True)
class Captions:
    """Per member of a result, sorted by embedding id bytes (the index a tree's ``positions`` give)."""

    outlier: np.ndarray  # (n,) bool
    texts: np.ndarray  # (n,) object: the caption (the text invocation's output_text); None where gone
    text_models: np.ndarray  # (n,) object: the image-to-text model that wrote it (the invocation's model)
    present: np.ndarray  # (n,) bool: False where the application has deleted the embedding since


def captions(conn: sa.Connection, result_id: uuid.UUID) -> Captions:
    """Each member's outlier status, caption and captioning model, in sorted-id order; every member of the result,
    those whose embedding is gone with ``present`` False."""
    from cluster_workers.db.attached import byte_order

    s = schema_of(conn)
    ec, embedding, invocation = memberships_of(conn, result_id), s.embedding, s.invocation
    rows = conn.execute(
        sa.select(
            raw_column(ec.c.embedding_id),
            ec.c.medoid_embedding_id.is_(None),
            invocation.c.output_text,
            invocation.c.model,
            embedding.c.id.is_not(None),
        )
        .select_from(
            ec.outerjoin(embedding, embedding.c.id == ec.c.embedding_id).outerjoin(
                invocation, invocation.c.id == embedding.c.invocation_id
            )
        )
        .where(ec.c.clustering_result_id == result_id)
    ).all()
    ids = np.frombuffer(b"".join(uuid_bytes(r[0]) for r in rows), dtype=np.uint8).reshape(len(rows), 16)
    order = byte_order(ids)
    column = lambda k: np.array([rows[i][k] for i in order], dtype=object)  # noqa: E731
    return Captions(column(1).astype(bool), column(2), column(3), column(4).astype(bool))

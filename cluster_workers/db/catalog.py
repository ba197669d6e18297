"""Reading results back: list, resolve an id or prefix, summarise a result's clusters. Writing is :mod:`.results`."""

from __future__ import annotations

import datetime as dt
import re
import uuid
from dataclasses import dataclass

import sqlalchemy as sa

from cluster_workers.db.detect import schema_of
from cluster_workers.errors import DatabaseError


@dataclass(frozen=True)
class ResultStore:
    """One pair of result tables -- results and their memberships -- and whether this tool writes them.

    Legacy schema: one pair, this tool's own. Current schema: this tool's (``cluster_workers_*``, made by
    its first write) and the experiment application's (``clustering_results`` / ``embedding_clusters``,
    read only). Every reader goes through the pair that holds the result it reads."""

    results: sa.Table
    memberships: sa.Table
    ours: bool


def result_stores(conn: sa.Connection) -> list[ResultStore]:
    """The pairs of result tables this database has, this tool's first."""
    s = schema_of(conn)
    pairs = [ResultStore(s.clustering_result, s.embedding_cluster, True)]
    if s.application_result is not None and s.application_membership is not None:
        pairs.append(ResultStore(s.application_result, s.application_membership, False))
    inspector = sa.inspect(conn)
    return [pair for pair in pairs if inspector.has_table(pair.results.name)]


def has_results_table(conn: sa.Connection) -> bool:
    return bool(result_stores(conn))


ID_CHUNK = 500  # ids per IN (...) list


def id_chunks(ids: list) -> list[list]:
    """``ids`` in lists short enough for one ``IN (...)`` each."""
    return [ids[i : i + ID_CHUNK] for i in range(0, len(ids), ID_CHUNK)]


def held_by(conn: sa.Connection, store: ResultStore, ids: list[uuid.UUID]) -> list[uuid.UUID]:
    """Which of ``ids`` ``store`` holds, in the order given."""
    cr = store.results
    found = {
        rid for chunk in id_chunks(list(ids)) for rid in conn.execute(sa.select(cr.c.id).where(cr.c.id.in_(chunk))).scalars()
    }
    return [rid for rid in ids if rid in found]


def store_of(conn: sa.Connection, result_id: uuid.UUID) -> ResultStore:
    """The pair of tables holding ``result_id``; :class:`DatabaseError` when none does."""
    for store in result_stores(conn):
        if held_by(conn, store, [result_id]):
            return store
    raise DatabaseError(f"no clustering result with id {str(result_id)!r}")


def memberships_of(conn: sa.Connection, result_id: uuid.UUID) -> sa.Table:
    """The memberships table holding ``result_id``'s rows."""
    return store_of(conn, result_id).memberships


THIS_TOOL, APPLICATION = "cluster_workers", "application"  # who made a result: this tool, or the experiment application


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
    ours: bool = True  # made by this tool; False for the experiment application's own results (e.g. its EVoC layers)
    gone: int = 0  # memberships whose embedding the application has deleted since (ours only; theirs cascade)

    @property
    def made_by(self) -> str:
        """Who made the result, one word, the same in tables and JSON: :data:`THIS_TOOL` or :data:`APPLICATION`."""
        return THIS_TOOL if self.ours else APPLICATION

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


def parameters_of(value: object) -> dict:
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
    out = []
    for store in result_stores(conn):
        cr, ec = store.results, store.memberships
        layer = cr.c.layer if s.layered else sa.literal(0)
        counts = sa.select(
            ec.c.clustering_result_id.label("result_id"),
            sa.func.count().label("n"),
            sa.func.count(sa.distinct(ec.c.medoid_embedding_id)).label("clusters"),
            (sa.func.count() - sa.func.count(ec.c.medoid_embedding_id)).label("outliers"),
        ).group_by(ec.c.clustering_result_id)
        if ids is not None:
            counts = counts.where(ec.c.clustering_result_id.in_(ids))
        counts = counts.subquery("counts")
        query = sa.select(
            cr.c.id,
            cr.c.embedding_model,
            cr.c.created_at,
            cr.c.started_at,
            cr.c.completed_at,
            cr.c.algorithm,
            cr.c.parameters,
            sa.func.coalesce(counts.c.n, 0),
            sa.func.coalesce(counts.c.clusters, 0),
            sa.func.coalesce(counts.c.outliers, 0),
            layer,
        ).select_from(cr.outerjoin(counts, counts.c.result_id == cr.c.id))
        if ids is not None:
            query = query.where(cr.c.id.in_(ids))
        gone = _gone_counts(conn, ec, ids) if store.ours else {}
        for rid, model, created, started, completed, algorithm, params, n, clusters, outliers, lay in conn.execute(query):
            params = parameters_of(params)
            lay = int(lay) if s.layered else int(params.get("layer", 0) or 0)
            # ours: in our tables, or (a database 0.2.0 wrote, not yet repaired) in theirs with our run key
            mine = store.ours or "run_key" in params
            out.append(
                ResultSummary(
                    rid,
                    model,
                    created,
                    started,
                    completed,
                    algorithm,
                    params,
                    int(n),
                    int(clusters),
                    int(outliers),
                    layer=lay,
                    ours=mine,
                    gone=gone.get(rid, 0),
                )
            )
    never = dt.datetime.min
    out.sort(key=lambda r: (r.model, r.layer))
    out.sort(key=lambda r: r.created_at or never, reverse=True)
    return out


def _gone_counts(conn: sa.Connection, ec: sa.Table, ids: list[uuid.UUID] | None) -> dict[uuid.UUID, int]:
    """``result id -> memberships whose embedding no longer exists`` (the application deletes experiments at will;
    our tables hold no foreign key that would stop it), for the results that have any."""
    embedding = schema_of(conn).embedding
    query = (
        sa.select(ec.c.clustering_result_id, sa.func.count())
        .select_from(ec.outerjoin(embedding, embedding.c.id == ec.c.embedding_id))
        .where(embedding.c.id.is_(None))
        .group_by(ec.c.clustering_result_id)
    )
    if ids is not None:
        query = query.where(ec.c.clustering_result_id.in_(ids))
    return {rid: int(n) for rid, n in conn.execute(query)}


def list_results(conn: sa.Connection) -> list[ResultSummary]:
    """Every clustering result with its sample, cluster and outlier counts, newest first."""
    if not has_results_table(conn):
        return []
    return _summaries(conn)


LATEST = "latest"
LATEST_SELECTOR = re.compile(r"latest(?::([^/]+))?(?:/([A-Za-z_]+))?(?:/(\d+))?", re.IGNORECASE)


def parse_latest(text: str) -> tuple[str | None, str | None, int | None] | None:
    """``latest[:MODEL][/ALGORITHM[/LAYER]]`` as ``(model, algorithm, layer)`` (None where not given); None when the
    text is not such a selector (an id or a prefix)."""
    found = LATEST_SELECTOR.fullmatch(text.strip())
    if found is None:
        return None
    model, algorithm, layer = found.groups()
    return model or None, algorithm.lower() if algorithm else None, None if layer is None else int(layer)


def resolve_result_id(conn: sa.Connection, result_id: str) -> uuid.UUID:
    """A result's id from a full id, a unique id prefix, or a selector: ``latest`` (the newest result),
    ``latest:MODEL``, ``latest:MODEL/ALGORITHM`` or ``latest:MODEL/ALGORITHM/LAYER`` (e.g. ``latest:Nomic256/evoc/1``:
    the newest evoc layer 1 of that model). Reads the results tables only, never the memberships.
    """
    wanted = result_id.strip()
    stores = result_stores(conn)
    if not stores:
        raise DatabaseError("the database has no clustering results yet")
    selector = parse_latest(wanted)
    if selector is not None:
        model, algorithm, layer = selector
        s = schema_of(conn)
        found = []
        for store in stores:
            cr = store.results
            lay = cr.c.layer if s.layered else sa.literal(0)
            query = sa.select(cr.c.created_at, cr.c.embedding_model, cr.c.id, cr.c.algorithm, lay, cr.c.parameters)
            if model is not None:
                query = query.where(cr.c.embedding_model == model)
            for created, m, rid, algo, lay_value, params in conn.execute(query):
                row_layer = int(lay_value) if s.layered else int(parameters_of(params).get("layer", 0) or 0)
                if algorithm is not None and (algo or "").split(" ")[0].lower() != algorithm:
                    continue
                if layer is not None and row_layer != layer:
                    continue
                found.append((created, m, rid))
        if not found:
            have = sorted(
                {m for store in stores for m in conn.execute(sa.select(store.results.c.embedding_model).distinct()).scalars()}
            )
            if model is not None and model not in have:
                raise DatabaseError(
                    f"no clustering result for model {model!r}; results exist for: {', '.join(have) or 'no model'}"
                )
            raise DatabaseError(f"no clustering result matches {wanted!r} (`results` lists them)")
        found.sort(key=lambda row: row[1])
        found.sort(key=lambda row: row[0] or dt.datetime.min, reverse=True)
        return found[0][2]
    prefix = wanted.lower().replace("-", "")
    ids = [i for store in stores for (i,) in conn.execute(sa.select(store.results.c.id)) if prefix and i.hex.startswith(prefix)]
    if not ids:
        raise DatabaseError(f"no clustering result with id {result_id!r}")
    if len(ids) > 1:
        raise DatabaseError(f"id prefix {result_id!r} matches {len(ids)} results; give more characters")
    return ids[0]


def find_results(conn: sa.Connection, ids: list[uuid.UUID]) -> list[ResultSummary]:
    """The results with these ids (newest first)."""
    return _summaries(conn, list(ids))


def find_result(conn: sa.Connection, result_id: str) -> ResultSummary:
    """One result by full id, unique id prefix (as printed by ``results``), ``latest`` or ``latest:MODEL``."""
    return _summaries(conn, [resolve_result_id(conn, result_id)])[0]


def results_to_delete(conn: sa.Connection, result_id: str | None = None, model: str | None = None) -> list[ResultSummary]:
    """The results one ``delete`` names: one id (prefix, ``latest``; anyone's result), or every result of
    ``model``, or all (neither) -- of *ours* only: the application's own results (e.g. its EVoC layers)
    are deleted only by naming their id."""
    if result_id is not None:
        return [find_result(conn, result_id)]
    rows = [r for r in list_results(conn) if r.ours]
    if model is not None:
        rows = [r for r in rows if r.model == model]
        if not rows:
            raise DatabaseError(
                f"no clustering result of this tool for model {model!r} (the application's own results are deleted by id)"
            )
    return rows


def foreign_results(conn: sa.Connection, model: str | None = None) -> int:
    """How many results this tool did not make (left alone by ``delete --all`` / ``--model``)."""
    return sum(1 for r in list_results(conn) if not r.ours and (model is None or r.model == model))


def cluster_summaries(conn: sa.Connection, result_id: uuid.UUID) -> list[ClusterSummary]:
    """The result's clusters, largest first, with the medoid's text; outliers as one row with no medoid."""
    s = schema_of(conn)
    ec, embedding, invocation = memberships_of(conn, result_id), s.embedding, s.invocation
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


def source_of(summary: ResultSummary) -> str | None:
    """The id of the result ``summary`` was made from (``assign``: the frozen result; ``recut``: the cut tree's), or
    None for a result made from the data itself."""
    p = summary.parameters or {}
    made_from = p.get("assigned_from") or (p.get("recut") or {}).get("from")
    return str(made_from) if made_from else None


def dependents(conn: sa.Connection, ids: list[uuid.UUID]) -> list[ResultSummary]:
    """Every result made from one of ``ids``, directly or through others (assigned from, recut from), that is not
    itself among ``ids``: what removing ``ids`` would leave pointing at nothing."""
    wanted = {str(i) for i in ids}
    everything = list_results(conn)
    found: list[ResultSummary] = []
    grew = True
    while grew:
        grew = False
        for r in everything:
            if str(r.id) not in wanted and source_of(r) in wanted:
                wanted.add(str(r.id))
                found.append(r)
                grew = True
    return found


def dependency_refusal(removing: list[ResultSummary], found: list[ResultSummary], option: str = "--cascade") -> str:
    """One line: which results would lose their source, and how to remove them too."""
    named = ", ".join(f"{r.id.hex[:8]} ({source_of(r)[:8]} -> {r.model} {r.algorithm})" for r in found[:5])
    more = f" and {len(found) - 5} more" if len(found) > 5 else ""
    return (f"{len(found)} result(s) were made from the {len(removing)} to remove and would point at nothing: {named}{more}; "
            f"pass {option} to remove them too")  # fmt: skip


def source_exists(conn: sa.Connection, result_id: str) -> bool:
    """Whether the result a dependent names still exists (an older version deleted sources without asking)."""
    try:
        store_of(conn, uuid.UUID(str(result_id)))
    except (DatabaseError, ValueError):
        return False
    return True

"""``publish RESULT``: make one of our results the experiment application's clustering of its model.

Plan on a read-only connection (what is deleted, what is written, whether the result covers
every embedding of the model), then, under the run lock, one transaction that waits at most
the busy timeout for the application's writers: 0.2.0's leftovers moved first
(:mod:`cluster_workers.db.repair`), every row of the model in the application's two tables
deleted its way, ours written (:mod:`cluster_workers.db.publish`). A stop request or any
error rolls it back: the application's rows stay as they were.
"""

from __future__ import annotations

import sqlalchemy as sa

from cluster_workers import __version__, stopping
from cluster_workers.db.attached import load_source, read_layer, run_layers
from cluster_workers.db.catalog import ResultSummary, find_result
from cluster_workers.db.connect import Database, as_database, db_error, make_engine
from cluster_workers.db.lock import run_lock
from cluster_workers.db.publish import (
    PublishedLayer,
    PublishPlan,
    applications_results,
    layer_from_labels,
    missing_medoids,
    model_embeddings,
    stored_layer,
    write_published,
)  # fmt: skip
from cluster_workers.db.repair import repair
from cluster_workers.errors import ClusterWorkersError, ConfigError, DatabaseError
from cluster_workers.run import faults
from cluster_workers.run.params import requested_params
from cluster_workers.run.recut import recut_result

LEFT_OUT = ("run_key", "sample")  # ours alone: the run key marks rows 0.2.0 wrote (db/repair.py)


def _parameters(summary: ResultSummary, parameters: dict, layer: int) -> dict:
    """What made the layer, for the application's ``parameters`` column: the result's own parameters and where
    they came from (tool, version, our result id and layer)."""
    kept = {k: v for k, v in parameters.items() if k not in LEFT_OUT}
    kept["published_from"] = {"tool": "cluster-workers", "version": __version__, "result_id": str(summary.id),
                              "layer": layer}  # fmt: skip
    return kept


def _evoc_layers(conn: sa.Connection, summary: ResultSummary, run_id) -> list[PublishedLayer]:  # type: ignore[no-untyped-def]
    layers = []
    for layer, rid in sorted(run_layers(conn, run_id).items()):
        member = find_result(conn, str(rid))
        embeddings, medoids, _ = stored_layer(conn, rid)
        layers.append(PublishedLayer(layer, "evoc", _parameters(member, member.parameters, layer), member.started_at,
                                     member.completed_at, embeddings, medoids))  # fmt: skip
    return layers


def _cut_layers(conn: sa.Connection, summary: ResultSummary, sizes: list[int]) -> list[PublishedLayer]:
    """One layer per min_cluster_size, cut from the result's stored tree (finest first), without its gone rows."""
    source = load_source(conn, str(summary.id))
    present, _, _ = stored_layer(conn, summary.id)
    keep = set(present)
    layers = []
    for layer, size in enumerate(sorted(sizes)):
        cut = recut_result(conn, source, requested_params(source, {"min_cluster_size": size}))
        embeddings, medoids = layer_from_labels(cut.embedding_ids, cut.labels, cut.medoid_rows)
        rows = [(e, m) for e, m in zip(embeddings, medoids) if e in keep]
        layers.append(PublishedLayer(layer, "hdbscan", _parameters(summary, cut.parameters, layer), summary.started_at,
                                     summary.completed_at, [e for e, _ in rows], [m for _, m in rows]))  # fmt: skip
    return layers


def plan_publish(conn: sa.Connection, result_id: str, layer_sizes: list[int] | None = None, partial: bool = False) -> PublishPlan:
    """What publishing ``result_id`` would delete and write; refused in one line when it cannot be done as asked."""
    summary = find_result(conn, result_id)
    if not summary.ours:
        raise ClusterWorkersError(f"result {summary.id.hex[:8]} is the application's own already (in its clustering_results)")
    replaced = applications_results(conn, summary.model)
    evoc = read_layer(conn, summary.id)
    if evoc is not None:
        if layer_sizes:
            raise ConfigError("--layers cuts an HDBSCAN tree; an evoc run is published with its own layers")
        layers = _evoc_layers(conn, summary, evoc.run_id)
    elif layer_sizes:
        layers = _cut_layers(conn, summary, layer_sizes)
    else:
        embeddings, medoids, _ = stored_layer(conn, summary.id)
        layers = [PublishedLayer(0, "hdbscan", _parameters(summary, summary.parameters, 0), summary.started_at,
                                 summary.completed_at, embeddings, medoids)]  # fmt: skip
    total = model_embeddings(conn, summary.model)
    covered = len(layers[0].embedding_ids)
    plan = PublishPlan(summary.model, summary, layers, replaced, total, covered, gone=summary.gone)
    if covered < total and not partial:
        how = ("cluster --engine evoc --downsample 1" if evoc is not None
               else f"cluster --downsample 1, or assign {summary.id.hex[:8]}")  # fmt: skip
        raise ClusterWorkersError(
            f"result {summary.id.hex[:8]} ({summary.model}) holds {covered:,} of the model's {total:,} embeddings, and the "
            f"application's clustering of a model holds every one (calibration runs aside): publish a result of all of them ({how}), "
            f"or pass --partial"
        )
    lost = missing_medoids(conn, layers)
    if lost:
        raise DatabaseError(f"the medoids of {lost} cluster(s) of result {summary.id.hex[:8]} were deleted by the application "
                            f"since; cluster the model again to publish it")  # fmt: skip
    return plan


def publish(url: str, result_id: str, db_limits: dict, layer_sizes: list[int] | None = None, partial: bool = False,
            dry_run: bool = False, db: Database | None = None) -> PublishPlan:  # fmt: skip
    """Publish ``result_id`` (see the module's docstring); with ``dry_run`` only the plan, nothing written."""
    db = db or as_database(url)
    plan = db.read(lambda conn: plan_publish(conn, result_id, layer_sizes, partial))
    if dry_run:
        return plan
    rolled_back = "the transaction was rolled back: the application's tables are as they were"

    def between() -> None:
        faults.published_layer()
        stopping.check("during publish", rolled_back)

    with run_lock(url, db_limits):
        engine = make_engine(url, **db_limits)
        try:
            with engine.begin() as conn:  # BEGIN IMMEDIATE on SQLite: waits at most the busy timeout
                repair(conn)
                plan.replaced = applications_results(conn, plan.model)  # as they are now, inside the transaction
                plan.result_ids = write_published(conn, plan, after_layer=between)
        except sa.exc.SQLAlchemyError as exc:
            raise db_error(exc, url, "during publish") from exc
        finally:
            engine.dispose()
    return plan

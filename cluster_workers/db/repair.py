"""Repair a current-schema database that cluster-workers 0.2.0 wrote to.

0.2.0 wrote its results into the experiment application's own ``clustering_results`` /
``embedding_clusters`` (so the application's loader met two layer-0 labels per embedding) and
kept its side rows in ``clusteringtree`` / ``clusteringlayer`` / ``clusteringassignment`` with
foreign keys into ``clustering_results`` (so the application's own delete of a result failed
half-way). The repair moves every result of ours -- a ``clustering_results`` row whose
parameters carry our ``run_key`` -- with its id, memberships and side rows into our own
``cluster_workers_*`` tables, drops the old side tables, and deletes our rows from the
application's tables, memberships first. Rows of the application's are never touched.

It runs inside the caller's transaction, first thing in every command that writes results
(:func:`cluster_workers.db.results.create_result_tables`, ``delete``), or on its own with the
``repair`` command; on a database that needs none it reads a few table names and returns.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass

import sqlalchemy as sa
from loguru import logger

from cluster_workers.db.catalog import id_chunks, parameters_of
from cluster_workers.db.detect import schema_of


@dataclass(frozen=True)
class RepairPlan:
    """What a repair would move: our results inside the application's tables, and 0.2.0's side tables."""

    result_ids: list[uuid.UUID]
    former_tables: list[tuple[sa.Table, sa.Table]]  # (0.2.0's table, ours it moves into), those present

    def describe(self) -> str:
        tables = ", ".join(former.name for former, _ in self.former_tables) or "no side table"
        return f"{len(self.result_ids)} result(s) of this tool in clustering_results, and {tables}"


def repair_plan(conn: sa.Connection) -> RepairPlan | None:
    """What needs moving on this database, or None (the legacy schema, or nothing 0.2.0 left)."""
    s = schema_of(conn)
    if s.application_result is None:
        return None
    inspector = sa.inspect(conn)
    former = [
        (old, new)
        for new in (s.clustering_tree, s.clustering_assignment, s.clustering_layer)
        if new is not None and (old := s.former_side_tables.get(new.name)) is not None and inspector.has_table(old.name)
    ]
    cr = s.application_result
    ids = [rid for rid, params in conn.execute(sa.select(cr.c.id, cr.c.parameters)) if "run_key" in parameters_of(params)]
    return RepairPlan(ids, former) if ids or former else None


def _common_columns(conn: sa.Connection, source: sa.Table, target: sa.Table) -> list[str]:
    present = {c["name"] for c in sa.inspect(conn).get_columns(source.name)}
    return [c.name for c in target.columns if c.name in present]


def repair(conn: sa.Connection) -> RepairPlan | None:
    """Move what 0.2.0 left into our tables, on the caller's transaction; returns what was moved (None: nothing)."""
    plan = repair_plan(conn)
    if plan is None:
        return None
    s = schema_of(conn)
    ours_r, ours_m = s.clustering_result, s.embedding_cluster
    theirs_r, theirs_m = s.application_result, s.application_membership
    assert theirs_r is not None and theirs_m is not None  # repair_plan returns None on the legacy schema
    s.metadata.create_all(conn, tables=[ours_r, ours_m], checkfirst=True)
    memberships = 0
    for chunk in id_chunks(plan.result_ids):
        keys = [c.key for c in theirs_r.columns]  # by key: ``inserted_at`` is ``created_at`` in both tables
        rows = [dict(zip(keys, row)) for row in conn.execute(sa.select(theirs_r).where(theirs_r.c.id.in_(chunk)))]
        for row in rows:  # the text the application's column holds, as our JSON column takes it
            row["parameters"] = parameters_of(row["parameters"])
        conn.execute(sa.insert(ours_r), rows)
        names = [c.name for c in theirs_m.columns]
        moved = sa.insert(ours_m).from_select(
            names, sa.select(*[theirs_m.c[c.key] for c in theirs_m.columns]).where(theirs_m.c.clustering_result_id.in_(chunk))
        )
        conn.execute(moved)
        held = sa.select(sa.func.count()).select_from(theirs_m).where(theirs_m.c.clustering_result_id.in_(chunk))
        memberships += int(conn.execute(held).scalar_one())  # counted: a driver may not report INSERT ... SELECT's rows
    for former, new in plan.former_tables:
        new.create(conn, checkfirst=True)
        names = _common_columns(conn, former, new)
        conn.execute(sa.insert(new).from_select(names, sa.select(*[former.c[n] for n in names])))
        former.drop(conn)  # 0.2.0's table held the foreign keys into clustering_results: gone with it
    for chunk in id_chunks(plan.result_ids):  # the application's delete order: memberships, then the result
        conn.execute(sa.delete(theirs_m).where(theirs_m.c.clustering_result_id.in_(chunk)))
        conn.execute(sa.delete(theirs_r).where(theirs_r.c.id.in_(chunk)))
    logger.warning(
        "repaired a database written by cluster-workers 0.2.0: moved {} result(s) of this tool ({:,} memberships) out of "
        "the application's clustering_results into {}{}; the application's own rows are unchanged",
        len(plan.result_ids),
        memberships,
        ours_r.name,
        "".join(f", {former.name} into {new.name}" for former, new in plan.former_tables),
    )
    return plan


def repair_database(url: str, db_limits: dict) -> RepairPlan | None:
    """``repair``: the same repair on its own, in one transaction under the run lock; None when none was needed."""
    from cluster_workers.db.connect import db_error, make_engine
    from cluster_workers.db.lock import run_lock

    with run_lock(url, db_limits):
        engine = make_engine(url, **db_limits)
        try:
            with engine.begin() as conn:
                return repair(conn)
        except sa.exc.SQLAlchemyError as exc:
            raise db_error(exc, url, "during the repair") from exc
        finally:
            engine.dispose()

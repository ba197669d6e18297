"""``delete``: remove results and their memberships in one transaction, under the run lock.

Nothing is removed until the user has seen what will go (the CLI confirms on a
terminal, or takes ``--yes``). A stop request (Ctrl-C, SIGTERM) or any error
inside the transaction rolls it back: everything stays.
"""

from __future__ import annotations

import sqlalchemy as sa

from cluster_workers import stopping
from cluster_workers.db.catalog import ResultSummary, dependency_refusal, dependents, foreign_results, results_to_delete
from cluster_workers.db.connect import Database, as_database, db_error, make_engine
from cluster_workers.db.lock import run_lock
from cluster_workers.db.results import delete_results
from cluster_workers.errors import ClusterWorkersError
from cluster_workers.run import faults


def chosen_results(db: str | Database, result_id: str | None, model: str | None, cascade: bool = False) -> list[ResultSummary]:
    """What ``delete`` would remove: one result (id, prefix, ``latest``), a model's results, or all; with
    ``cascade`` also every result made from them. Without it, results made from them refuse the delete."""

    def fn(conn):  # type: ignore[no-untyped-def]
        chosen = results_to_delete(conn, result_id, model)
        found = dependents(conn, [r.id for r in chosen])
        if found and not cascade:
            raise ClusterWorkersError(dependency_refusal(chosen, found))
        return chosen + found

    return as_database(db).read(fn)


def left_alone(db: str | Database, result_id: str | None, model: str | None) -> int:
    """How many of the application's own results ``delete --all`` / ``--model`` leaves (0 when one id is named)."""
    if result_id is not None:
        return 0
    return as_database(db).read(lambda conn: foreign_results(conn, model))


def delete(url: str, results: list[ResultSummary], db_limits: dict) -> int:
    """Remove ``results`` in one transaction while holding the run lock; returns the memberships removed."""
    rolled_back = "the transaction was rolled back, nothing was deleted"

    def between() -> None:
        faults.deleted_batch()
        stopping.check("during the delete", rolled_back)

    with run_lock(url, db_limits):
        engine = make_engine(url, **db_limits)
        try:
            with engine.begin() as conn:
                removed = delete_results(conn, [r.id for r in results], after_batch=between)
        except sa.exc.SQLAlchemyError as exc:
            raise db_error(exc, url, "during the delete") from exc
        finally:
            engine.dispose()
    return removed

"""The one commit: every model's result (every evoc layer) written in one transaction, or nothing."""

from __future__ import annotations

import sqlalchemy as sa
from loguru import logger

from cluster_workers import stopping
from cluster_workers.db.connect import db_error, enable_wal
from cluster_workers.db.results import write_results
from cluster_workers.run import faults
from cluster_workers.run.config import Settings
from cluster_workers.run.worker import ModelResult


def run_key(settings: Settings) -> dict:
    """The settings that define a result: a second run with the same key is skipped unless forced."""
    key = settings.clustering.run_key(settings.downsample)
    if settings.offset:  # offset 0 is the sample every earlier result was made from: its key unchanged
        key["offset"] = settings.offset
    return {**key, "experiment": settings.experiment} if settings.experiment else key


def commit(
    engine: sa.Engine, settings: Settings, results: list[ModelResult], fingerprints: dict[str, dict] | None = None
) -> dict[str, int]:
    """Write every result in one transaction (BEGIN IMMEDIATE on SQLite); all or nothing.

    An evoc result carries its coarser layers: each layer is written as a result of its own."""
    results = [layer for result in results for layer in result.all_layers()]
    for result in results:  # the sample each result was made from, so a later run can tell it changed
        if fingerprints and result.model in fingerprints:
            result.parameters["sample"] = fingerprints[result.model]
    total_rows = sum(r.n for r in results)
    logger.info("committing {} result(s), {:,} memberships in one transaction", len(results), total_rows)
    rolled_back = "the transaction was rolled back, nothing was written"

    def between_batches(_rows: int) -> None:
        faults.rows_written()
        stopping.check("during the commit", rolled_back)

    stopping.check("before the commit")
    try:
        enable_wal(engine)
        with engine.connect() as conn, conn.begin() as transaction:
            faults.commit_started(conn)
            written = write_results(
                conn, results, run_key(settings), replace=settings.force, progress=between_batches, cascade=settings.cascade
            )
            stopping.check("during the commit", rolled_back)
            if settings.rollback:
                transaction.rollback()
                logger.info("rolled back as asked: every row was written, then the transaction undone; the database is unchanged")
    except sa.exc.SQLAlchemyError as exc:
        raise db_error(exc, settings.database_url, "during the commit") from exc
    if stopping.requested():  # COMMIT had returned: the results are in the database, say so
        logger.warning("{} arrived after the commit had finished: the results are written", stopping.signal_name())
    return written

"""Faults injected on purpose, for the tests that prove a failure inside the commit loses nothing.

Set ``CLUSTER_WORKERS_FAULT`` in the environment of a run:

- ``pause-in-commit=SECONDS``: after the first batch of rows is written inside the
  commit's transaction, log ``fault: pausing inside the commit`` and wait (a test
  then kills the process there);
- ``disk-full-in-commit``: on SQLite, forbid the file to grow (``max_page_count``),
  so the commit's inserts fail with SQLite's own "database or disk is full";
- ``pause-in-delete=SECONDS``: the same pause inside ``delete``'s transaction;
- ``pause-in-publish=SECONDS``: the same pause inside ``publish``'s transaction, after the application's rows
  of the model were deleted and the first layer written;
- ``sql-error-in-fetch``: a worker's first statement of its fetch fails (a table that does not exist);
- ``pause-in-clustering=SECONDS``: each worker, having read its sample, logs
  ``fault: pausing before clustering`` and waits (a test then looks at the database).

Unset (always, outside tests), every hook here does nothing.
"""

from __future__ import annotations

import os

import sqlalchemy as sa
from loguru import logger

from cluster_workers import stopping

ENV = "CLUSTER_WORKERS_FAULT"


def _fault() -> tuple[str, str]:
    name, _, value = os.environ.get(ENV, "").partition("=")
    return name.strip(), value.strip()


def commit_started(conn: sa.Connection) -> None:
    """Called first thing inside the commit's transaction."""
    name, _ = _fault()
    if name == "disk-full-in-commit" and conn.dialect.name == "sqlite":
        pages = conn.exec_driver_sql("PRAGMA page_count").scalar_one()
        conn.exec_driver_sql(f"PRAGMA max_page_count = {int(pages)}")
        logger.warning("fault: the database file may not grow past {} pages", pages)


def rows_written() -> None:
    """Called after each batch of rows inside the commit's transaction."""
    name, value = _fault()
    if name == "pause-in-commit":
        logger.warning("fault: pausing inside the commit for {} s", value)
        stopping.wait(float(value or 60))


def deleted_batch() -> None:
    """Called after each batch of results removed inside ``delete``'s transaction (``pause-in-delete=SECONDS``)."""
    name, value = _fault()
    if name == "pause-in-delete":
        logger.warning("fault: pausing inside the delete for {} s", value)
        stopping.wait(float(value or 60))


def published_layer() -> None:
    """Called after each layer written inside ``publish``'s transaction (``pause-in-publish=SECONDS``)."""
    name, value = _fault()
    if name == "pause-in-publish":
        logger.warning("fault: pausing inside publish for {} s", value)
        stopping.wait(float(value or 60))


def fetch_started(conn: sa.Connection) -> None:
    """Called in each worker before it reads its sample (``sql-error-in-fetch``: a statement that fails)."""
    name, _ = _fault()
    if name == "sql-error-in-fetch":
        conn.exec_driver_sql("SELECT count(*) FROM cluster_workers_fault_no_such_table")


def clustering_started() -> None:
    """Called in each worker after its sample is read, before clustering (``pause-in-clustering=SECONDS``)."""
    name, value = _fault()
    if name == "pause-in-clustering":
        logger.warning("fault: pausing before clustering for {} s", value)
        stopping.wait(float(value or 60))

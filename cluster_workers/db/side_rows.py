"""Our per-result side tables (``clusteringassignment``, ``clusteringlayer``): one row per result, keyed by
``clustering_result_id``, the table made by the first write that needs it."""

from __future__ import annotations

import uuid

import sqlalchemy as sa


def has_table(conn: sa.Connection, table: sa.Table) -> bool:
    return sa.inspect(conn).has_table(table.name)


def insert_row(conn: sa.Connection, table: sa.Table, result_id: uuid.UUID, values: dict) -> None:
    """Insert one result's row, making the table first if this database has none (the caller's transaction)."""
    table.create(conn, checkfirst=True)
    conn.execute(sa.insert(table), [{"clustering_result_id": result_id, **values}])


def read_row(conn: sa.Connection, table: sa.Table, result_id: uuid.UUID) -> sa.RowMapping | None:
    """The result's row, or None (no such row, or no table yet)."""
    if not has_table(conn, table):
        return None
    row = conn.execute(sa.select(table).where(table.c.clustering_result_id == result_id)).first()
    return None if row is None else row._mapping


def delete_rows(conn: sa.Connection, table: sa.Table, result_ids: list[uuid.UUID]) -> None:
    if result_ids and has_table(conn, table):
        conn.execute(sa.delete(table).where(table.c.clustering_result_id.in_(result_ids)))


def as_uuid(value: object) -> uuid.UUID:
    return value if isinstance(value, uuid.UUID) else uuid.UUID(str(value))

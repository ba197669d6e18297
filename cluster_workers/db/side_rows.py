"""Our per-result side tables (trees, assignments, layers): one row per result, keyed by
``clustering_result_id``, the table made by the first write that needs it."""

from __future__ import annotations

import uuid

import sqlalchemy as sa

from cluster_workers.db.detect import schema_of


def has_table(conn: sa.Connection, table: sa.Table) -> bool:
    return sa.inspect(conn).has_table(table.name)


def readable(conn: sa.Connection, table: sa.Table) -> sa.Table | None:
    """Where ``table``'s rows are read from: the table itself or, on a database 0.2.0 wrote that no command has
    repaired yet, the same rows under 0.2.0's name (``clusteringtree``, ...); None when neither exists."""
    inspector = sa.inspect(conn)
    if inspector.has_table(table.name):
        return table
    former = schema_of(conn).former_side_tables.get(table.name)
    return former if former is not None and inspector.has_table(former.name) else None


def insert_row(conn: sa.Connection, table: sa.Table, result_id: uuid.UUID, values: dict) -> None:
    """Insert one result's row, making the table first if this database has none (the caller's transaction)."""
    table.create(conn, checkfirst=True)
    conn.execute(sa.insert(table), [{"clustering_result_id": result_id, **values}])


def read_row(conn: sa.Connection, table: sa.Table, result_id: uuid.UUID) -> sa.RowMapping | None:
    """The result's row, or None (no such row, or no table yet)."""
    table = readable(conn, table)
    if table is None:
        return None
    row = conn.execute(sa.select(table).where(table.c.clustering_result_id == result_id)).first()
    return None if row is None else row._mapping


def delete_rows(conn: sa.Connection, table: sa.Table, result_ids: list[uuid.UUID]) -> None:
    if result_ids and has_table(conn, table):
        conn.execute(sa.delete(table).where(table.c.clustering_result_id.in_(result_ids)))


def as_uuid(value: object) -> uuid.UUID:
    return value if isinstance(value, uuid.UUID) else uuid.UUID(str(value))

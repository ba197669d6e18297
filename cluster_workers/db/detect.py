"""Which schema a database holds, recognised from its tables and columns (never from a flag to remember).

``CLUSTER_WORKERS_SCHEMA=legacy|current`` overrides the choice (the tables are still
checked). A database that is neither gets one line naming, for each schema, the
tables or columns it lacks.
"""

from __future__ import annotations

import os
import weakref

import sqlalchemy as sa

from cluster_workers.db.schema import CURRENT, LEGACY, SCHEMA_NAMES, SCHEMAS, Schema
from cluster_workers.errors import ConfigError, DatabaseError

OVERRIDE_ENV = "CLUSTER_WORKERS_SCHEMA"
_detected: "weakref.WeakKeyDictionary[sa.Engine, Schema]" = weakref.WeakKeyDictionary()


def missing_parts(schema: Schema, tables: dict[str, set[str]]) -> list[str]:
    """What ``schema`` needs that the database lacks: ``table`` for a missing table, ``table.column`` for a column."""
    gaps: list[str] = []
    for table, columns in schema.required.items():
        if table not in tables:
            gaps.append(table)
        else:
            gaps += [f"{table}.{c}" for c in columns if c not in tables[table]]
    return gaps


def _describe_gaps(gaps: list[str]) -> str:
    tables = [g for g in gaps if "." not in g]
    columns = [g for g in gaps if "." in g]
    parts = []
    if tables:
        parts.append(f"missing table(s) {', '.join(tables)}")
    if columns:
        parts.append(f"missing column(s) {', '.join(columns)}")
    return "; ".join(parts)


def table_columns(conn: sa.Connection) -> dict[str, set[str]]:
    """Every table of the database with its column names (only the tables either schema knows)."""
    inspector = sa.inspect(conn)
    wanted = {name for schema in SCHEMAS.values() for name in schema.required}
    return {name: {c["name"] for c in inspector.get_columns(name)} for name in inspector.get_table_names() if name in wanted}


def detect(conn: sa.Connection, override: str | None = None) -> Schema:
    """The schema ``conn``'s database holds; :class:`DatabaseError` naming what is missing when it holds neither."""
    override = (override or os.environ.get(OVERRIDE_ENV) or "").strip().lower() or None
    if override is not None and override not in SCHEMA_NAMES:
        raise ConfigError(f"{OVERRIDE_ENV} must be one of {', '.join(SCHEMA_NAMES)}, got {override!r}")
    tables = table_columns(conn)
    gaps = {name: missing_parts(SCHEMAS[name], tables) for name in SCHEMA_NAMES}
    if override is not None:
        if gaps[override]:
            raise DatabaseError(
                f"not a {override}-schema experiment database ({OVERRIDE_ENV}={override}): {_describe_gaps(gaps[override])}"
            )
        return SCHEMAS[override]
    complete = [name for name in SCHEMA_NAMES if not gaps[name]]
    if len(complete) == 1:
        return SCHEMAS[complete[0]]
    if len(complete) == 2:
        raise DatabaseError(
            f"the database holds both the legacy and the current schema's tables; set {OVERRIDE_ENV}=legacy or current"
        )
    # the schema the database resembles more is named first
    order = sorted(SCHEMA_NAMES, key=lambda name: len(gaps[name]))
    said = "; ".join(f"{name} schema: {_describe_gaps(gaps[name])}" for name in order)
    raise DatabaseError(f"not an experiment database: {said}")


def schema_of(conn: sa.Connection) -> Schema:
    """The connection's schema, detected once per engine."""
    engine = conn.engine
    found = _detected.get(engine)
    if found is None:
        found = detect(conn)
        _detected[engine] = found
    return found


def forget(engine: sa.Engine) -> None:
    """Detect again on the next use (after tables were created on this engine)."""
    _detected.pop(engine, None)


__all__ = ["CURRENT", "LEGACY", "OVERRIDE_ENV", "detect", "forget", "missing_parts", "schema_of"]

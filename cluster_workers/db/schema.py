"""The two experiment schemas the tool serves, as SQLAlchemy Core tables with one set of column keys.

*legacy*: the experiments' first application (``run``, ``invocation``, ``embedding``;
UUIDs as SQLAlchemy ``Uuid``: 32-char hex on SQLite, ``uuid`` on PostgreSQL; ``type``
holding the enum *name* ``'TEXT'``/``'IMAGE'``). Its result tables
(``clusteringresult``, ``embeddingcluster``) are ours and created when first written.

*current*: the rewritten application (plural tables, UUIDs as 36-char dashed text,
``'text'``/``'image'``, ISO 8601 text timestamps with microseconds and ``Z``,
``inserted_at``/``updated_at`` NOT NULL on every row, ``runs.run_number``, no seeds,
``clustering_results.layer`` with UNIQUE (embedding_model, algorithm, layer)). Every
table there is the experiment application's: read, never created or altered, except by
``publish`` and a ``delete`` that names one of its results. This tool's rows live in
tables of its own beside them, all named ``cluster_workers_*`` (:data:`OUR_PREFIX`), with
no foreign key into the application's tables: the application deletes results,
experiments and embeddings at will, and nothing of ours may stand in its way.

Both map onto the same column *keys* (``invocation.c.output_image_data``,
``clustering_result.c.created_at`` -- the current schema's ``inserted_at``), so a
query is written once and built on whichever :class:`Schema` a connection holds
(:func:`cluster_workers.db.detect.schema_of`). Code above ``db/`` never sees which.
"""

from __future__ import annotations

import datetime as dt
import uuid
from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa
from sqlalchemy.types import TypeDecorator

LEGACY, CURRENT = "legacy", "current"
OUR_PREFIX = "cluster_workers_"  # every table this tool makes beside the current schema's
SCHEMA_NAMES = (LEGACY, CURRENT)


class DashedUuid(TypeDecorator):
    """A UUID stored as 36-char dashed lower-case text; ``uuid.UUID`` in Python (binds also take text or 16 bytes)."""

    impl = sa.String(36)
    cache_ok = True

    def process_bind_param(self, value: Any, dialect: sa.Dialect) -> str | None:
        if value is None:
            return None
        if isinstance(value, uuid.UUID):
            return str(value)
        if isinstance(value, (bytes, bytearray, memoryview)):
            return str(uuid.UUID(bytes=bytes(value)))
        return str(uuid.UUID(str(value)))

    def process_result_value(self, value: Any, dialect: sa.Dialect) -> uuid.UUID | None:
        return None if value is None else uuid.UUID(str(value))


TIMESTAMP_FORMAT = "%Y-%m-%dT%H:%M:%S.%fZ"  # 2026-05-19T06:43:59.123456Z


def iso_timestamp(when: dt.datetime) -> str:
    """A datetime (naive = UTC) as the current schema writes it."""
    if when.tzinfo is not None:
        when = when.astimezone(dt.timezone.utc).replace(tzinfo=None)
    return when.strftime(TIMESTAMP_FORMAT)


def parse_timestamp(text: str) -> dt.datetime:
    """ISO 8601 text (``Z``, an offset, or none; any fraction) as a naive UTC datetime."""
    value = dt.datetime.fromisoformat(str(text).strip().replace("Z", "+00:00").replace(" ", "T"))
    return value.astimezone(dt.timezone.utc).replace(tzinfo=None) if value.tzinfo else value


class IsoTimestamp(TypeDecorator):
    """A timestamp stored as ISO 8601 text with microseconds and ``Z``; a naive UTC ``datetime`` in Python."""

    impl = sa.String
    cache_ok = True

    def process_bind_param(self, value: Any, dialect: sa.Dialect) -> str | None:
        if value is None or isinstance(value, str):
            return value
        return iso_timestamp(value)

    def process_result_value(self, value: Any, dialect: sa.Dialect) -> dt.datetime | None:
        return None if value is None else parse_timestamp(value)


def utc_now() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc).replace(tzinfo=None)


@dataclass(frozen=True)
class Schema:
    """One schema's tables (same column keys in both) and the rules for writing to it."""

    name: str
    metadata: sa.MetaData
    experiment: sa.Table | None  # the current schema's ``experiments``; legacy runs only carry an id
    run: sa.Table
    invocation: sa.Table
    embedding: sa.Table
    clustering_result: sa.Table  # ours: the results this tool writes
    embedding_cluster: sa.Table  # ours: their memberships
    clustering_tree: sa.Table
    clustering_assignment: sa.Table  # ours, made by the first `assign`: which rows were frozen, which assigned
    ours: tuple[sa.Table, ...]  # the tables this tool creates when it first writes
    required: dict[str, tuple[str, ...]]  # table -> columns that must exist for the schema to be recognised
    stamped: bool  # every row written carries inserted_at / updated_at
    layered: bool  # results have a layer, unique per (embedding_model, algorithm, layer)
    dashed_ids: bool  # ids are 36-char dashed text (else SQLAlchemy's Uuid: 32-char hex on SQLite)
    clustering_layer: sa.Table | None = None  # ours, made by the first evoc run: per layer strengths and the layer tree
    # the current schema's own result tables (the application's clusterings: read; written only by `publish`)
    application_result: sa.Table | None = None
    application_membership: sa.Table | None = None
    # ours under the names 0.2.0 gave them on the current schema (read until `repair` moves their rows)
    former_side_tables: dict[str, sa.Table] = field(default_factory=dict)

    @property
    def experiment_tables(self) -> tuple[sa.Table, ...]:
        return tuple(t for t in (self.experiment, self.run, self.invocation, self.embedding) if t is not None)

    def timestamp_text(self, when: dt.datetime) -> str:
        return iso_timestamp(when)

    def describe(self) -> str:
        tables = ", ".join(t.name for t in self.experiment_tables)
        return f"{self.name} schema ({tables})"


def _stamps(text_type: type) -> list[sa.Column]:
    """``inserted_at`` / ``updated_at``, filled on every insert this tool makes."""
    return [
        sa.Column("inserted_at", text_type, nullable=False, default=utc_now),
        sa.Column("updated_at", text_type, nullable=False, default=utc_now, onupdate=utc_now),
    ]


def _result_key(id_type: Any, result_table: str | None) -> sa.Column:
    """The side table's key: the result's id (a foreign key into our own results table, where one is named)."""
    refers = (sa.ForeignKey(f"{result_table}.id"),) if result_table else ()
    return sa.Column("clustering_result_id", id_type, *refers, primary_key=True)


def _tree_table(metadata: sa.MetaData, id_type: Any, result_table: str | None, name: str) -> sa.Table:
    return sa.Table(
        name,  # ours: what re-cutting a result needs, per result one row
        metadata,
        _result_key(id_type, result_table),
        sa.Column("format", sa.Integer, nullable=False),  # layout of the blobs (db/attached.py)
        sa.Column("points", sa.Integer, nullable=False),
        sa.Column("edges", sa.LargeBinary, nullable=False),  # (points - 1) x (<i4 row, <i4 row, <f8 weight), by weight
        sa.Column("positions", sa.LargeBinary, nullable=False),  # <i4 per row: its place among the result's ids, sorted
        sa.Column("probabilities", sa.LargeBinary, nullable=False),  # <f8 per row
        sa.Column("outlier_scores", sa.LargeBinary, nullable=False),  # <f8 per row (GLOSH)
        *tree_core_columns(),
    )


def _assignment_table(metadata: sa.MetaData, id_type: Any, result_table: str | None, name: str) -> sa.Table:
    return sa.Table(
        name,  # ours: per result made by `assign`, one row (db/attached.py)
        metadata,
        _result_key(id_type, result_table),
        sa.Column("assigned_from", id_type, nullable=False),  # the frozen result (never changed by assign)
        sa.Column("points", sa.Integer, nullable=False),
        sa.Column("positions", sa.LargeBinary, nullable=False),  # <i4 per row: its place among the result's ids, sorted
        sa.Column("assigned", sa.LargeBinary, nullable=False),  # <u1 per row: 0 frozen sample, 1 assigned
        sa.Column("probabilities", sa.LargeBinary, nullable=False),  # <f8 per row
        sa.Column("core_distances", sa.LargeBinary, nullable=False),  # <f8 per row (an assigned row: its own, as predicted)
        sa.Column("nearest", sa.LargeBinary, nullable=False),  # <i4 per row: the frozen row it joined through (-1: frozen)
    )


def _layer_table(metadata: sa.MetaData, id_type: Any, result_table: str | None, name: str) -> sa.Table:
    return sa.Table(
        name,  # ours: per result made by the evoc engine, one row (db/attached.py)
        metadata,
        _result_key(id_type, result_table),
        sa.Column("run_id", id_type, nullable=False),  # the run's finest layer: every layer of one run shares it
        sa.Column("layer", sa.Integer, nullable=False),
        sa.Column("layers", sa.Integer, nullable=False),
        sa.Column("persistence", sa.Float, nullable=False),
        sa.Column("points", sa.Integer, nullable=False),
        sa.Column("positions", sa.LargeBinary, nullable=False),  # <i4 per row: its place among the result's ids, sorted
        sa.Column("strengths", sa.LargeBinary, nullable=False),  # <f8 per row: EVoC's membership strength
        sa.Column("clusters", sa.Integer, nullable=False),
        sa.Column("parents", sa.LargeBinary, nullable=False),  # <i4 per cluster: medoid row, parent layer, parent medoid row
    )


def tree_core_columns() -> list[sa.Column]:
    """The tree's core distances (added after the first trees: NULL in a tree made before; db/attached.py adds them
    to an older table): <f8 per row, the fit's (min_samples-th other point) and the prediction's (itself counted)."""
    return [
        sa.Column("core_distances", sa.LargeBinary, nullable=True),
        sa.Column("prediction_core_distances", sa.LargeBinary, nullable=True),
    ]


def _legacy() -> Schema:
    md = sa.MetaData()
    run = sa.Table(
        "run",
        md,
        sa.Column("id", sa.Uuid, primary_key=True),
        sa.Column("network", sa.JSON),
        sa.Column("seed", sa.Integer),
        sa.Column("max_length", sa.Integer),
        sa.Column("initial_prompt", sa.String),
        sa.Column("experiment_id", sa.Uuid, nullable=True),
    )
    invocation = sa.Table(
        "invocation",
        md,
        sa.Column("id", sa.Uuid, primary_key=True),
        sa.Column("started_at", sa.DateTime),
        sa.Column("completed_at", sa.DateTime),
        sa.Column("model", sa.String),
        sa.Column("type", sa.Enum("TEXT", "IMAGE", name="invocationtype")),
        sa.Column("seed", sa.Integer),
        sa.Column("run_id", sa.Uuid, sa.ForeignKey("run.id"), index=True),
        sa.Column("sequence_number", sa.Integer),
        sa.Column("input_invocation_id", sa.Uuid, nullable=True),
        sa.Column("output_text", sa.String, nullable=True),
        sa.Column("output_image_data", sa.LargeBinary, nullable=True),
    )
    embedding = sa.Table(
        "embedding",
        md,
        sa.Column("id", sa.Uuid, primary_key=True),
        sa.Column("started_at", sa.DateTime),
        sa.Column("completed_at", sa.DateTime),
        sa.Column("invocation_id", sa.Uuid, sa.ForeignKey("invocation.id"), index=True),
        sa.Column("embedding_model", sa.String, index=True),
        sa.Column("vector", sa.LargeBinary),
    )
    result = sa.Table(
        "clusteringresult",
        md,
        sa.Column("id", sa.Uuid, primary_key=True),
        sa.Column("created_at", sa.DateTime),
        sa.Column("started_at", sa.DateTime),
        sa.Column("completed_at", sa.DateTime),
        sa.Column("embedding_model", sa.String, index=True),
        sa.Column("algorithm", sa.String),
        sa.Column("parameters", sa.JSON),
    )
    membership = sa.Table(
        "embeddingcluster",
        md,
        sa.Column("id", sa.Uuid, primary_key=True),
        sa.Column("embedding_id", sa.Uuid, sa.ForeignKey("embedding.id"), nullable=False),
        sa.Column("clustering_result_id", sa.Uuid, sa.ForeignKey("clusteringresult.id"), nullable=False, index=True),
        sa.Column("medoid_embedding_id", sa.Uuid, sa.ForeignKey("embedding.id"), nullable=True),
        sa.UniqueConstraint("embedding_id", "clustering_result_id", name="uq_embeddingcluster_embedding_result"),
    )
    tree = _tree_table(md, sa.Uuid, "clusteringresult", "clusteringtree")
    assignment = _assignment_table(md, sa.Uuid, "clusteringresult", "clusteringassignment")
    required = {
        "run": ("id", "network", "initial_prompt"),
        "invocation": ("id", "run_id", "sequence_number", "type", "output_text"),
        "embedding": ("id", "invocation_id", "embedding_model", "vector"),
    }
    return Schema(
        LEGACY,
        md,
        None,
        run,
        invocation,
        embedding,
        result,
        membership,
        tree,
        assignment,
        ours=(result, membership, tree),
        required=required,
        stamped=False,
        layered=False,
        dashed_ids=False,
        clustering_layer=_layer_table(md, sa.Uuid, "clusteringresult", "clusteringlayer"),
    )


def _current() -> Schema:
    md = sa.MetaData()
    experiment = sa.Table(
        "experiments",
        md,
        sa.Column("id", DashedUuid, primary_key=True),
        sa.Column("max_length", sa.Integer, nullable=False),
        sa.Column("embedding_models", sa.JSON, nullable=False),
        sa.Column("prompts", sa.JSON, nullable=False),
        sa.Column("networks", sa.JSON, nullable=False),
        sa.Column("num_runs", sa.Integer, nullable=False),
        sa.Column("started_at", IsoTimestamp),
        sa.Column("completed_at", IsoTimestamp),
        *_stamps(IsoTimestamp),
    )
    run = sa.Table(
        "runs",
        md,
        sa.Column("id", DashedUuid, primary_key=True),
        sa.Column("experiment_id", DashedUuid, sa.ForeignKey("experiments.id"), nullable=False),
        sa.Column("initial_prompt", sa.String, nullable=False),
        sa.Column("max_length", sa.Integer, nullable=False),
        sa.Column("network", sa.JSON, nullable=False),
        sa.Column("run_number", sa.Integer, nullable=False),
        *_stamps(IsoTimestamp),
    )
    invocation = sa.Table(
        "invocations",
        md,
        sa.Column("id", DashedUuid, primary_key=True),
        sa.Column("run_id", DashedUuid, sa.ForeignKey("runs.id"), nullable=False),
        sa.Column("input_invocation_id", DashedUuid, sa.ForeignKey("invocations.id"), nullable=True),
        sa.Column("sequence_number", sa.Integer, nullable=False),
        sa.Column("type", sa.String, nullable=False),  # 'text' / 'image'
        sa.Column("model", sa.String, nullable=False),
        sa.Column("output_text", sa.String, nullable=True),
        sa.Column("output_image", sa.LargeBinary, nullable=True, key="output_image_data"),
        sa.Column("started_at", IsoTimestamp, nullable=False),
        sa.Column("completed_at", IsoTimestamp, nullable=True),
        *_stamps(IsoTimestamp),
    )
    embedding = sa.Table(
        "embeddings",
        md,
        sa.Column("id", DashedUuid, primary_key=True),
        sa.Column("invocation_id", DashedUuid, sa.ForeignKey("invocations.id"), nullable=False),
        sa.Column("embedding_model", sa.String, nullable=False),
        sa.Column("vector", sa.LargeBinary, nullable=False),
        sa.Column("started_at", IsoTimestamp, nullable=False),
        sa.Column("completed_at", IsoTimestamp, nullable=True),
        *_stamps(IsoTimestamp),
    )
    application_result = _result_table(md, "clustering_results")
    application_membership = sa.Table(
        "embedding_clusters",
        md,
        sa.Column("id", DashedUuid, primary_key=True),
        sa.Column("embedding_id", DashedUuid, sa.ForeignKey("embeddings.id"), nullable=False),
        sa.Column("clustering_result_id", DashedUuid, sa.ForeignKey("clustering_results.id"), nullable=False),
        sa.Column("medoid_embedding_id", DashedUuid, sa.ForeignKey("embeddings.id"), nullable=True),
        *_stamps(IsoTimestamp),
    )
    # ours: the same columns as the application's two result tables (so `publish` and `repair` copy rows as
    # they are), no UNIQUE (embedding_model, algorithm, layer), and no foreign key into any table of theirs
    result = _result_table(md, f"{OUR_PREFIX}results")
    membership = sa.Table(
        f"{OUR_PREFIX}memberships",
        md,
        sa.Column("id", DashedUuid, primary_key=True),
        sa.Column("embedding_id", DashedUuid, nullable=False),
        sa.Column("clustering_result_id", DashedUuid, nullable=False, index=True),
        sa.Column("medoid_embedding_id", DashedUuid, nullable=True),
        *_stamps(IsoTimestamp),
    )
    tree = _tree_table(md, DashedUuid, result.name, f"{OUR_PREFIX}trees")
    assignment = _assignment_table(md, DashedUuid, result.name, f"{OUR_PREFIX}assignments")
    layer = _layer_table(md, DashedUuid, result.name, f"{OUR_PREFIX}layers")
    former = sa.MetaData()  # 0.2.0's names, no keys: read before a repair, then dropped
    former_side_tables = {
        tree.name: _tree_table(former, DashedUuid, None, "clusteringtree"),
        assignment.name: _assignment_table(former, DashedUuid, None, "clusteringassignment"),
        layer.name: _layer_table(former, DashedUuid, None, "clusteringlayer"),
    }
    required = {
        "experiments": ("id",),
        "runs": ("id", "experiment_id", "initial_prompt", "network", "run_number", "inserted_at", "updated_at"),
        "invocations": ("id", "run_id", "sequence_number", "type", "model", "output_text", "inserted_at", "updated_at"),
        "embeddings": ("id", "invocation_id", "embedding_model", "vector", "inserted_at", "updated_at"),
        "clustering_results": (
            "id",
            "embedding_model",
            "algorithm",
            "parameters",
            "layer",
            "started_at",
            "completed_at",
            "inserted_at",
            "updated_at",
        ),
        "embedding_clusters": ("id", "embedding_id", "clustering_result_id", "medoid_embedding_id", "inserted_at", "updated_at"),
    }
    return Schema(
        CURRENT,
        md,
        experiment,
        run,
        invocation,
        embedding,
        result,
        membership,
        tree,
        assignment,
        ours=(result, membership, tree),
        required=required,
        stamped=True,
        layered=True,
        dashed_ids=True,
        clustering_layer=layer,
        application_result=application_result,
        application_membership=application_membership,
        former_side_tables=former_side_tables,
    )


def _result_table(metadata: sa.MetaData, name: str) -> sa.Table:
    """The current schema's results: the application's ``clustering_results``, and ours with the same columns."""
    return sa.Table(
        name,
        metadata,
        sa.Column("id", DashedUuid, primary_key=True),
        sa.Column("embedding_model", sa.String, nullable=False),
        sa.Column("algorithm", sa.String, nullable=False),
        sa.Column("parameters", sa.JSON, nullable=False),
        sa.Column("layer", sa.Integer, nullable=False, default=0),
        sa.Column("started_at", IsoTimestamp, nullable=False),
        sa.Column("completed_at", IsoTimestamp, nullable=True),
        sa.Column("inserted_at", IsoTimestamp, nullable=False, default=utc_now, key="created_at"),
        sa.Column("updated_at", IsoTimestamp, nullable=False, default=utc_now, onupdate=utc_now),
    )


LEGACY_SCHEMA = _legacy()
CURRENT_SCHEMA = _current()
SCHEMAS = {LEGACY: LEGACY_SCHEMA, CURRENT: CURRENT_SCHEMA}

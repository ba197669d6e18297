"""SQLAlchemy Core tables: the experiment tables (read) and the result tables (written).

Names and column types follow the experiment database as the experiments wrote
it: UUID ids (``Uuid``: 32-char hex on SQLite, native ``uuid`` on PostgreSQL),
``invocation.type`` holding the enum *name* (``'TEXT'``/``'IMAGE'``), vectors as
raw little-endian float32 BLOBs.
"""

from __future__ import annotations

import sqlalchemy as sa

metadata = sa.MetaData()

run = sa.Table(
    "run",
    metadata,
    sa.Column("id", sa.Uuid, primary_key=True),
    sa.Column("network", sa.JSON),
    sa.Column("seed", sa.Integer),
    sa.Column("max_length", sa.Integer),
    sa.Column("initial_prompt", sa.String),
    sa.Column("experiment_id", sa.Uuid, nullable=True),
)

invocation = sa.Table(
    "invocation",
    metadata,
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
    metadata,
    sa.Column("id", sa.Uuid, primary_key=True),
    sa.Column("started_at", sa.DateTime),
    sa.Column("completed_at", sa.DateTime),
    sa.Column("invocation_id", sa.Uuid, sa.ForeignKey("invocation.id"), index=True),
    sa.Column("embedding_model", sa.String, index=True),
    sa.Column("vector", sa.LargeBinary),
)

clustering_result = sa.Table(
    "clusteringresult",
    metadata,
    sa.Column("id", sa.Uuid, primary_key=True),
    sa.Column("created_at", sa.DateTime),
    sa.Column("started_at", sa.DateTime),
    sa.Column("completed_at", sa.DateTime),
    sa.Column("embedding_model", sa.String, index=True),
    sa.Column("algorithm", sa.String),
    sa.Column("parameters", sa.JSON),
)

embedding_cluster = sa.Table(
    "embeddingcluster",
    metadata,
    sa.Column("id", sa.Uuid, primary_key=True),
    sa.Column("embedding_id", sa.Uuid, sa.ForeignKey("embedding.id"), nullable=False),
    sa.Column("clustering_result_id", sa.Uuid, sa.ForeignKey("clusteringresult.id"), nullable=False, index=True),
    sa.Column("medoid_embedding_id", sa.Uuid, sa.ForeignKey("embedding.id"), nullable=True),
    sa.UniqueConstraint("embedding_id", "clustering_result_id", name="uq_embeddingcluster_embedding_result"),
)

clustering_tree = sa.Table(
    "clusteringtree",  # ours, beside the users' tables: what re-cutting a result needs, per result one row
    metadata,
    sa.Column("clustering_result_id", sa.Uuid, sa.ForeignKey("clusteringresult.id"), primary_key=True),
    sa.Column("format", sa.Integer, nullable=False),  # layout of the blobs (db/trees.py)
    sa.Column("points", sa.Integer, nullable=False),
    sa.Column("edges", sa.LargeBinary, nullable=False),  # (points - 1) x (<i4 row, <i4 row, <f8 weight), by weight
    sa.Column("positions", sa.LargeBinary, nullable=False),  # <i4 per row: its place among the result's ids, sorted
    sa.Column("probabilities", sa.LargeBinary, nullable=False),  # <f8 per row
    sa.Column("outlier_scores", sa.LargeBinary, nullable=False),  # <f8 per row (GLOSH)
)

EXPERIMENT_TABLES = (run, invocation, embedding)
RESULT_TABLES = (clustering_result, embedding_cluster, clustering_tree)

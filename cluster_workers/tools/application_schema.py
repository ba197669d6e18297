"""The current schema's DDL as the experiment application's migrations create it on SQLite (from their table of
columns and constraints), and how their application fills a row: dashed UUID text, ISO 8601 ``Z`` text
timestamps, JSON as text. Used to build demo and test databases that look like theirs -- our own
mapping of it lives in :mod:`cluster_workers.db.schema` and is checked against this.
"""

from __future__ import annotations

APPLICATION_DDL = (
    """CREATE TABLE "experiments" (
        "id" TEXT NOT NULL PRIMARY KEY,
        "max_length" INTEGER NOT NULL,
        "embedding_models" TEXT NOT NULL,
        "prompts" TEXT NOT NULL,
        "networks" TEXT NOT NULL,
        "num_runs" INTEGER NOT NULL,
        "started_at" TEXT,
        "completed_at" TEXT,
        "inserted_at" TEXT NOT NULL,
        "updated_at" TEXT NOT NULL)""",
    """CREATE TABLE "runs" (
        "id" TEXT NOT NULL PRIMARY KEY,
        "experiment_id" TEXT NOT NULL CONSTRAINT "runs_experiment_id_fkey" REFERENCES "experiments"("id") ON DELETE CASCADE,
        "initial_prompt" TEXT NOT NULL,
        "max_length" INTEGER NOT NULL,
        "network" TEXT NOT NULL,
        "run_number" INTEGER NOT NULL,
        "inserted_at" TEXT NOT NULL,
        "updated_at" TEXT NOT NULL)""",
    'CREATE UNIQUE INDEX "runs_experiment_id_network_initial_prompt_run_number_index" '
    'ON "runs" ("experiment_id", "network", "initial_prompt", "run_number")',
    """CREATE TABLE "invocations" (
        "id" TEXT NOT NULL PRIMARY KEY,
        "run_id" TEXT NOT NULL CONSTRAINT "invocations_run_id_fkey" REFERENCES "runs"("id") ON DELETE CASCADE,
        "input_invocation_id" TEXT CONSTRAINT "invocations_input_invocation_id_fkey" REFERENCES "invocations"("id"),
        "sequence_number" INTEGER NOT NULL,
        "type" TEXT NOT NULL,
        "model" TEXT NOT NULL,
        "output_text" TEXT,
        "output_image" BLOB,
        "started_at" TEXT NOT NULL,
        "completed_at" TEXT,
        "inserted_at" TEXT NOT NULL,
        "updated_at" TEXT NOT NULL)""",
    'CREATE UNIQUE INDEX "invocations_run_id_sequence_number_index" ON "invocations" ("run_id", "sequence_number")',
    """CREATE TABLE "embeddings" (
        "id" TEXT NOT NULL PRIMARY KEY,
        "invocation_id" TEXT NOT NULL CONSTRAINT "embeddings_invocation_id_fkey" REFERENCES "invocations"("id") ON DELETE CASCADE,
        "embedding_model" TEXT NOT NULL,
        "vector" BLOB NOT NULL,
        "started_at" TEXT NOT NULL,
        "completed_at" TEXT,
        "inserted_at" TEXT NOT NULL,
        "updated_at" TEXT NOT NULL)""",
    'CREATE UNIQUE INDEX "embeddings_invocation_id_embedding_model_index" ON "embeddings" ("invocation_id", "embedding_model")',
    """CREATE TABLE "clustering_results" (
        "id" TEXT NOT NULL PRIMARY KEY,
        "embedding_model" TEXT NOT NULL,
        "algorithm" TEXT NOT NULL,
        "parameters" TEXT NOT NULL DEFAULT '{}',
        "layer" INTEGER NOT NULL DEFAULT 0,
        "started_at" TEXT NOT NULL,
        "completed_at" TEXT,
        "inserted_at" TEXT NOT NULL,
        "updated_at" TEXT NOT NULL)""",
    'CREATE UNIQUE INDEX "clustering_results_embedding_model_algorithm_layer_index" '
    'ON "clustering_results" ("embedding_model", "algorithm", "layer")',
    """CREATE TABLE "embedding_clusters" (
        "id" TEXT NOT NULL PRIMARY KEY,
        "embedding_id" TEXT NOT NULL CONSTRAINT "embedding_clusters_embedding_id_fkey" REFERENCES "embeddings"("id") ON DELETE CASCADE,
        "clustering_result_id" TEXT NOT NULL CONSTRAINT "embedding_clusters_clustering_result_id_fkey"
            REFERENCES "clustering_results"("id") ON DELETE CASCADE,
        "medoid_embedding_id" TEXT CONSTRAINT "embedding_clusters_medoid_embedding_id_fkey" REFERENCES "embeddings"("id"),
        "inserted_at" TEXT NOT NULL,
        "updated_at" TEXT NOT NULL)""",
    'CREATE UNIQUE INDEX "embedding_clusters_embedding_id_clustering_result_id_index" '
    'ON "embedding_clusters" ("embedding_id", "clustering_result_id")',
    # their other analyses: never ours to touch (the demo puts one row in each to prove it)
    """CREATE TABLE "lyapunov_results" (
        "id" TEXT NOT NULL PRIMARY KEY,
        "embedding_model" TEXT NOT NULL,
        "parameters" TEXT NOT NULL DEFAULT '{}',
        "exponents" TEXT,
        "inserted_at" TEXT NOT NULL,
        "updated_at" TEXT NOT NULL)""",
    """CREATE TABLE "persistence_diagrams" (
        "id" TEXT NOT NULL PRIMARY KEY,
        "run_id" TEXT NOT NULL CONSTRAINT "persistence_diagrams_run_id_fkey" REFERENCES "runs"("id") ON DELETE CASCADE,
        "embedding_model" TEXT NOT NULL,
        "diagram_data" BLOB,
        "inserted_at" TEXT NOT NULL,
        "updated_at" TEXT NOT NULL)""",
)

APPLICATION_TABLES = (
    "experiments",
    "runs",
    "invocations",
    "embeddings",
    "clustering_results",
    "embedding_clusters",
    "lyapunov_results",
    "persistence_diagrams",
)
EVOC_PARAMETERS = {"noise_level": 0.5, "min_samples": 5, "random_state": 42}  # plus base_min_cluster_size per run


def create_application_tables(conn) -> None:  # type: ignore[no-untyped-def]
    """Create the current schema's tables as the application's migrations do (SQLite DDL; PostgreSQL accepts it too)."""
    for statement in APPLICATION_DDL:
        ddl = statement if conn.dialect.name == "sqlite" else statement.replace(" BLOB", " BYTEA")
        conn.exec_driver_sql(ddl)

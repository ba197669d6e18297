"""The legacy schema's tables under their historical names, for the tests that build and read legacy databases
by hand (the package itself always goes through a connection's :class:`~cluster_workers.db.schema.Schema`)."""

from cluster_workers.db.schema import LEGACY_SCHEMA

metadata = LEGACY_SCHEMA.metadata
run, invocation, embedding = LEGACY_SCHEMA.run, LEGACY_SCHEMA.invocation, LEGACY_SCHEMA.embedding
clustering_result, embedding_cluster, clustering_tree = (
    LEGACY_SCHEMA.clustering_result,
    LEGACY_SCHEMA.embedding_cluster,
    LEGACY_SCHEMA.clustering_tree,
)
EXPERIMENT_TABLES = (run, invocation, embedding)
RESULT_TABLES = (clustering_result, embedding_cluster, clustering_tree)

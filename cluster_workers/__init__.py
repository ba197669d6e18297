"""cluster_workers: HDBSCAN over sentence embeddings stored in SQL, one worker per model."""

__version__ = "0.1.0"

"""Database layer: tables, the sampling SQL, vector streaming and result writing. Knows nothing of HDBSCAN."""

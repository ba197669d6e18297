"""cluster_workers: HDBSCAN over sentence embeddings stored in SQL, one worker per model."""

from cluster_workers import blas_env

blas_env.apply()  # before numpy loads OpenBLAS, here and in every worker process (they inherit it)

__version__ = "0.3.0"


def __getattr__(name: str):  # type: ignore[no-untyped-def]
    """The library (:mod:`cluster_workers.api`), loaded on first use: ``cw.open(url)``, ``cw.hdbscan(X)``."""
    if name in ("open", "hdbscan", "Experiments", "Result"):
        from cluster_workers import api

        return getattr(api, name)
    raise AttributeError(f"module 'cluster_workers' has no attribute {name!r}")


def load_result(database_url: str, result_id: str, busy_timeout: float = 30.0):  # type: ignore[no-untyped-def]
    """One clustering result as a ``pandas.DataFrame`` (see :func:`cluster_workers.views.export.load_result`)."""
    from cluster_workers.views.export import load_result as _load

    return _load(database_url, result_id, busy_timeout)

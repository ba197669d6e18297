"""The library: what the command line does, from Python (a notebook, a script), on the same functions.

>>> import cluster_workers as cw
>>> db = cw.open("demo/experiments.db")          # doctest: +SKIP
>>> db.cluster(downsample=10)                    # doctest: +SKIP
>>> result = db.result("latest:Nomic256")        # doctest: +SKIP
>>> result.labels, result.probabilities          # doctest: +SKIP

and HDBSCAN itself on an array, with no database at all: :func:`hdbscan`.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from cluster_workers.db.catalog import ClusterSummary, ResultSummary, find_result
from cluster_workers.db.connect import Database, normalise_url


@dataclass(frozen=True)
class Result:
    """One result as arrays, one row per member, in run and text order.

    ``labels`` are cluster ranks (1 = the largest cluster, as ``show`` numbers them; -1 = outlier);
    ``probabilities`` are NaN where the result stores none (the application's own EVoC layers)."""

    summary: ResultSummary
    invocation_ids: np.ndarray  # (n,) object: uuid.UUID of each member's text invocation
    run_ids: np.ndarray  # (n,) object: uuid.UUID
    networks: np.ndarray  # (n,) object: the run's network, its models joined by "→"
    text_index: np.ndarray  # (n,) int64: the member's text step in its run
    labels: np.ndarray  # (n,) int64: cluster rank, -1 outlier
    probabilities: np.ndarray  # (n,) float64
    medoids: dict[int, uuid.UUID]  # rank -> the medoid's embedding id
    tree: np.ndarray | None  # (n - 1, 3): the MST the labels were cut from (row a, row b, weight), None without one

    @property
    def id(self) -> uuid.UUID:
        return self.summary.id


class Experiments:
    """An experiment database (SQLite file or URL, either schema): its results read and written.

    Every method calls the function the matching command calls; a failure raises the
    :class:`~cluster_workers.errors.ClusterWorkersError` whose one line the command prints."""

    def __init__(self, url: str, busy_timeout: float = 30.0) -> None:
        url = str(url)
        if "://" not in url:  # a file path: absolute, so that every worker process finds the same file
            url = str(Path(url).expanduser().resolve())
        self.url = normalise_url(url)
        self.database = Database(self.url, busy_timeout)

    def __repr__(self) -> str:
        from cluster_workers.db.connect import describe

        return f"Experiments({describe(self.url)!r})"

    def results(self, check_stale: bool = True) -> list[ResultSummary]:
        """Every result, newest first (``results``)."""
        from cluster_workers.views.tables import load_results

        return load_results(self.database, check_stale)

    def clusters(self, result: str = "latest") -> list[ClusterSummary]:
        """A result's clusters, largest first, with their medoid texts (``show``)."""
        from cluster_workers.views.tables import load_clusters

        return load_clusters(self.database, result)[1]

    def result(self, result: str = "latest") -> Result:
        """A result as arrays (``RESULT``: an id or prefix, ``latest`` or ``latest:MODEL``)."""
        from cluster_workers.db.attached import read_tree
        from cluster_workers.db.memberships import labelled

        def read(conn):  # type: ignore[no-untyped-def]
            summary = find_result(conn, result)
            data = labelled(conn, summary.id, with_probabilities=True)
            tree = read_tree(conn, summary.id)
            return Result(summary, data.invocation_ids, data.run_ids, data.networks, data.text_index, data.clusters,
                          data.probabilities, data.medoids, None if tree is None else tree.edges)  # fmt: skip

        return self.database.read(read)

    def frame(self, result: str = "latest"):  # type: ignore[no-untyped-def]
        """A result as a ``pandas.DataFrame`` with ``export``'s columns (needs the ``frames`` extra)."""
        from cluster_workers.views.export import load_result

        return load_result(self.url, result, self.database.busy_timeout)

    def cluster(self, **settings):  # type: ignore[no-untyped-def]
        """Cluster every model (``cluster``); keyword arguments are :class:`~cluster_workers.run.config.Settings`
        fields (``downsample=10``, ``engine="evoc"``, ``models=("Nomic256",)``, ``force=True``, ...)."""
        from cluster_workers.run.config import Settings
        from cluster_workers.run.coordinator import run_clustering

        if "models" in settings:
            settings["models"] = tuple(settings["models"])
        return run_clustering(Settings(database_url=self.url, **settings))

    def assign(self, result: str, downsample: int = 1, force: bool = False):  # type: ignore[no-untyped-def]
        """Label the model's other embeddings against a frozen result (``assign``)."""
        from cluster_workers.run.assign import assign

        return assign(self.url, result, downsample=downsample, force=force)

    def states(self, result: str = "latest", **options):  # type: ignore[no-untyped-def]
        """Milestoned states and dwell times (``states``)."""
        from cluster_workers.views.dynamics import load_states

        return load_states(self.database, result, **options)

    def kinetics(self, result: str = "latest", by: str = "network", **options):  # type: ignore[no-untyped-def]
        """Dwell times, absorption and the Markov chain per group (``kinetics``)."""
        from cluster_workers.views.dynamics import load_kinetics

        return load_kinetics(self.database, result, by=by, **options)

    def compare(self, a: str, b: str):  # type: ignore[no-untyped-def]
        """ARI, AMI and cluster matches of two results (``compare -r A -r B``)."""
        from cluster_workers.views.compare import compare

        return compare(self.database, None, results=[a, b])

    def publish(self, result: str, layers: list[int] | None = None, partial: bool = False, dry_run: bool = False):  # type: ignore[no-untyped-def]
        """Make one of our results the application's clustering of its model (``publish``)."""
        from cluster_workers.run.publish import publish

        return publish(self.url, result, {"busy_timeout": self.database.busy_timeout}, layers, partial, dry_run, self.database)


def open(url: str, busy_timeout: float = 30.0) -> Experiments:  # noqa: A001 - the library's verb, as sqlite_utils.Database
    """The experiment database at ``url`` (a SQLite file path or any SQLAlchemy URL).

    Examples
    --------
    >>> import cluster_workers as cw
    >>> db = cw.open("demo/experiments.db")  # doctest: +SKIP
    >>> [r.model for r in db.results()]  # doctest: +SKIP
    """
    return Experiments(url, busy_timeout)


def hdbscan(
    X: np.ndarray,
    min_cluster_size: int = 0,
    min_samples: int = 0,
    cluster_selection_epsilon: float = 0.5,
    cluster_selection_method: str = "eom",
    allow_single_cluster: bool = True,
):  # type: ignore[no-untyped-def]
    """Exact HDBSCAN of the rows of ``X`` (L2-normalised here, as every result of this tool) by the fast engine,
    with the tool's defaults and conventions (``0`` sizes: ``max(2, int(0.001 n))``; ``min_samples`` counts the
    point itself, as scikit-learn's). Returns a :class:`~cluster_workers.engines.Clustering`: ``labels``,
    ``probabilities``, ``tree`` (the MST, row a, row b, weight), ``outlier_scores``, ``cores`` (core distances).

    Examples
    --------
    >>> import numpy as np, cluster_workers as cw
    >>> X = np.vstack([np.eye(4)[0] + 0.01 * np.random.default_rng(0).normal(size=(30, 4)),
    ...                np.eye(4)[1] + 0.01 * np.random.default_rng(1).normal(size=(30, 4))])
    >>> sorted(set(cw.hdbscan(X, min_cluster_size=5).labels.tolist()))
    [0, 1]
    """
    from cluster_workers.engines import l2_normalise
    from cluster_workers.engines.fast import cluster
    from cluster_workers.run.params import ClusteringParams

    data = l2_normalise(np.array(X, dtype=np.float32))
    params = ClusteringParams(
        min_cluster_size=min_cluster_size, min_samples=min_samples, cluster_selection_epsilon=cluster_selection_epsilon,
        cluster_selection_method=cluster_selection_method, allow_single_cluster=allow_single_cluster,
    )  # fmt: skip
    return cluster(data, params.engine_params(len(data)))

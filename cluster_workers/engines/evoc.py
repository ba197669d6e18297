"""EVoC, the application's current algorithm, as an engine: every layer, made to repeat exactly.

The ``evoc`` package (a kNN graph, a node embedding of it, HDBSCAN-style layers) is
called as the application calls it -- ``noise_level=0.5``, ``base_min_cluster_size =
max(5, int(0.001·n))``, ``min_samples=5``, ``random_state=42`` on L2-normalised
rows -- with every parameter of ``evoc.EVoC`` settable.

**Reproducible.** With a fixed ``random_state`` the package's answer still depends on
how many numba threads run it (its parallel loops split work by thread): measured
on 30,000 real sentences, one thread and two threads give ARI 0.40 on ``labels_``.
So the fit runs with a fixed, recorded thread count (``threads``, default 1) for
numba and BLAS alike, whatever the machine or the worker's share of its cores; the
same count gives the same labels on any machine (tested across worker core counts).

Layers are returned finest first (the package's order); ``parents`` is the package's
layer tree (``EVoC.cluster_tree_``): for each cluster of a layer, the layer and cluster
of the coarser cluster that holds it (the nearest coarser layer that has one; -1, -1
for a cluster no coarser layer holds).
"""

from __future__ import annotations

import time
from contextlib import contextmanager
from dataclasses import dataclass, field, fields
from typing import Any, Iterator, Mapping

import numpy as np

from cluster_workers.errors import ConfigError, EngineUnavailable

SUPPORTED = (">=0.3", "<0.4")  # the tested range; pyproject's `evoc` extra pins the same


def auto_base_size(n: int) -> int:
    """The application's rule: ``max(5, int(0.001·n))``."""
    return max(5, int(0.001 * n))


@dataclass(frozen=True)
class EVoCParams:
    """``evoc.EVoC``'s parameters (the application's values as defaults) and the thread count of the fit."""

    noise_level: float = 0.5
    base_min_cluster_size: int = 0  # 0 = the application's rule, max(5, int(0.001·n))
    base_n_clusters: int | None = None
    approx_n_clusters: int | None = None
    n_neighbors: int = 15
    min_samples: int = 5
    n_epochs: int = 50
    node_embedding_init: str | None = "label_prop"
    symmetrize_graph: bool = True
    node_embedding_dim: int | None = None
    neighbor_scale: float = 1.0
    random_state: int | None = 42
    min_similarity_threshold: float = 0.2
    max_layers: int = 10
    n_label_prop_iter: int = 20
    threads: int = 1  # numba and BLAS threads of the fit: fixed, so the answer does not depend on the machine

    def __post_init__(self) -> None:
        if not isinstance(self.threads, int) or self.threads < 1:
            raise ConfigError(f"evoc threads must be a positive integer, got {self.threads!r}")
        if self.base_min_cluster_size < 0 or self.min_samples < 1 or self.n_neighbors < 2:
            raise ConfigError("evoc needs base_min_cluster_size >= 0 (0 = auto), min_samples >= 1 and n_neighbors >= 2")
        if not 0.0 <= self.noise_level <= 1.0:
            raise ConfigError(f"evoc noise_level must be in [0, 1], got {self.noise_level!r}")
        if self.max_layers < 1:
            raise ConfigError(f"evoc max_layers must be >= 1, got {self.max_layers!r}")

    @classmethod
    def from_options(cls, options: Mapping[str, Any]) -> "EVoCParams":
        """Parameters from ``KEY=VALUE`` strings (or typed values); an unknown key or bad value is a ConfigError."""
        kinds = {f.name: f.type for f in fields(cls)}
        values: dict[str, Any] = {}
        for key, raw in options.items():
            if key not in kinds:
                raise ConfigError(f"unknown evoc parameter {key!r} (known: {', '.join(kinds)})")
            values[key] = _parse(key, kinds[key], raw)
        return cls(**values)

    def options(self) -> dict[str, Any]:
        """The values that differ from the defaults (what a user asked for: the run key)."""
        default = EVoCParams()
        return {f.name: getattr(self, f.name) for f in fields(self) if getattr(self, f.name) != getattr(default, f.name)}

    def library_kwargs(self, n: int) -> dict[str, Any]:
        """What ``evoc.EVoC(...)`` is given for ``n`` rows (the auto size resolved)."""
        kwargs = {f.name: getattr(self, f.name) for f in fields(self) if f.name != "threads"}
        kwargs["base_min_cluster_size"] = self.base_min_cluster_size or auto_base_size(n)
        return kwargs


def _parse(key: str, kind: str, raw: Any) -> Any:
    if not isinstance(raw, str):
        return raw
    text = raw.strip()
    if "None" in kind and text.lower() in ("none", "null", ""):
        return None
    try:
        if kind.startswith("bool"):
            if text.lower() in ("1", "true", "yes", "on"):
                return True
            if text.lower() in ("0", "false", "no", "off"):
                return False
            raise ValueError(text)
        if kind.startswith("int"):
            return int(text)
        if kind.startswith("float"):
            return float(text)
        return text
    except ValueError:
        raise ConfigError(f"evoc parameter {key} has an invalid value: {raw!r}") from None


@dataclass
class Layers:
    """EVoC's answer: per layer (finest first) labels, membership strengths, persistence, and the layer tree."""

    labels: list[np.ndarray]  # (n,) int32 each, -1 = outlier
    strengths: list[np.ndarray]  # (n,) float64 each, in [0, 1]; 0 for outliers
    persistence: list[float]  # per layer (the package scores layers, not clusters; the finest layer gets 0)
    parents: list[np.ndarray]  # per layer (clusters, 2) int32: (layer, cluster) of the coarser cluster holding it
    info: dict = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.labels)


def library_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        found = version("evoc")
    except PackageNotFoundError:
        raise EngineUnavailable("the evoc engine needs the evoc package: pip install 'cluster-workers[evoc]'") from None
    major, minor = (int(p) for p in found.split(".")[:2])
    if (major, minor) < (0, 3) or (major, minor) >= (0, 4):
        raise EngineUnavailable(f"evoc {found} is outside the tested range {' '.join(SUPPORTED)}")
    return found


@contextmanager
def fixed_threads(threads: int) -> Iterator[None]:
    """Run with exactly ``threads`` numba and BLAS threads, restoring numba's count after."""
    import numba
    from threadpoolctl import threadpool_limits

    most = numba.config.NUMBA_NUM_THREADS
    if threads > most:
        raise ConfigError(
            f"evoc threads={threads} but numba allows at most {most} in this process; set NUMBA_NUM_THREADS={threads} "
            "in the workers' environment or ask for fewer threads"
        )
    before = numba.get_num_threads()
    numba.set_num_threads(threads)
    try:
        with threadpool_limits(limits=threads):
            yield
    finally:
        numba.set_num_threads(before)


def layer_parents(tree: Mapping[tuple[int, int], list[tuple[int, int]]], labels: list[np.ndarray]) -> list[np.ndarray]:
    """The package's ``cluster_tree_`` as, per layer, each cluster's (parent layer, parent cluster); -1, -1 at the top."""
    parents = [np.full((int(lab.max()) + 1 if lab.size else 0, 2), -1, dtype=np.int32) for lab in labels]
    for (parent_layer, parent_cluster), children in tree.items():
        if parent_layer >= len(labels):  # the package's root above every layer
            continue
        for child_layer, child_cluster in children:
            parents[child_layer][child_cluster] = (parent_layer, parent_cluster)
    return parents


def fit(data: np.ndarray, params: EVoCParams) -> Any:
    """The fitted ``evoc.EVoC`` on ``data`` (float32 rows) with ``params``, at the fixed thread count."""
    library_version()
    import evoc

    with fixed_threads(params.threads):
        return evoc.EVoC(**params.library_kwargs(len(data))).fit(data)


def cluster_layers(data: np.ndarray, params: EVoCParams) -> Layers:
    """Every EVoC layer of the rows of ``data`` (L2-normalised; float32 as the package works in)."""
    if len(data) < 2:
        raise ValueError(f"need at least 2 vectors to cluster, got {len(data)}")
    x = np.ascontiguousarray(data, dtype=np.float32)
    t0 = time.perf_counter()
    model = fit(x, params)
    fit_s = time.perf_counter() - t0
    labels = [np.asarray(lab, dtype=np.int32) for lab in model.cluster_layers_]
    strengths = [np.asarray(s, dtype=np.float64) for s in model.membership_strength_layers_]
    persistence = [float(p) for p in model.persistence_scores_]
    return Layers(
        labels,
        strengths,
        persistence,
        layer_parents(model.cluster_tree_, labels),
        info={
            "engine": "evoc",
            "threads": params.threads,
            "best_layer": int(np.argmax(persistence)) if persistence else 0,
            "timings": {"evoc_fit_s": fit_s},
        },
    )

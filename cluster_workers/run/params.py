"""The clustering parameters, defined once: the application's values and what each engine is given.

The application's workflow is scikit-learn's ``HDBSCAN`` with ``min_cluster_size =
min_samples = max(2, int(n * 0.001))``, ``cluster_selection_epsilon = 0.5`` and
``allow_single_cluster = True``, euclidean on L2-normalised vectors.

**The min_samples convention.** scikit-learn counts the point itself among its
``min_samples`` neighbours; the ``hdbscan`` package (and the fast engine) does
not. So the application's ``min_samples = m`` is passed to the engines as ``m - 1``
(never less than 1). Both values are recorded in every result's ``parameters``:
the application's at the top level, the engine's under ``engine_parameters``.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from typing import TYPE_CHECKING, Any

from cluster_workers.engines import HDBSCANParams
from cluster_workers.errors import ConfigError

if TYPE_CHECKING:
    from cluster_workers.db.attached import Source

ENGINES = ("fast", "reference", "evoc")  # evoc: the application's current algorithm (extra `evoc`), every layer a result
SELECTION_METHODS = ("eom", "leaf")
MEDOID_RULES = ("weighted", "mean")


def auto_size(n: int) -> int:
    """The application's rule: ``max(2, int(n * 0.001))``."""
    return max(2, int(n * 0.001))


@dataclass(frozen=True)
class ClusteringParams:
    """What a user asks for; ``0`` sizes mean "the application's rule for this sample size"."""

    min_cluster_size: int = 0
    min_samples: int = 0  # scikit-learn's convention: the point itself counts
    cluster_selection_epsilon: float = 0.5
    allow_single_cluster: bool = True
    cluster_selection_method: str = "eom"
    engine: str = "fast"
    medoid: str = "weighted"
    engine_options: tuple[tuple[str, Any], ...] = ()  # the evoc engine's parameters (KEY, VALUE); see engines/evoc.py

    def __post_init__(self) -> None:
        if isinstance(self.min_cluster_size, bool) or self.min_cluster_size != 0 and self.min_cluster_size < 2:
            raise ConfigError(f"min_cluster_size must be 0 (auto) or >= 2, got {self.min_cluster_size!r}")
        if isinstance(self.min_samples, bool) or self.min_samples < 0:
            raise ConfigError(f"min_samples must be 0 (auto) or >= 1, got {self.min_samples!r}")
        if not self.cluster_selection_epsilon >= 0:
            raise ConfigError(f"cluster_selection_epsilon must be >= 0, got {self.cluster_selection_epsilon!r}")
        if self.cluster_selection_method not in SELECTION_METHODS:
            raise ConfigError(f"cluster_selection_method must be 'eom' or 'leaf', got {self.cluster_selection_method!r}")
        if self.engine not in ENGINES:
            raise ConfigError(f"engine must be one of {', '.join(ENGINES)}, got {self.engine!r}")
        if self.medoid not in MEDOID_RULES:
            raise ConfigError(f"medoid must be one of {', '.join(MEDOID_RULES)}, got {self.medoid!r}")
        if self.engine_options and self.engine != "evoc":
            raise ConfigError(f"engine parameters are for the evoc engine; the {self.engine} engine takes the HDBSCAN options")
        if self.engine == "evoc":
            self.evoc_params()  # validates them

    def evoc_params(self):  # type: ignore[no-untyped-def]
        """The evoc engine's parameters (the application's values unless set)."""
        from cluster_workers.engines.evoc import EVoCParams

        return EVoCParams.from_options(dict(self.engine_options))

    def sklearn_values(self, n: int) -> dict:
        """The values as the application's own code reads them (scikit-learn's convention), resolved for ``n`` points."""
        if n < 2:
            raise ValueError(f"need at least 2 vectors to cluster, got {n}")
        mcs = min(self.min_cluster_size or auto_size(n), n)
        ms = min(self.min_samples or mcs, n)
        return {
            "min_cluster_size": max(2, mcs),
            "min_samples": max(1, ms),
            "cluster_selection_epsilon": float(self.cluster_selection_epsilon),
            "allow_single_cluster": bool(self.allow_single_cluster),
            "cluster_selection_method": self.cluster_selection_method,
        }

    def engine_params(self, n: int) -> HDBSCANParams:
        """What the engines get (the ``hdbscan`` package's convention: ``min_samples - 1``, at least 1)."""
        values = self.sklearn_values(n)
        return HDBSCANParams(
            min_cluster_size=values["min_cluster_size"],
            min_samples=max(1, min(values["min_samples"] - 1, n - 1)),
            cluster_selection_epsilon=values["cluster_selection_epsilon"],
            allow_single_cluster=values["allow_single_cluster"],
            cluster_selection_method=values["cluster_selection_method"],
        )

    def key(self) -> dict:
        """The requested values, as stored in the run key (an HDBSCAN result's key is what it always was)."""
        if self.engine == "evoc":
            return {"engine": "evoc", "medoid": self.medoid, "evoc": asdict(self.evoc_params())}
        values = asdict(self)
        values.pop("engine_options")
        return values

    def run_key(self, downsample: int | None) -> dict:
        """The key of a result made with these values at ``downsample``: an equal key on the same sample is not
        clustered (or re-cut) twice unless forced."""
        return {"downsample": downsample, **self.key()}


def requested_params(source: Source, overrides: dict) -> ClusteringParams:
    """The source's requested values with ``overrides`` applied; ``min_samples`` pinned to the source's.

    A different ``min_samples`` is a different tree: refused with the command that makes one.
    """
    stored = dict(source.parameters.get("requested") or {})
    base = ClusteringParams(**{k: v for k, v in stored.items() if k in ClusteringParams.__dataclass_fields__})
    asked_ms = overrides.pop("min_samples", None)
    wanted = replace(base, **{k: v for k, v in overrides.items() if v is not None})
    had = int(source.parameters["min_samples"])
    if asked_ms is not None and asked_ms != had:
        raise ConfigError(
            f"min_samples {asked_ms} needs a new clustering (the tree was made with min_samples {had}): "
            f"cluster-workers cluster --model {source.summary.model} --downsample {source.parameters.get('downsample', '?')} "
            f"--min-samples {asked_ms}"
        )
    if wanted.sklearn_values(source.n)["min_samples"] != had:
        wanted = replace(wanted, min_samples=had)  # "auto" would follow the new min_cluster_size: keep the tree's
    return wanted

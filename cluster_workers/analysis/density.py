"""Is the outlier share real sparsity? Core distances, their modality, and outliers against density and caption length.

Pure: arrays in, a :class:`Density` out. The core distance of a point is the
distance to its ``min_samples``-th nearest other point (the result's own
``min_samples``, hdbscan's convention); small means dense.

- **Bimodality**: Hartigan's dip test from the ``diptest`` package (its
  ``diptest(x)``: the dip statistic and the p-value interpolated from its
  table), on the log core distance. A small p-value rejects unimodality.
- **Outliers per density decile**: the outlier share among the points of each
  decile of the core distance (decile 1 the densest).
- **Caption length**: per image-to-text model, outliers against clustered
  points in characters and words; Mann-Whitney U (``scipy.stats``), with the
  rank-biserial correlation as the effect size (positive: outliers longer).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import numpy as np

QUANTILES = (0.01, 0.05, 0.1, 0.25, 0.5, 0.75, 0.9, 0.95, 0.99)


@dataclass(frozen=True)
class DipTest:
    statistic: float
    p_value: float
    n: int
    library: str  # which implementation, with its version
    on: str = "log core distance"

    @property
    def verdict(self) -> str:
        return "bimodal or more (unimodality rejected at 5%)" if self.p_value < 0.05 else "consistent with one mode"


@dataclass(frozen=True)
class LengthTest:
    """Outliers against clustered points of one text model, in characters or words."""

    text_model: str
    unit: str  # "characters" or "words"
    outliers: int
    clustered: int
    outlier_median: float
    clustered_median: float
    u_statistic: float
    p_value: float
    rank_biserial: float  # 2U / (n1 n2) - 1: positive when outliers are longer


@dataclass
class Density:
    points: int
    min_samples: int
    quantiles: dict[str, float]
    histogram: dict[str, list[float]]  # log-spaced bin edges and counts
    dip: DipTest | None
    deciles: list[dict]  # per decile: its core-distance range, points, outlier share
    lengths: list[LengthTest] = field(default_factory=list)

    def as_dict(self) -> dict:
        out = asdict(self)
        out["dip"] = None if self.dip is None else {**asdict(self.dip), "verdict": self.dip.verdict}
        return out


def dip_test(values: np.ndarray) -> DipTest:
    """Hartigan's dip test of ``values`` (the ``diptest`` package, called directly)."""
    from importlib.metadata import version

    import diptest

    statistic, p_value = diptest.diptest(np.asarray(values, dtype=np.float64))
    return DipTest(float(statistic), float(p_value), int(np.size(values)), f"diptest {version('diptest')}")


def log_core(core: np.ndarray) -> np.ndarray:
    """log10 of the core distances, exact copies (distance 0) put at the smallest positive one."""
    positive = core[core > 0]
    floor = positive.min() if positive.size else 1.0
    return np.log10(np.maximum(core, floor))


def decile_table(core: np.ndarray, outlier: np.ndarray) -> list[dict]:
    """Outlier share per decile of the core distance (rank deciles: ties share a decile by rank order)."""
    order = np.argsort(core, kind="stable")
    rows = []
    for d, part in enumerate(np.array_split(order, 10), start=1):
        if part.size:
            rows.append({"decile": d, "core_from": float(core[part].min()), "core_to": float(core[part].max()),
                         "points": int(part.size), "outlier_share": float(outlier[part].mean())})  # fmt: skip
    return rows


def length_tests(outlier: np.ndarray, texts: np.ndarray, text_models: np.ndarray) -> list[LengthTest]:
    """Per text model and unit, the Mann-Whitney U test of caption length, outliers against clustered."""
    from scipy.stats import mannwhitneyu

    chars = np.array([len(t or "") for t in texts], dtype=np.float64)
    words = np.array([len((t or "").split()) for t in texts], dtype=np.float64)
    out = []
    for model in sorted({str(m) for m in text_models}):
        mine = text_models.astype(str) == model
        for unit, length in (("characters", chars), ("words", words)):
            a, b = length[mine & outlier], length[mine & ~outlier]
            if a.size == 0 or b.size == 0:
                continue
            u, p = mannwhitneyu(a, b, alternative="two-sided")
            out.append(LengthTest(model, unit, int(a.size), int(b.size), float(np.median(a)), float(np.median(b)),
                                  float(u), float(p), float(2 * u / (a.size * b.size) - 1)))  # fmt: skip
    return out


def density(core: np.ndarray, labels: np.ndarray, min_samples: int, texts: np.ndarray | None = None,
            text_models: np.ndarray | None = None, bins: int = 40) -> Density:  # fmt: skip
    """The whole analysis of one result's sample (``core``: per point; ``labels``: -1 outlier)."""
    core = np.asarray(core, dtype=np.float64)
    outlier = np.asarray(labels) < 0
    logs = log_core(core)
    counts, edges = np.histogram(logs, bins=bins)
    quantiles = {f"q{int(q * 100):02d}": float(v) for q, v in zip(QUANTILES, np.quantile(core, QUANTILES))}
    dip = dip_test(logs) if core.size >= 4 else None
    lengths = length_tests(outlier, texts, text_models) if texts is not None and text_models is not None else []
    return Density(int(core.size), int(min_samples), quantiles, {"log10_edges": (edges).tolist(), "counts": counts.tolist()},
                   dip, decile_table(core, outlier), lengths)  # fmt: skip

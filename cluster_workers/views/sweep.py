"""``sweep``: every (min_cluster_size, epsilon) cut of a result's stored tree, and where the cut is flattest.

Nothing is written: each setting is cut from the stored tree by the same code
``recut`` and ``cluster`` use (:func:`cluster_workers.engines.tree.cut_tree`)
and scored against the stored labels.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from sklearn.metrics import adjusted_rand_score

from cluster_workers import stopping
from cluster_workers.db.attached import Source, load_source, old_cluster_codes
from cluster_workers.db.catalog import ResultSummary
from cluster_workers.db.connect import Database, as_database
from cluster_workers.engines.tree import cut_tree
from cluster_workers.errors import ConfigError
from cluster_workers.run.params import requested_params


@dataclass(frozen=True)
class SweepRow:
    min_cluster_size: int
    cluster_selection_epsilon: float
    cluster_selection_method: str
    clusters: int
    outlier_share: float
    largest_share: float
    ari_vs_stored: float

    def as_dict(self) -> dict:
        return self.__dict__.copy()


def sweep_source(source: Source, epsilons: list[float], sizes: list[int], method: str | None = None) -> list[SweepRow]:
    """Every (min_cluster_size, epsilon) on the stored tree; ARI against the stored labels (outliers one group)."""
    stored = old_cluster_codes(source)[0]
    base = requested_params(source, {"cluster_selection_method": method})
    sizes = sizes or [int(source.parameters["min_cluster_size"])]
    epsilons = epsilons or [float(source.parameters["cluster_selection_epsilon"])]
    rows = []
    for size in sizes:
        for eps in epsilons:
            stopping.check("during the sweep")
            wanted = requested_params(source, {"min_cluster_size": size, "cluster_selection_epsilon": eps,
                                               "cluster_selection_method": base.cluster_selection_method})  # fmt: skip
            labels = cut_tree(source.tree.edges, wanted.engine_params(source.n)).labels
            values = wanted.sklearn_values(source.n)
            counts = np.bincount(labels[labels >= 0]) if np.any(labels >= 0) else np.zeros(1, dtype=np.int64)
            rows.append(SweepRow(values["min_cluster_size"], values["cluster_selection_epsilon"], values["cluster_selection_method"],
                                 int(labels.max()) + 1, float(np.mean(labels < 0)), float(counts.max() / labels.size),
                                 float(adjusted_rand_score(stored, labels))))  # fmt: skip
    return rows


def sweep(db: str | Database, result_id: str, epsilons: list[float], sizes: list[int], method: str | None = None) -> tuple[ResultSummary, list[SweepRow]]:  # fmt: skip
    """The sweep's table for one result; writes nothing."""
    source = as_database(db).read(lambda conn: load_source(conn, result_id))
    return source.summary, sweep_source(source, epsilons, sizes, method)


def parse_values(text: str | None, kind: type) -> list:
    """``"5,10,20"``, a range ``"5:2000:log20"`` (20 log-spaced values, rounded for integers, repeats dropped) or
    ``"0.1:0.5:0.1"`` (start, stop, step; stop included)."""
    if not text:
        return []
    try:
        if ":" not in text:
            return [kind(part) for part in text.split(",") if part.strip()]
        start, stop, how = text.split(":")
        lo, hi = float(start), float(stop)
        if how.startswith("log"):
            values = np.geomspace(lo, hi, int(how[3:]))
        else:
            values = np.arange(lo, hi + float(how) / 2, float(how))
    except ValueError:
        raise ConfigError(f"expected numbers: 5,10,20 or a range like 5:2000:log20 or 0.1:0.5:0.1, got {text!r}") from None
    if lo <= 0 and how.startswith("log") or len(values) == 0:
        raise ConfigError(f"a range needs positive bounds and at least one value, got {text!r}")
    out = [kind(round(v)) if kind is int else kind(round(v, 12)) for v in values]
    return list(dict.fromkeys(out))


@dataclass(frozen=True)
class Plateau:
    """Where the number of clusters and the outlier share change least along ``min_cluster_size``."""

    epsilon: float
    min_cluster_size_from: int
    min_cluster_size_to: int
    clusters: tuple[int, int]
    outlier_share: tuple[float, float]
    change: float  # the window's summed |change of log(clusters + 1)| + |change of outlier share|

    def as_dict(self) -> dict:
        return self.__dict__.copy()


def flattest(rows: list[SweepRow], window: int | None = None) -> list[Plateau]:
    """Per epsilon, the window of consecutive ``min_cluster_size`` settings (a quarter of them, at least 3) over
    which clusters and outlier share change least; none for fewer than 3 settings. Settings with fewer than 2
    clusters are left out (one cluster of everything is trivially flat)."""
    out = []
    for eps in sorted({r.cluster_selection_epsilon for r in rows}):
        line = sorted(
            (r for r in rows if r.cluster_selection_epsilon == eps and r.clusters >= 2), key=lambda r: r.min_cluster_size
        )
        w = window or max(3, -(-len(line) // 4))
        if len(line) < max(3, w):
            continue
        steps = np.abs(np.diff(np.log([r.clusters + 1 for r in line]))) + np.abs(np.diff([r.outlier_share for r in line]))
        sums = np.convolve(steps, np.ones(w - 1), mode="valid")
        i = int(np.argmin(sums))
        part = line[i : i + w]
        out.append(Plateau(eps, part[0].min_cluster_size, part[-1].min_cluster_size,
                           (min(r.clusters for r in part), max(r.clusters for r in part)),
                           (min(r.outlier_share for r in part), max(r.outlier_share for r in part)), float(sums[i])))  # fmt: skip
    return out

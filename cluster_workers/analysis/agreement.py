"""Agreement between two clusterings of the same invocations (two embedding models).

Scores are scikit-learn's ``adjusted_rand_score`` and ``adjusted_mutual_info_score``
on the invocations both results clustered; outliers (``-1``) count as one group of
their own, as when a user hands the labels to scikit-learn. For the largest
clusters of the first model the best-matching cluster of the second is the one
with the highest Jaccard index over those shared invocations.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Hashable, Sequence

import numpy as np
from sklearn.metrics import adjusted_mutual_info_score, adjusted_rand_score

OUTLIER = -1
TOP_MATCHES = 10


class NoSharedInvocations(ValueError):
    """The two results have no invocation in common: nothing to compare."""


@dataclass(frozen=True)
class ClusterMatch:
    cluster_a: int
    size_a: int  # members among the shared invocations
    cluster_b: int | None  # None: no cluster of b overlaps
    size_b: int
    overlap: int
    jaccard: float


@dataclass(frozen=True)
class Agreement:
    n: int
    ari: float
    ami: float
    matches: list[ClusterMatch] = field(default_factory=list)

    def as_dict(self) -> dict:
        return asdict(self)


def align(
    keys_a: Sequence[Hashable], labels_a: np.ndarray, keys_b: Sequence[Hashable], labels_b: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """The two label arrays restricted to the keys both have, in the same order (first occurrence wins)."""
    index_b: dict[Hashable, int] = {}
    for i, key in enumerate(keys_b):
        index_b.setdefault(key, i)
    seen: set[Hashable] = set()
    rows_a, rows_b = [], []
    for i, key in enumerate(keys_a):
        j = index_b.get(key)
        if j is not None and key not in seen:
            seen.add(key)
            rows_a.append(i)
            rows_b.append(j)
    return np.asarray(labels_a)[rows_a], np.asarray(labels_b)[rows_b]


def best_matches(a: np.ndarray, b: np.ndarray, top: int = TOP_MATCHES) -> list[ClusterMatch]:
    """For the ``top`` largest clusters of ``a`` (by shared members), the cluster of ``b`` with the highest Jaccard."""
    clusters_a, sizes_a = np.unique(a[a != OUTLIER], return_counts=True)
    order = np.lexsort((clusters_a, -sizes_a))[:top]
    clusters_b, sizes_b = np.unique(b, return_counts=True)
    size_b = dict(zip(clusters_b.tolist(), sizes_b.tolist()))
    matches = []
    for ca, na in zip(clusters_a[order].tolist(), sizes_a[order].tolist()):
        inside = b[(a == ca) & (b != OUTLIER)]
        if inside.size == 0:
            matches.append(ClusterMatch(ca, na, None, 0, 0, 0.0))
            continue
        cands, overlaps = np.unique(inside, return_counts=True)
        jacc = overlaps / (na + np.array([size_b[c] for c in cands.tolist()]) - overlaps)
        k = int(np.lexsort((cands, -jacc))[0])
        cb = int(cands[k])
        matches.append(ClusterMatch(ca, na, cb, size_b[cb], int(overlaps[k]), float(jacc[k])))
    return matches


def agreement(a: np.ndarray, b: np.ndarray, top: int = TOP_MATCHES) -> Agreement:
    """ARI, AMI and best matches of two aligned label arrays (see :func:`align`)."""
    a, b = np.asarray(a), np.asarray(b)
    if a.size == 0:
        raise NoSharedInvocations("the two results share no invocation")
    return Agreement(
        n=int(a.size),
        ari=float(adjusted_rand_score(a, b)),
        ami=float(adjusted_mutual_info_score(a, b)),
        matches=best_matches(a, b, top),
    )

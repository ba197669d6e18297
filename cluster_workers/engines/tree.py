"""Single-linkage tree -> condensed tree -> selected clusters, labels and membership probabilities.

The single-linkage tree is built here (:func:`single_linkage`, the same
output as hdbscan's ``label``, which indexes numpy arrays from Python and took
4 s at 120,000 points). The rest is the ``hdbscan`` package's own code
(``_tree_to_labels``), so ``cluster_selection_epsilon``,
``allow_single_cluster`` and the selection method mean exactly what they mean
there. That function is private: ``pyproject.toml`` bounds the version to the
0.8 series, and :func:`tree_functions` checks its signature before use,
failing with a clear message instead of a wrong answer when a future release
changes it.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass
from importlib.metadata import version
from typing import Callable

import numpy as np
from numba import njit

from cluster_workers.engines import HDBSCANParams
from cluster_workers.errors import EngineUnavailable

SUPPORTED = "0.8.33 <= hdbscan < 0.9"
_NEEDED_KEYWORDS = ("min_cluster_size", "cluster_selection_method", "allow_single_cluster", "cluster_selection_epsilon")


def _supported_version(text: str) -> bool:
    parts = [int(p) for p in text.split(".")[:3] if p.isdigit()]
    return len(parts) == 3 and (0, 8, 33) <= tuple(parts) < (0, 9, 0)


def tree_functions() -> Callable:
    """hdbscan's ``_tree_to_labels``, after checking that it is the one this code was written for."""
    installed = version("hdbscan")
    try:
        from hdbscan.hdbscan_ import _tree_to_labels
    except ImportError as exc:
        raise EngineUnavailable(f"the fast engine needs hdbscan's tree code ({SUPPORTED}); hdbscan {installed}: {exc}") from None
    accepted = inspect.signature(_tree_to_labels).parameters
    missing = [kw for kw in _NEEDED_KEYWORDS if kw not in accepted]
    if not _supported_version(installed) or missing:
        raise EngineUnavailable(
            f"the fast engine was written for {SUPPORTED}, found hdbscan {installed}"
            + (f" (its tree code no longer takes {', '.join(missing)})" if missing else "")
            + "; install a supported version or use --engine reference"
        )
    return _tree_to_labels


@njit(cache=True)
def single_linkage(mst: np.ndarray) -> np.ndarray:
    """scipy-style linkage ``(a, b, distance, size)`` from MST edges sorted by weight (hdbscan's ``label``).

    Merged clusters get labels ``n, n + 1, ...`` in merge order; ``a``/``b`` are
    the current labels of the two sides (union-find with path compression).
    """
    n = mst.shape[0] + 1
    parent = np.full(2 * n - 1, -1, dtype=np.int64)
    size = np.zeros(2 * n - 1, dtype=np.int64)
    size[:n] = 1
    out = np.empty((n - 1, 4))
    for e in range(n - 1):
        roots = np.empty(2, dtype=np.int64)
        for side in range(2):
            node = np.int64(mst[e, side])
            root = node
            while parent[root] != -1:
                root = parent[root]
            while node != root:  # compress the path
                up = parent[node]
                parent[node] = root
                node = up
            roots[side] = root
        a, b = roots[0], roots[1]
        out[e, 0], out[e, 1], out[e, 2] = a, b, mst[e, 2]
        out[e, 3] = size[a] + size[b]
        size[n + e] = size[a] + size[b]
        parent[a] = n + e
        parent[b] = n + e
    return out


@dataclass(frozen=True)
class TreeCut:
    """What one set of selection parameters makes of a tree: per point its label, probability and GLOSH score."""

    labels: np.ndarray  # (n,) int32, -1 = outlier
    probabilities: np.ndarray  # (n,) float64: HDBSCAN membership probability, 0 for outliers
    outlier_scores: np.ndarray  # (n,) float64: GLOSH (the hdbscan package's ``outlier_scores_``)
    condensed: np.ndarray | None = None  # hdbscan's raw condensed tree (parent, child, lambda_val, child_size)


def cut_tree(mst: np.ndarray, params: HDBSCANParams) -> TreeCut:
    """Condensed tree, selection, labels, probabilities and GLOSH scores from MST edges ``(a, b, weight)``
    sorted by weight (ties in their stored order). ``min_samples`` is already in the weights: only
    ``min_cluster_size``, the method, epsilon and ``allow_single_cluster`` act here."""
    tree_to_labels = tree_functions()
    from hdbscan._hdbscan_tree import outlier_scores

    labels, probabilities, _stabilities, condensed, _linkage = tree_to_labels(
        None,
        single_linkage(np.ascontiguousarray(mst, dtype=np.float64)),
        min_cluster_size=params.min_cluster_size,
        cluster_selection_method=params.cluster_selection_method,
        allow_single_cluster=params.allow_single_cluster,
        cluster_selection_epsilon=params.cluster_selection_epsilon,
    )[:5]
    return TreeCut(
        labels.astype(np.int32, copy=False),
        np.asarray(probabilities, dtype=np.float64),
        np.asarray(outlier_scores(condensed), dtype=np.float64),
        condensed,
    )

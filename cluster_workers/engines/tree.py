"""Single-linkage tree -> condensed tree -> selected clusters, labels and membership probabilities.

This step is the ``hdbscan`` package's own code (``label`` and
``_tree_to_labels``), so ``cluster_selection_epsilon``, ``allow_single_cluster``
and the selection method mean exactly what they mean there. Those functions are
private: ``pyproject.toml`` bounds the version to the 0.8 series, and
:func:`tree_functions` checks their signatures before use, failing with a clear
message instead of a wrong answer when a future release changes them.
"""

from __future__ import annotations

import inspect
from importlib.metadata import version
from typing import Callable

import numpy as np

from cluster_workers.engines import HDBSCANParams
from cluster_workers.errors import EngineUnavailable

SUPPORTED = "0.8.33 <= hdbscan < 0.9"
_NEEDED_KEYWORDS = ("min_cluster_size", "cluster_selection_method", "allow_single_cluster", "cluster_selection_epsilon")


def _supported_version(text: str) -> bool:
    parts = [int(p) for p in text.split(".")[:3] if p.isdigit()]
    return len(parts) == 3 and (0, 8, 33) <= tuple(parts) < (0, 9, 0)


def tree_functions() -> tuple[Callable, Callable]:
    """``(label, tree_to_labels)`` from hdbscan, after checking that they are the ones this code was written for."""
    installed = version("hdbscan")
    try:
        from hdbscan._hdbscan_linkage import label
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
    return label, _tree_to_labels


def labels_from_mst(mst: np.ndarray, params: HDBSCANParams) -> tuple[np.ndarray, np.ndarray]:
    """``(labels, probabilities)`` from MST edges ``(a, b, weight)`` sorted by weight."""
    label, tree_to_labels = tree_functions()
    single_linkage = label(np.ascontiguousarray(mst, dtype=np.float64))
    labels, probabilities = tree_to_labels(
        None,
        single_linkage,
        min_cluster_size=params.min_cluster_size,
        cluster_selection_method=params.cluster_selection_method,
        allow_single_cluster=params.allow_single_cluster,
        cluster_selection_epsilon=params.cluster_selection_epsilon,
    )[:2]
    return labels.astype(np.int32, copy=False), np.asarray(probabilities, dtype=np.float64)

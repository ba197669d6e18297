"""The single-linkage tree (built here) and the guard around hdbscan's private tree code."""

from __future__ import annotations

import inspect

import numpy as np
import pytest

from cluster_workers.engines import tree
from cluster_workers.errors import EngineUnavailable


def test_installed_hdbscan_is_supported():
    assert callable(tree.tree_functions())


@pytest.mark.parametrize("seed", range(8))
def test_single_linkage_is_hdbscans_label(seed):
    """Same array as hdbscan's ``label`` on random spanning trees, with many tied weights on even seeds."""
    from hdbscan._hdbscan_linkage import label

    rng = np.random.default_rng(seed)
    n = int(rng.integers(2, 3000))
    parents = np.array([rng.integers(0, i) for i in range(1, n)])  # a random tree on n points
    weights = rng.integers(0, 20, n - 1).astype(float) if seed % 2 == 0 else rng.random(n - 1)
    order = np.argsort(weights, kind="stable")
    mst = np.column_stack([np.arange(1, n), parents, weights])[order]
    mst[:, :2] = rng.permutation(n)[mst[:, :2].astype(int)]  # relabel the points
    assert np.array_equal(tree.single_linkage(mst), label(mst.copy()))


def test_an_unsupported_version_fails_clearly(monkeypatch):
    monkeypatch.setattr(tree, "version", lambda name: "0.9.1")
    with pytest.raises(EngineUnavailable, match="found hdbscan 0.9.1.*--engine reference"):
        tree.tree_functions()


def test_a_changed_signature_fails_clearly(monkeypatch):
    import hdbscan.hdbscan_

    def changed(X, single_linkage_tree, min_cluster_size=10):  # the keywords we pass are gone
        raise AssertionError("must not be called")

    monkeypatch.setattr(hdbscan.hdbscan_, "_tree_to_labels", changed)
    assert "cluster_selection_epsilon" not in inspect.signature(changed).parameters
    with pytest.raises(EngineUnavailable, match="no longer takes"):
        tree.tree_functions()

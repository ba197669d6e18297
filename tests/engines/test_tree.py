"""The guard around hdbscan's private tree code."""

from __future__ import annotations

import inspect

import pytest

from cluster_workers.engines import tree
from cluster_workers.errors import EngineUnavailable


def test_installed_hdbscan_is_supported():
    label, tree_to_labels = tree.tree_functions()
    assert callable(label) and callable(tree_to_labels)


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

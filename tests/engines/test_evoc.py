"""The evoc engine gives exactly what ``evoc.EVoC(...).fit`` gives with the same parameters and thread setting."""

from __future__ import annotations

import numba
import numpy as np
import pytest

from cluster_workers.engines.evoc import EVoCParams, auto_base_size, cluster_layers, fixed_threads, layer_parents
from cluster_workers.errors import ConfigError
from tests.engines.datasets import attractor_data, near_copy_data
from tests.helpers import REALTEXT

evoc = pytest.importorskip("evoc", reason="the evoc engine's tests need the evoc package (the test extra installs it)")


def real_text() -> np.ndarray:
    x = np.load(REALTEXT)["vectors"].astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


KINDS = {
    "real-text": real_text,
    "attractors": lambda: attractor_data(2500, 96),
    "near-copies": lambda: near_copy_data(2500, 128),
}


@pytest.mark.parametrize("kind", KINDS)
def test_layers_equal_the_package_called_directly(kind):
    data = KINDS[kind]()
    params = EVoCParams()
    ours = cluster_layers(data, params)
    numba.set_num_threads(1)  # the package as the users call it, at the thread count the engine fixes
    try:
        theirs = evoc.EVoC(noise_level=0.5, base_min_cluster_size=auto_base_size(len(data)), min_samples=5, random_state=42).fit(
            data
        )
    finally:
        numba.set_num_threads(numba.config.NUMBA_NUM_THREADS)
    assert len(ours) == len(theirs.cluster_layers_) >= 1
    for k in range(len(ours)):
        np.testing.assert_array_equal(ours.labels[k], theirs.cluster_layers_[k])
        np.testing.assert_array_equal(ours.strengths[k], np.asarray(theirs.membership_strength_layers_[k], dtype=np.float64))
        assert ours.persistence[k] == pytest.approx(float(theirs.persistence_scores_[k]), abs=0)
    assert ours.info["best_layer"] == int(np.argmax(theirs.persistence_scores_))
    # the layer tree is the package's: every (child -> parent) edge below its root
    edges = {(cl, cc): (pl, pc) for (pl, pc), kids in theirs.cluster_tree_.items() for cl, cc in kids if pl < len(ours)}
    for k, parents in enumerate(ours.parents):
        for c, (pl, pc) in enumerate(parents):
            assert edges.get((k, c), (-1, -1)) == (pl, pc)
    if len(ours) > 1:
        assert (ours.parents[0][:, 0] >= 1).any()  # the finest layer's clusters sit under coarser ones


def test_the_same_thread_count_repeats_exactly_whatever_the_callers_threads():
    data = real_text()[:1500]
    numba.set_num_threads(numba.config.NUMBA_NUM_THREADS)  # the worker's share is all cores here
    first = cluster_layers(data, EVoCParams())
    numba.set_num_threads(1)
    second = cluster_layers(data, EVoCParams())
    assert numba.get_num_threads() == 1  # restored after the fit
    numba.set_num_threads(numba.config.NUMBA_NUM_THREADS)
    assert len(first) == len(second)
    for a, b in zip(first.labels, second.labels):
        np.testing.assert_array_equal(a, b)


def test_parameters_parse_check_and_resolve():
    p = EVoCParams.from_options({"noise_level": "0.3", "threads": "1", "base_n_clusters": "none", "symmetrize_graph": "false"})
    assert (p.noise_level, p.base_n_clusters, p.symmetrize_graph) == (0.3, None, False)
    assert p.options() == {"noise_level": 0.3, "symmetrize_graph": False}
    assert EVoCParams().library_kwargs(30_000)["base_min_cluster_size"] == 30  # max(5, int(0.001 n))
    assert EVoCParams().library_kwargs(1_000)["base_min_cluster_size"] == 5
    assert "threads" not in EVoCParams().library_kwargs(10)
    with pytest.raises(ConfigError, match="unknown evoc parameter 'noise'"):
        EVoCParams.from_options({"noise": "1"})
    with pytest.raises(ConfigError, match="invalid value"):
        EVoCParams.from_options({"min_samples": "many"})
    with pytest.raises(ConfigError, match="threads"):
        EVoCParams(threads=0)
    with pytest.raises(ConfigError, match="NUMBA_NUM_THREADS"):
        with fixed_threads(numba.config.NUMBA_NUM_THREADS + 1):
            pass


def test_layer_parents_reads_the_packages_tree():
    labels = [np.array([0, 0, 1, 2, -1]), np.array([0, 0, 0, 1, -1])]
    tree = {(1, 0): [(0, 0), (0, 1)], (2, 0): [(1, 0), (1, 1), (0, 2)]}  # (2, 0): the package's root
    parents = layer_parents(tree, labels)
    assert parents[0].tolist() == [[1, 0], [1, 0], [-1, -1]]
    assert parents[1].tolist() == [[-1, -1], [-1, -1]]

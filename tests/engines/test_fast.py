"""The fast engine against the reference (the hdbscan package) on the same arrays."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import adjusted_rand_score

from cluster_workers.engines import HDBSCANParams, fast, l2_normalise, reference, resolve_params


def attractor_data(n: int = 2500, dim: int = 96, clusters: int = 12, seed: int = 0) -> np.ndarray:
    """Unit vectors around attractors of very different sizes and tightness, plus noise and duplicates."""
    rng = np.random.default_rng(seed)
    centres = l2_normalise(rng.standard_normal((clusters, dim)))
    weights = 1.0 / np.arange(1, clusters + 1)
    which = rng.choice(clusters, size=int(n * 0.9), p=weights / weights.sum())
    spread = rng.uniform(0.15, 0.35, clusters)[which, None]
    points = centres[which] + spread * rng.standard_normal((which.size, dim)) / np.sqrt(dim) * 3
    noise = rng.standard_normal((n - which.size, dim))
    data = np.vstack([points, noise])
    data[-20:] = data[:20]  # exact duplicates
    return l2_normalise(data.astype(np.float32))


@pytest.mark.parametrize("exact_limit", [10**9, 100], ids=["exact-knn", "cell-knn"])
def test_agrees_with_reference(exact_limit, monkeypatch):
    monkeypatch.setattr(fast, "EXACT_LIMIT", exact_limit)
    data = attractor_data()
    params = resolve_params(len(data), 15, 10)
    ref = reference.cluster(data, params)
    ours = fast.cluster(data, params)
    assert ref.max() >= 5  # the data has real structure
    assert adjusted_rand_score(ref, ours) >= 0.95
    assert abs(np.mean(ref < 0) - np.mean(ours < 0)) < 0.05


def test_selection_options_follow_the_reference():
    data = attractor_data(seed=3)
    for params in (
        HDBSCANParams(20, 10, cluster_selection_method="leaf"),
        HDBSCANParams(20, 10, cluster_selection_epsilon=0.5),
    ):
        assert adjusted_rand_score(reference.cluster(data, params), fast.cluster(data, params)) >= 0.95


def test_cell_knn_recall_and_exact_core_distances():
    data = attractor_data(n=3000, seed=5)
    exact_idx, exact_dist = fast.knn(data, 20, exact_limit=10**9)
    approx_idx, approx_dist = fast.knn(data, 20, exact_limit=0, cell_size=100, probes=8)
    recall = np.mean([len(set(a) & set(b)) / 20 for a, b in zip(exact_idx, approx_idx)])
    assert recall > 0.9
    assert np.all(approx_dist[:, -1] >= exact_dist[:, -1] - 1e-5)  # approximate search can only overestimate
    assert np.all(np.diff(exact_dist, axis=1) >= -1e-6)  # sorted
    brute = np.sort(np.sqrt(np.maximum(0, 2 - 2 * data[:50] @ data.T)), axis=1)[:, :20]
    assert np.allclose(exact_dist[:50], brute, atol=1e-3)


def test_two_points():
    data = l2_normalise(np.array([[1, 0, 0], [0, 1, 0]], dtype=np.float32))
    params = resolve_params(2)
    assert fast.cluster(data, params).tolist() == reference.cluster(data, params).tolist()


def test_identical_vectors_form_one_cluster_with_allow_single_cluster():
    data = np.tile(l2_normalise(np.ones((1, 8), dtype=np.float32)), (50, 1))
    params = HDBSCANParams(5, 5, allow_single_cluster=True)
    ours = fast.cluster(data, params)
    ref = reference.cluster(data, params)
    assert adjusted_rand_score(ref, ours) == 1.0
    assert np.mean(ours >= 0) == np.mean(ref >= 0)


def test_one_dense_cluster():
    rng = np.random.default_rng(1)
    data = l2_normalise((np.ones(32) + 0.05 * rng.standard_normal((400, 32))).astype(np.float32))
    params = HDBSCANParams(10, 10, allow_single_cluster=True)
    ours, ref = fast.cluster(data, params), reference.cluster(data, params)
    assert ours.max() == ref.max() == 0
    assert adjusted_rand_score(ref, ours) >= 0.95


def test_uniform_noise_behaves_like_the_reference():
    rng = np.random.default_rng(2)
    data = l2_normalise(rng.standard_normal((600, 64)).astype(np.float32))
    params = resolve_params(600, 30, 30)
    ours, ref = fast.cluster(data, params), reference.cluster(data, params)
    assert abs(np.mean(ours < 0) - np.mean(ref < 0)) < 0.1
    assert abs(int(ours.max()) - int(ref.max())) <= 1


def test_too_few_points_is_a_clear_error():
    with pytest.raises(ValueError, match="at least 2"):
        fast.cluster(np.ones((1, 4), dtype=np.float32), HDBSCANParams(2, 1))

"""Medoids: the users' rule (scikit-learn's store_centers='medoid'), and the mean rule."""

import numpy as np
import pytest
from sklearn.cluster import HDBSCAN

from cluster_workers.engines import l2_normalise
from cluster_workers.engines import medoids as medoids_mod
from cluster_workers.engines.medoids import medoid_indices


def blobs(n: int = 900, dim: int = 24, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((6, dim))
    data = centres[rng.integers(0, 6, n)] + 0.6 * rng.standard_normal((n, dim))
    return l2_normalise(data.astype(np.float32))


def test_weighted_medoid_is_scikit_learns():
    data = blobs()
    model = HDBSCAN(min_cluster_size=15, min_samples=5, store_centers="medoid", copy=True).fit(data.astype(np.float64))
    ours, info = medoid_indices(data, model.labels_, model.probabilities_, "weighted")
    assert info["rule"] == "weighted" and info["approximate_clusters"] == 0
    assert ours.size == model.medoids_.shape[0] >= 3
    assert np.allclose(data[ours].astype(np.float64), model.medoids_, atol=1e-7)


@pytest.mark.parametrize("tile", [2048, 64], ids=["one-tile", "many-tiles"])
@pytest.mark.parametrize("seed", range(6))
def test_screened_medoid_equals_the_full_float64_rule(seed, tile, monkeypatch):
    """The float32 screen only narrows the field: the medoid is the full float64 argmin, duplicates included."""
    monkeypatch.setattr(medoids_mod, "TILE", tile)
    rng = np.random.default_rng(seed)
    data = blobs(n=700, dim=[24, 96, 384][seed % 3], seed=seed)
    data[350:420] = data[:70]  # exact duplicates: tied sums, the first in row order wins
    labels = rng.integers(0, 3, 700).astype(np.int32)
    probabilities = rng.uniform(0.05, 1.0, 700) if seed % 2 else np.ones(700)
    ours = medoid_indices(data, labels, probabilities)[0]
    x = data.astype(np.float64)
    for c, m in enumerate(ours):
        members = np.flatnonzero(labels == c)
        xm = x[members]
        sq = (xm**2).sum(1)
        d = np.sqrt(np.maximum(sq[:, None] + sq[None, :] - 2 * xm @ xm.T, 0))
        np.fill_diagonal(d, 0)
        sums = d @ probabilities[members]
        assert m == members[np.argmin(sums)] or np.isclose(sums[members.tolist().index(m)], sums.min(), rtol=1e-13)


@pytest.mark.parametrize("tile", [2048, 300], ids=["one-tile", "many-tiles"])
def test_the_screen_bound_holds_and_narrows_the_field(tile, monkeypatch):
    monkeypatch.setattr(medoids_mod, "TILE", tile)  # 300: tiles on and above the diagonal, a short last one
    data = blobs(n=2000, dim=384, seed=9)
    members = np.arange(2000)
    weights = np.random.default_rng(1).uniform(0.1, 1, 2000)
    low, high = medoids_mod._screened_member_sums(data, members, weights)
    exact = medoids_mod.weighted_distance_sums(data, members, members, weights)
    assert np.all(low <= exact) and np.all(exact <= high)
    assert np.count_nonzero(low <= high.min()) < 100  # the exact pass scores only a few contenders


def test_weighted_medoid_uses_the_probabilities():
    """Same members, other weights: the medoid moves towards the heavy members."""
    data = blobs(n=200, seed=1)
    labels = np.zeros(200, dtype=np.int32)
    even = medoid_indices(data, labels, np.ones(200), "weighted")[0][0]
    far = np.argsort(data @ data[even])[:20]  # the members least like the medoid
    weights = np.full(200, 1e-3)
    weights[far] = 1.0
    assert medoid_indices(data, labels, weights, "weighted")[0][0] != even


def test_large_clusters_use_the_documented_approximation(monkeypatch):
    data = blobs(n=600, seed=2)
    labels = np.zeros(600, dtype=np.int32)
    probabilities = np.random.default_rng(0).uniform(0.2, 1, 600)
    exact = medoid_indices(data, labels, probabilities)[0]
    monkeypatch.setattr(medoids_mod, "EXACT_LIMIT", 100)
    monkeypatch.setattr(medoids_mod, "SAMPLE_COLUMNS", 300)
    approx, info = medoid_indices(data, labels, probabilities)
    assert info["approximate_clusters"] == 1
    assert approx[0] == exact[0]


def test_mean_rule_is_the_member_with_least_summed_squared_distance():
    rng = np.random.default_rng(0)
    data = l2_normalise(rng.standard_normal((300, 16)).astype(np.float32))
    labels = rng.integers(-1, 5, 300).astype(np.int32)
    medoids, _ = medoid_indices(data, labels, rule="mean")
    assert medoids.shape == (5,)
    for c, m in enumerate(medoids):
        members = np.flatnonzero(labels == c)
        assert labels[m] == c
        cost = ((data[members][:, None, :] - data[members][None, :, :]) ** 2).sum(-1).sum(1)
        assert m == members[np.argmin(cost)] or np.isclose(cost.min(), cost[members.tolist().index(m)], rtol=1e-5)


def test_no_clusters_gives_no_medoids():
    data = np.eye(4, dtype=np.float32)
    assert medoid_indices(data, np.full(4, -1, dtype=np.int32), np.zeros(4))[0].size == 0


def test_weighted_rule_needs_probabilities():
    with pytest.raises(ValueError, match="probabilities"):
        medoid_indices(np.eye(3, dtype=np.float32), np.zeros(3, dtype=np.int32))

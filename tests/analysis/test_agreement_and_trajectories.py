"""The pure analyses on arrays: agreement against scikit-learn, trajectories on hand-made paths, the 2-D map."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.decomposition import PCA
from sklearn.metrics import adjusted_mutual_info_score, adjusted_rand_score

from cluster_workers.analysis.agreement import NoSharedInvocations, agreement, align
from cluster_workers.analysis.projection import pca_2d
from cluster_workers.analysis.trajectories import run_paths


@pytest.mark.parametrize("seed", range(5))
def test_agreement_equals_scikit_learn_on_random_labels(seed):
    rng = np.random.default_rng(seed)
    keys_a = [f"inv{i}" for i in rng.permutation(300)]
    keys_b = [f"inv{i}" for i in rng.permutation(400)[:250]]  # partly overlapping, different order
    la, lb = rng.integers(-1, 6, size=300), rng.integers(-1, 4, size=250)
    a, b = align(keys_a, la, keys_b, lb)
    pos_b = {k: i for i, k in enumerate(keys_b)}
    shared = [(la[i], lb[pos_b[k]]) for i, k in enumerate(keys_a) if k in pos_b]
    assert list(zip(a.tolist(), b.tolist())) == [(int(x), int(y)) for x, y in shared]
    got = agreement(a, b)
    ea, eb = zip(*shared)
    assert got.n == len(shared)
    assert got.ari == pytest.approx(adjusted_rand_score(ea, eb), abs=1e-12)
    assert got.ami == pytest.approx(adjusted_mutual_info_score(ea, eb), abs=1e-12)
    assert all(m.cluster_a != -1 and m.cluster_b != -1 for m in got.matches)


def test_identical_labels_agree_fully_and_nothing_shared_is_an_error():
    labels = np.array([1, 1, 2, 2, 3, -1])
    full = agreement(labels, labels[::-1][::-1].copy())
    assert (full.ari, full.ami) == (pytest.approx(1.0), pytest.approx(1.0))
    assert [(m.cluster_a, m.cluster_b, m.jaccard) for m in full.matches] == [(1, 1, 1.0), (2, 2, 1.0), (3, 3, 1.0)]
    with pytest.raises(NoSharedInvocations):
        agreement(*align(["x"], np.array([1]), ["y"], np.array([1])))


def test_run_paths_use_steps_not_positions():
    # one run sampled at steps 0, 10, 20, 30 (downsample 10), given out of order
    paths = run_paths(
        np.array(["r"] * 4, dtype=object),
        np.array(["p"] * 4, dtype=object),
        np.array([30, 0, 20, 10]),
        np.array([5, 1, 5, 2]),
        last_k=2,
    )
    (p,) = paths
    assert p.steps.tolist() == [0, 10, 20, 30] and p.clusters.tolist() == [1, 2, 5, 5]
    assert (p.end, p.entry_step, p.settled) == (5, 20, True)
    with pytest.raises(ValueError):
        run_paths(np.array(["r"], dtype=object), np.array(["p"], dtype=object), np.array([0]), np.array([1]), last_k=0)


def test_pca_map_matches_scikit_learn_up_to_sign():
    x = np.random.default_rng(3).normal(size=(200, 16))
    points, share = pca_2d(x)
    unit = x / np.linalg.norm(x, axis=1, keepdims=True)
    ref = PCA(n_components=2).fit(unit)
    expected = ref.transform(unit)
    for k in range(2):
        assert min(np.abs(points[:, k] - expected[:, k]).max(), np.abs(points[:, k] + expected[:, k]).max()) < 1e-9
    assert share == pytest.approx(ref.explained_variance_ratio_)

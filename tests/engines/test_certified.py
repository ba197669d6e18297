"""The fast engine on the users' kind of data: near-copies closer than float32 can tell, and exact copies.

Every core distance must equal a float64 direct-difference brute force, every
MST weight the brute-force MST's, and the labels hdbscan's.
"""

from __future__ import annotations

import numpy as np
import pytest
from scipy.sparse.csgraph import minimum_spanning_tree
from scipy.spatial.distance import cdist
from sklearn.metrics import adjusted_rand_score

from cluster_workers.engines import HDBSCANParams, fast, reference
from cluster_workers.engines.bounds import similarity_error
from cluster_workers.engines.duplicates import distinct_rows
from cluster_workers.engines.medoids import medoid_indices
from cluster_workers.engines.mst import MSTTuning, mutual_reachability_mst
from cluster_workers.engines.neighbours import ScreenTuning, nearest
from tests.engines.datasets import near_copy_data


def brute_core(data: np.ndarray, min_samples: int) -> tuple[np.ndarray, np.ndarray]:
    """Core distances (hdbscan's convention) and the full distance matrix, float64 direct differences."""
    full = cdist(data.astype(np.float64), data.astype(np.float64))
    return np.sort(full, axis=1)[:, min_samples], full


@pytest.fixture(scope="module")
def blobs() -> np.ndarray:
    return near_copy_data(n=2000, dim=384, blobs=10, seed=5)


def test_the_data_has_blobs_larger_than_any_kept_list(blobs):
    _, inverse, counts = distinct_rows(blobs)
    assert counts.max() >= 40  # exact copies of one vector
    full = cdist(blobs.astype(np.float64), blobs.astype(np.float64))
    near = ((full > 0) & (full < 1e-3)).sum(axis=1)
    assert near.max() > 100  # near-copies: more than min_samples + 1 + list extra + margin


@pytest.mark.parametrize("min_samples", [2, 25])
@pytest.mark.parametrize("heap_bytes", [1 << 30, 0], ids=["symmetric", "row-blocks"])
def test_core_distances_equal_brute_force(blobs, min_samples, heap_bytes):
    graph = nearest(
        blobs,
        min_samples,
        min_samples + 17,
        tuning=ScreenTuning(heap_bytes=heap_bytes, heap_data_ratio=1.0 if heap_bytes else 0.0, block_rows=256, block_cols=512),
    )
    want, full = brute_core(blobs, min_samples)
    np.testing.assert_allclose(graph.core, want, rtol=1e-12, atol=0)
    assert graph.stats["recomputed"] > 0 and graph.stats["certified"] == blobs.shape[0]
    listed = np.zeros_like(full, dtype=bool)
    np.put_along_axis(listed, graph.ids, True, axis=1)
    assert np.all(np.where(listed, np.inf, full).min(axis=1) >= graph.lower * (1 - 1e-12))  # nothing unlisted is nearer


def test_without_the_certificate_the_screen_is_wrong_on_near_copies(blobs):
    """What the certificate is for: switched off, the float32 screen's core distances are not hdbscan's."""
    graph = nearest(blobs, 25, 42, certify=False)
    want, _ = brute_core(blobs, 25)
    assert not np.allclose(graph.core, want, rtol=1e-12, atol=0)
    assert graph.stats["certified"] < blobs.shape[0]


def test_weighted_core_distances_equal_those_of_every_copy(blobs):
    first, inverse, counts = distinct_rows(blobs)
    graph = nearest(np.ascontiguousarray(blobs[first]), 25, 42, weights=counts)
    want, _ = brute_core(blobs, 25)
    np.testing.assert_allclose(graph.core[inverse], want, rtol=1e-12, atol=0)
    assert np.any(graph.core == 0)  # a vector with more than min_samples copies: core distance 0


@pytest.mark.parametrize("tuning", [MSTTuning(), MSTTuning(pair_rows=16, symmetric_share=0.0), MSTTuning(slots=2, search_rows=8, block_cols=64)],
                         ids=["ordered", "symmetric", "two-slots-narrow"])  # fmt: skip
def test_mst_weight_equals_brute_force_on_near_copies(blobs, tuning):
    x = np.ascontiguousarray(blobs[:1200])
    graph = nearest(x, 9, 26)
    tree, _ = mutual_reachability_mst(x, graph, similarity_error(x), tuning=tuning)
    core, full = brute_core(x, 9)
    mrd = np.maximum(full, np.maximum(core[:, None], core[None, :]))
    # scipy reads 0 as "no edge" and copies are at weight 0: every weight shifted by 1 (the same tree), then back
    shifted = mrd + 1.0
    np.fill_diagonal(shifted, 0)
    want = minimum_spanning_tree(shifted).data.sum() - (x.shape[0] - 1)
    assert tree[:, 2].sum() == pytest.approx(want, rel=1e-12)
    a, b = tree[:, 0].astype(int), tree[:, 1].astype(int)
    np.testing.assert_allclose(tree[:, 2], mrd[a, b], rtol=1e-12)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_labels_follow_hdbscan_with_25_25(seed):
    """min_cluster_size 25, min_samples 26 in the users' convention (25 in hdbscan's)."""
    data = near_copy_data(seed=seed, blobs=14)
    params = HDBSCANParams(25, 25)
    ref, ours = reference.cluster(data, params), fast.cluster(data.copy(), params)
    assert adjusted_rand_score(ref.labels, ours.labels) >= 0.999
    assert ours.info["fidelity"]["exactly_equal"] == 1.0


def test_labels_follow_hdbscan_with_the_users_defaults():
    """The users' defaults (n = 3,500: mcs 3, min_samples 3 -> 2, epsilon 0.5, one cluster allowed).

    With two neighbours, many points sit at exactly their core distance from
    several others, and which of those equal edges a tree takes is arbitrary:
    hdbscan's own labels move when the rows are shuffled. Ours agree with
    hdbscan's as closely as hdbscan's agree with themselves.
    """
    data = near_copy_data(seed=2, blobs=14)
    params = HDBSCANParams(3, 2, cluster_selection_epsilon=0.5, allow_single_cluster=True)
    ref = reference.cluster(data, params)
    perm = np.random.default_rng(1).permutation(data.shape[0])
    shuffled = np.empty_like(ref.labels)
    shuffled[perm] = reference.cluster(data[perm], params).labels
    ours = fast.cluster(data.copy(), params)
    itself = adjusted_rand_score(ref.labels, shuffled)
    assert adjusted_rand_score(ref.labels, ours.labels) >= min(0.985, itself - 0.005)
    assert ours.info["fidelity"]["exactly_equal"] == 1.0


def half_copies(n: int = 1600, seed: int = 3) -> np.ndarray:
    data = near_copy_data(n=n // 2, dim=128, blobs=8, exact_share=0.0, seed=seed)
    rng = np.random.default_rng(seed)
    return np.ascontiguousarray(np.vstack([data, data[rng.integers(0, data.shape[0], n - data.shape[0])]])[rng.permutation(n)])


def canonical(labels: np.ndarray) -> np.ndarray:
    """Clusters numbered in order of first appearance (the numbering itself carries no meaning)."""
    out = np.full_like(labels, -1)
    for k, c in enumerate(dict.fromkeys(int(v) for v in labels if v >= 0)):
        out[labels == c] = k
    return out


@pytest.mark.parametrize("params", [HDBSCANParams(10, 5), HDBSCANParams(10, 5, 0.2, True)], ids=["10-5", "10-5-epsilon"])
def test_collapsing_copies_changes_nothing(params):
    data = half_copies()
    kept = data.copy()
    on = fast.cluster(data, params)
    off = fast.cluster(data, params, options=fast.FastOptions(collapse_copies=False))
    assert on.info["copies"] >= 600 and off.info["copies"] == 0
    assert np.array_equal(canonical(on.labels), canonical(off.labels))
    np.testing.assert_allclose(on.probabilities, off.probabilities, rtol=0, atol=1e-12)
    medoids_on = set(medoid_indices(data, on.labels, on.probabilities)[0].tolist())
    assert medoids_on == set(medoid_indices(data, off.labels, off.probabilities)[0].tolist())
    assert np.array_equal(data, kept)  # reordered in place while clustering, restored after


@pytest.mark.parametrize(
    "params",
    [HDBSCANParams(3, 2, 0.5, True), HDBSCANParams(20, 30, cluster_selection_method="leaf"), HDBSCANParams(15, 15)],
    ids=["users-defaults", "leaf-20-30", "15-15"],
)
def test_collapsing_copies_is_as_close_to_hdbscan_as_not_collapsing(params):
    """Where a vector with fewer copies than min_samples + 1 ties with other points at its core distance,
    which equal edge joins first is arbitrary (hdbscan's own choice follows its row order): the two
    answers may differ by a few points there, and each is as close to hdbscan's as the other."""
    data = half_copies()
    on = fast.cluster(data, params)
    off = fast.cluster(data, params, options=fast.FastOptions(collapse_copies=False))
    ref = reference.cluster(data, params).labels
    assert adjusted_rand_score(on.labels, off.labels) >= 0.99
    assert adjusted_rand_score(ref, on.labels) >= adjusted_rand_score(ref, off.labels) - 0.002


def test_distinct_rows():
    rng = np.random.default_rng(0)
    base = rng.standard_normal((50, 16)).astype(np.float32)
    rows = rng.integers(0, 50, 400)
    data = base[rows]
    first, inverse, counts = distinct_rows(data)
    assert np.array_equal(data[first][inverse], data)
    assert counts.sum() == 400 and first.size == np.unique(rows).size
    for i, f in enumerate(first):  # the first copy represents each vector
        assert f == np.flatnonzero(inverse == i).min()


def test_permute_rows_in_place_and_back():
    rng = np.random.default_rng(1)
    data = rng.standard_normal((300, 7)).astype(np.float32)
    before = data.copy()
    perm = rng.permutation(300)
    fast.permute_rows(data, perm)
    assert np.array_equal(data, before[perm])
    fast.restore_rows(data, perm)
    assert np.array_equal(data, before)

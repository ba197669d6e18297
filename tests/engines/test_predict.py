"""``assign``'s rule against the ``hdbscan`` package's ``approximate_predict``, and core distances against brute force."""

from __future__ import annotations

import hdbscan
import numpy as np
import pytest
from hdbscan.prediction import approximate_predict as package_predict
from sklearn.metrics import adjusted_rand_score

from cluster_workers.engines import HDBSCANParams, fast, l2_normalise, reference
from cluster_workers.engines.cores import core_distances
from cluster_workers.engines.neighbours import brute_force_core_distances
from cluster_workers.engines.predict import approximate_predict, prediction_tree
from cluster_workers.engines.query import nearest_in, sample_index
from cluster_workers.engines.tree import cut_tree
from tests.engines.datasets import attractor_data, near_copy_data
from tests.helpers import REALTEXT


def real_text() -> np.ndarray:
    return l2_normalise(np.load(REALTEXT)["vectors"].astype(np.float32))


KINDS = {"attractors": lambda: attractor_data(3000), "real-text": real_text, "near-copies": lambda: near_copy_data(4000)}


def split(data: np.ndarray, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    order = np.random.default_rng(seed).permutation(data.shape[0])
    cut = int(0.7 * data.shape[0])
    return np.ascontiguousarray(data[order[:cut]]), np.ascontiguousarray(data[order[cut:]])


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("mcs, ms, eps", [(10, 5, 0.0), (25, 10, 0.5)], ids=["mcs10-ms5", "mcs25-ms10-eps0.5"])
def test_assign_equals_the_packages_approximate_predict(kind, mcs, ms, eps):
    """Fitted by the package with prediction_data=True on the same sample: the same labels and probabilities."""
    sample, new = split(KINDS[kind]())
    model = hdbscan.HDBSCAN(min_cluster_size=mcs, min_samples=ms, cluster_selection_epsilon=eps, prediction_data=True)
    model.fit(sample.astype(np.float64))
    want_labels, want_probabilities = package_predict(model, new.astype(np.float64))
    cores = fast.cluster(sample.copy(), HDBSCANParams(mcs, ms, cluster_selection_epsilon=eps)).cores
    np.testing.assert_allclose(cores.prediction, model.prediction_data_.core_distances, rtol=0, atol=1e-12)
    got = approximate_predict(new, sample, cores.prediction, prediction_tree(model.condensed_tree_._raw_tree, model.labels_), ms)
    assert got.ties == 0  # no pick decided by the order of equal distances (exact copies sit together in the tree)
    np.testing.assert_array_equal(got.labels, want_labels)
    np.testing.assert_allclose(got.probabilities, want_probabilities, rtol=0, atol=1e-12)
    assert 0 < np.mean(want_labels >= 0) and (kind != "near-copies" or got.recomputed > 0)  # the screen's fallback ran


@pytest.mark.parametrize("kind", KINDS)
def test_a_sample_assigned_to_itself_gets_its_labels(kind):
    sample = KINDS[kind]()
    params = HDBSCANParams(15, 7)
    ours = fast.cluster(sample.copy(), params)
    cut = cut_tree(ours.tree, params)
    got = approximate_predict(sample, sample, ours.cores.prediction, prediction_tree(cut.condensed, cut.labels), 7)
    np.testing.assert_array_equal(got.labels, ours.labels)


@pytest.mark.parametrize("kind", ["real-text", "near-copies"])
def test_our_own_fit_predicts_what_the_package_predicts(kind):
    """The whole path (our tree, our cores) against the package's (its tree): the same partition of the new points."""
    sample, new = split(KINDS[kind](), seed=1)
    model = hdbscan.HDBSCAN(min_cluster_size=15, min_samples=7, prediction_data=True).fit(sample.astype(np.float64))
    want = package_predict(model, new.astype(np.float64))[0]
    ours = fast.cluster(sample.copy(), HDBSCANParams(15, 7))
    cut = cut_tree(ours.tree, HDBSCANParams(15, 7))
    got = approximate_predict(new, sample, ours.cores.prediction, prediction_tree(cut.condensed, cut.labels), 7).labels
    # equal mutual-reachability merges may move a few points of the fit (tests/engines/test_fast.py), so the same floor
    assert adjusted_rand_score(want, got) >= 0.99 and adjusted_rand_score(model.labels_, ours.labels) >= 0.99


@pytest.mark.parametrize("kind", KINDS)
def test_core_distances_equal_a_float64_brute_force(kind):
    data = KINDS[kind]()
    rows = np.sort(np.random.default_rng(2).choice(data.shape[0], 400, replace=False))  # a sample of the rows
    want, want_prediction = brute_force_core_distances(data, rows, 6), brute_force_core_distances(data, rows, 5)
    engines = [fast.cluster(data.copy(), HDBSCANParams(12, 6)).cores, core_distances(data, 6)]
    if kind == "near-copies":  # the reference engine's KD-tree cores, on the kind with the most ties
        engines.append(reference.cluster(data.copy(), HDBSCANParams(12, 6)).cores)
    for cores in engines:
        np.testing.assert_allclose(cores.core[rows], want, rtol=0, atol=1e-12)
        np.testing.assert_allclose(cores.prediction[rows], want_prediction, rtol=0, atol=1e-12)


def test_nearest_in_is_exact_when_the_screen_cannot_tell():
    """Near-copies closer than float32 resolves, and a tiny heap: every list remeasured, still the exact order."""
    from cluster_workers.engines.kernels import cross_distances
    from cluster_workers.engines.neighbours import ScreenTuning

    sample, new = split(near_copy_data(1500, dim=64))
    ids, dist, stats = nearest_in(new, sample_index(sample), 12, tuning=ScreenTuning(margin=0, block_rows=128, block_cols=256))
    recomputed = stats["recomputed"]
    full = cross_distances(new, sample, np.tile(np.arange(sample.shape[0]), (new.shape[0], 1)))
    order = np.lexsort((np.tile(np.arange(sample.shape[0]), (new.shape[0], 1)), full), axis=1)[:, :12]
    np.testing.assert_array_equal(dist, np.take_along_axis(full, order, axis=1))
    assert recomputed > 0


@pytest.mark.parametrize("kind", ["attractors", "near-copies"])
def test_nearest_in_skips_groups_and_stays_exact(kind):
    """Clustered data: most of the sample ruled out by the group bounds, the lists still those of a full scan."""
    from cluster_workers.engines.kernels import cross_distances

    sample, new = split(attractor_data(12_000, dim=64) if kind == "attractors" else near_copy_data(12_000, dim=64))
    ids, dist, stats = nearest_in(new, sample_index(sample), 10)
    full = cross_distances(new, sample, np.tile(np.arange(sample.shape[0]), (new.shape[0], 1)))
    order = np.lexsort((np.tile(np.arange(sample.shape[0]), (new.shape[0], 1)), full), axis=1)[:, :10]
    np.testing.assert_array_equal(dist, np.take_along_axis(full, order, axis=1))
    np.testing.assert_array_equal(ids, order)
    # the tight blobs of near-copies are skipped by most queries; diffuse attractors may need every group
    assert stats["read_share"] < (0.9 if kind == "near-copies" else 1.0 + 1e-12)

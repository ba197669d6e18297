"""The fast engine against the reference (the hdbscan package) on the same arrays, each path forced."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import adjusted_rand_score

from cluster_workers.engines import HDBSCANParams, fast, l2_normalise, neighbours, reference
from cluster_workers.engines.bounds import similarity_error
from cluster_workers.engines.mst import MSTTuning, mutual_reachability_mst
from cluster_workers.engines.neighbours import ScreenTuning
from cluster_workers.engines.order import cell_order
from cluster_workers.errors import BadVectorError
from tests.engines.datasets import attractor_data, diffuse_data


# Equal mutual-reachability weights (ubiquitous: many edges weigh exactly a core distance) are merged in
# an order that neither implementation defines; it moves a few points (ARI 0.998 on the diffuse data
# with identical MST weights). Distinct-weight data agrees exactly.
@pytest.mark.parametrize("exact_mst", [False, True], ids=["knn-graph-mst", "exact-mst"])
@pytest.mark.parametrize("make, floor", [(attractor_data, 0.999), (diffuse_data, 0.995)], ids=["attractors", "diffuse"])
def test_agrees_with_reference(make, floor, exact_mst):
    data = make()
    params = HDBSCANParams(15, 9, cluster_selection_epsilon=0.0, allow_single_cluster=False)
    ref = reference.cluster(data, params)
    ours = fast.cluster(data, params, options=fast.FastOptions(exact_mst=exact_mst))
    # the kNN-graph MST is the cheaper, inexact option: it may miss a lighter edge outside the graph
    assert adjusted_rand_score(ref.labels, ours.labels) >= (floor if exact_mst else 0.99)
    assert ours.info["fidelity"]["exactly_equal"] == 1.0
    assert ours.info["mst"] == ("exact Borůvka" if exact_mst else "kNN-graph Borůvka, pieces joined exactly")


def test_probabilities_follow_the_reference():
    data = attractor_data(seed=4)
    params = HDBSCANParams(20, 9)
    ref, ours = reference.cluster(data, params), fast.cluster(data, params)
    # identical under OpenBLAS's SkylakeX kernel; under its Haswell kernel one point of 2,500 lands on the other
    # side of a tied merge (see the note above test_agrees_with_reference), so allow at most 2 points to differ
    assert adjusted_rand_score(ref.labels, ours.labels) >= 0.999
    same = np.isclose(ref.probabilities, ours.probabilities, atol=1e-9)
    assert same.sum() >= len(data) - 2


@pytest.mark.parametrize(
    "params",
    [
        HDBSCANParams(20, 10, cluster_selection_method="leaf"),
        HDBSCANParams(20, 10, cluster_selection_epsilon=0.5),
        HDBSCANParams(20, 10, cluster_selection_epsilon=0.5, allow_single_cluster=True),
        HDBSCANParams(5, 2),
    ],
    ids=["leaf", "epsilon", "epsilon-single", "small"],
)
def test_selection_options_follow_the_reference(params):
    data = attractor_data(seed=3)
    assert adjusted_rand_score(reference.cluster(data, params).labels, fast.cluster(data, params).labels) >= 0.999


# The MST search's paths, forced on small data: one block at a time in order of bound; one symmetric pass over
# every point; slots so few that merges use them up; and the default at production size: points searched only
# against the groups whose maximum inner product (kept by the neighbour screen) could beat their slots.
FEW_GROUPS_AT_ONCE = {"leading_groups": 1, "group_rows": 8, "group_step": 2}  # the bounds decide, not a wide first step
SEARCH_PATHS = {
    "ordered": {},
    "symmetric": {"pair_rows": 4, "symmetric_share": 0.0},
    "symmetric-two-slots": {"pair_rows": 4, "symmetric_share": 0.0, "slots": 2},
    "group-maxima": {"pair_rows": 4, "symmetric_share": 0.0, **FEW_GROUPS_AT_ONCE},
    "group-maxima-two-slots": {"pair_rows": 4, "symmetric_share": 0.0, "slots": 2, **FEW_GROUPS_AT_ONCE},
    "group-maxima-ordered": FEW_GROUPS_AT_ONCE,
    "group-maxima-wide-groups": {"pair_rows": 4, "symmetric_share": 0.0, **FEW_GROUPS_AT_ONCE},
    "narrow-blocks": {"search_rows": 8, "block_cols": 64},
}
GROUP = 16  # small groups, so that small data has many
WIDE_GROUP = 64  # as wide as a chunk of the slot search: whole chunks of one component are skipped at once


def mst_by_path(data: np.ndarray, k: int, min_samples: int, path: str) -> tuple[np.ndarray, dict]:
    """The exact MST of ``data`` on ``path`` (group paths: rows in cell order, maxima from the screen; ids mapped back)."""
    tuning = MSTTuning(**SEARCH_PATHS[path])
    if not path.startswith("group"):
        graph = neighbours.nearest(data, min_samples, k)
        return mutual_reachability_mst(data, graph, similarity_error(data), tuning=tuning)
    group = WIDE_GROUP if path.endswith("wide-groups") else GROUP
    order = cell_order(data)
    x = np.ascontiguousarray(data[order])
    maxima = np.full((x.shape[0], -(-x.shape[0] // group)), -np.inf, dtype=np.float32)
    graph = neighbours.nearest(x, min_samples, k, maxima=maxima, group=group)
    tree, stats = mutual_reachability_mst(x, graph, similarity_error(x), maxima=maxima, group=group, tuning=tuning)
    tree[:, :2] = order[tree[:, :2].astype(np.int64)]
    return tree, stats


def check_search_path(stats: dict, path: str, n: int) -> None:
    assert (stats["symmetric_searches"] > 0) == path.startswith("symmetric"), stats
    assert (stats["group_searches"] > 0) == (path in ("group-maxima", "group-maxima-two-slots", "group-maxima-wide-groups")), (
        stats
    )
    assert stats["searched_points"] > 0, stats
    assert stats["searched_pair_share"] > 0, stats


def pruned_share(stats: dict, n: int) -> float:
    """Pairs the searches computed, as a share of full searches of the points searched."""
    return stats["searched_pair_share"] * (n - 1) / 2 / stats["searched_points"]


@pytest.mark.parametrize("path", list(SEARCH_PATHS))
def test_exact_mst_equals_a_brute_force_mst(path):
    """The Borůvka MST has the weight of the MST of the full mutual-reachability matrix."""
    from scipy.sparse.csgraph import connected_components, minimum_spanning_tree

    data = diffuse_data(n=600, seed=7)
    tree, stats = mst_by_path(data, 8, 5, path)
    core = neighbours.nearest(data, 5, 8).core
    x = data.astype(np.float64)
    full = np.sqrt(np.maximum(0, ((x[:, None, :] - x[None, :, :]) ** 2).sum(-1)))
    mrd = np.maximum(full, np.maximum(core[:, None], core[None, :]))
    np.fill_diagonal(mrd, 0)
    want = minimum_spanning_tree(mrd + 1e-12 * (mrd > 0)).data.sum()  # keep zero-weight edges
    check_search_path(stats, path, 600)
    assert tree.shape == (599, 3)
    assert tree[:, 2].sum() == pytest.approx(want, rel=1e-9, abs=1e-6)
    a, b = tree[:, 0].astype(int), tree[:, 1].astype(int)
    assert np.allclose(tree[:, 2], mrd[a, b], rtol=1e-12)  # each edge weighs what its (original) ends say
    graph = np.zeros((600, 600))
    graph[a, b] = 1
    assert connected_components(graph, directed=False)[0] == 1  # a spanning tree


@pytest.mark.parametrize("path", list(SEARCH_PATHS))
@pytest.mark.parametrize("make", [attractor_data, diffuse_data], ids=["attractors", "diffuse"])
def test_mst_weights_are_hdbscans(make, path):
    """The engine's tree has exactly the edge weights of the hdbscan package's own MST."""
    import hdbscan

    data = make(seed=11)
    ref = hdbscan.HDBSCAN(min_cluster_size=15, min_samples=9, gen_min_span_tree=True).fit(data.astype(np.float64))
    tree, stats = mst_by_path(data, fast.FastOptions().list_length(9), 9, path)
    check_search_path(stats, path, data.shape[0])
    want = np.sort(ref.minimum_spanning_tree_.to_numpy()[:, 2])
    assert np.allclose(np.sort(tree[:, 2]), want, rtol=1e-12, atol=1e-12)
    if path.startswith("group") and make is attractor_data:  # clusters: most groups cannot beat the slots
        assert pruned_share(stats, data.shape[0]) < 0.85, stats


@pytest.mark.parametrize("blocks", [(2048, 8192), (64, 192)], ids=["one-block", "many-blocks"])
@pytest.mark.parametrize("group", [16, 64])
@pytest.mark.parametrize("heap_bytes", [1 << 30, 0], ids=["symmetric", "row-blocks"])
def test_group_maxima_are_the_largest_inner_products(blocks, group, heap_bytes):
    tuning = ScreenTuning(
        block_rows=blocks[0], block_cols=blocks[1], heap_bytes=heap_bytes, heap_data_ratio=1.0 if heap_bytes else 0.0
    )
    data = diffuse_data(n=1000, seed=2)  # 1000 is no multiple of either group: the last group is short
    maxima = np.full((1000, -(-1000 // group)), -np.inf, dtype=np.float32)
    neighbours.nearest(data, 9, 10, maxima=maxima, group=group, tuning=tuning)
    sims = data.astype(np.float64) @ data.astype(np.float64).T
    want = np.stack([sims[:, g : g + group].max(axis=1) for g in range(0, 1000, group)], axis=1)
    assert np.abs(maxima - want).max() < 1e-5  # float32 GEMM rounding only


def test_cell_order_is_a_permutation_that_keeps_clusters_together():
    data = attractor_data(n=2000, seed=9)
    order = cell_order(data)
    assert np.array_equal(np.sort(order), np.arange(2000))
    # consecutive rows in the order are far closer than random pairs
    ordered = data[order]
    near = np.einsum("ij,ij->i", ordered[1:], ordered[:-1]).mean()
    rng = np.random.default_rng(0)
    assert near > np.einsum("ij,ij->i", data, data[rng.permutation(2000)]).mean() + 0.2


def test_group_size_fits_the_budget():
    assert neighbours.group_size(1000, 10**9) == 64
    assert neighbours.group_size(110_000, 512 * 2**20) == 128  # production ds10: 377 MB of maxima
    assert neighbours.group_size(10**7, 512 * 2**20) == 0  # nothing fits: the search runs without maxima


@pytest.mark.parametrize("blocks", [(2048, 8192), (64, 192)], ids=["one-block", "many-blocks"])
@pytest.mark.parametrize("heap_bytes", [1 << 30, 0], ids=["symmetric", "row-blocks"])
def test_knn_is_exact_in_float64(blocks, heap_bytes):
    tuning = ScreenTuning(
        block_rows=blocks[0], block_cols=blocks[1], heap_bytes=heap_bytes, heap_data_ratio=1.0 if heap_bytes else 0.0
    )
    data = diffuse_data(n=1500, seed=5)
    graph = neighbours.nearest(data, 19, 20, tuning=tuning)
    x = data.astype(np.float64)
    rows = np.r_[0:30, 1470:1500]  # first and last blocks: served by the square block, rows and columns
    brute = np.sort(np.sqrt(((x[rows, None, :] - x[None, :, :]) ** 2).sum(-1)), axis=1)[:, :20]
    assert np.allclose(graph.dist[rows], brute, rtol=1e-12, atol=1e-12)
    assert np.allclose(graph.core[rows], brute[:, 19], rtol=1e-12, atol=1e-12)
    assert np.all(np.diff(graph.dist, axis=1) >= 0)
    assert graph.stats["screen"] == ("row blocks" if heap_bytes == 0 else "symmetric")


def test_two_points_and_two_pairs():
    two = l2_normalise(np.array([[1, 0, 0], [0, 1, 0]], dtype=np.float32))
    ours, ref = fast.cluster(two, HDBSCANParams(2, 1)), reference.cluster(two, HDBSCANParams(2, 1))
    assert ours.tree[0, 2] == pytest.approx(np.sqrt(2), rel=1e-7) and np.array_equal(ours.tree, ref.tree)
    assert ours.labels.tolist() == ref.labels.tolist()
    pairs = l2_normalise(np.array([[1, 0, 0], [1, 0.01, 0], [0, 1, 0], [0.01, 1, 0]], dtype=np.float32))
    ours, ref = fast.cluster(pairs, HDBSCANParams(2, 1)), reference.cluster(pairs, HDBSCANParams(2, 1))
    assert ours.labels.tolist() == ref.labels.tolist() == [0, 0, 1, 1]  # two clusters: the smallest case that can split
    np.testing.assert_allclose(ours.tree, ref.tree, rtol=1e-12)


def test_identical_vectors_form_one_cluster_with_allow_single_cluster():
    data = np.tile(l2_normalise(np.ones((1, 8), dtype=np.float32)), (50, 1))
    params = HDBSCANParams(5, 5, allow_single_cluster=True)
    ours, ref = fast.cluster(data, params), reference.cluster(data, params)
    assert adjusted_rand_score(ref.labels, ours.labels) == 1.0
    assert np.mean(ours.labels >= 0) == np.mean(ref.labels >= 0)


def test_uniform_noise_behaves_like_the_reference():
    """No structure: the same tree (weights), the same GLOSH scores, and the same one cluster and outliers."""
    rng = np.random.default_rng(2)
    data = l2_normalise(rng.standard_normal((600, 64)).astype(np.float32))
    params = HDBSCANParams(30, 29, allow_single_cluster=True)
    ours, ref = fast.cluster(data, params), reference.cluster(data, params)
    assert (ref.labels >= 0).any() and (ref.labels < 0).any()  # not all noise: the comparison can fail
    assert np.array_equal(ours.labels, ref.labels)
    np.testing.assert_allclose(np.sort(ours.tree[:, 2]), np.sort(ref.tree[:, 2]), rtol=1e-12)
    np.testing.assert_allclose(ours.outlier_scores, ref.outlier_scores, atol=1e-12)


def test_too_few_points_is_a_clear_error():
    with pytest.raises(ValueError, match="at least 2"):
        fast.cluster(np.ones((1, 4), dtype=np.float32), HDBSCANParams(2, 1))


def test_zero_vectors_are_rejected_before_any_engine():
    data = np.ones((5, 4), dtype=np.float32)
    data[3] = 0
    with pytest.raises(BadVectorError, match="zero vector.*row 3"):
        l2_normalise(data)

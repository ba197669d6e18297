import numpy as np

from cluster_workers.engines import l2_normalise
from cluster_workers.engines.medoids import medoid_indices


def test_medoid_is_the_member_with_least_summed_squared_distance():
    rng = np.random.default_rng(0)
    data = l2_normalise(rng.standard_normal((300, 16)).astype(np.float32))
    labels = rng.integers(-1, 5, 300).astype(np.int32)
    medoids = medoid_indices(data, labels)
    assert medoids.shape == (5,)
    for c, m in enumerate(medoids):
        members = np.flatnonzero(labels == c)
        assert labels[m] == c
        cost = ((data[members][:, None, :] - data[members][None, :, :]) ** 2).sum(-1).sum(1)
        assert m == members[np.argmin(cost)] or np.isclose(cost.min(), cost[members.tolist().index(m)], rtol=1e-5)


def test_no_clusters_gives_no_medoids():
    data = np.eye(4, dtype=np.float32)
    assert medoid_indices(data, np.full(4, -1, dtype=np.int32)).size == 0

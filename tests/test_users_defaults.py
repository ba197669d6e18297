"""The default `cluster` result is the users' own scikit-learn HDBSCAN call, on real text and generated data."""

from __future__ import annotations

import uuid

import hdbscan
import numpy as np
import pytest
import sqlalchemy as sa
from sklearn.cluster import HDBSCAN
from sklearn.metrics import adjusted_rand_score

from cluster_workers.db.connect import make_engine
from cluster_workers.db.experiment import fetch_vectors
from cluster_workers.run.config import Settings
from cluster_workers.run.coordinator import run_clustering
from tests.legacy_tables import clustering_result, embedding_cluster


def stored_result(url: str, model: str) -> tuple[dict, dict[uuid.UUID, uuid.UUID | None]]:
    engine = make_engine(url)
    with engine.connect() as conn:
        (row,) = conn.execute(sa.select(clustering_result).where(clustering_result.c.embedding_model == model)).mappings()
        members = dict(
            conn.execute(
                sa.select(embedding_cluster.c.embedding_id, embedding_cluster.c.medoid_embedding_id).where(
                    embedding_cluster.c.clustering_result_id == row["id"]
                )
            ).all()
        )
    engine.dispose()
    return dict(row), members


def users_call(url: str, model: str, downsample: int, n: int, allow_single_cluster: bool = True, m: int = 0, eps: float = 0.5):
    """The users' workflow on the same sample: scikit-learn HDBSCAN with their parameters."""
    engine = make_engine(url)
    with engine.connect() as conn:
        v = fetch_vectors(conn, model, downsample, n)
        vectors = {uuid.UUID(bytes=bytes(b)): vec for b, vec in zip(v.ids, v.data)}
    engine.dispose()
    data = v.data / np.linalg.norm(v.data, axis=1, keepdims=True)
    m = m or max(2, int(len(data) * 0.001))
    model_ = HDBSCAN(
        min_cluster_size=m,
        min_samples=m,
        cluster_selection_epsilon=eps,
        allow_single_cluster=allow_single_cluster,
        metric="euclidean",
        store_centers="medoid",
        copy=True,
    ).fit(data)
    ids = [uuid.UUID(bytes=bytes(b)) for b in v.ids]
    return ids, model_, vectors


def assert_users_result(url: str, model: str, downsample: int, allow_single_cluster: bool = True, floor: float = 0.999,
                        m: int = 0, eps: float = 0.5) -> None:  # fmt: skip
    row, members = stored_result(url, model)
    ids, theirs, vectors = users_call(url, model, downsample, len(members), allow_single_cluster, m, eps)
    medoid_ids = sorted({m for m in members.values() if m is not None}, key=str)
    ours = np.array([medoid_ids.index(members[i]) if members[i] is not None else -1 for i in ids])
    assert theirs.labels_.max() >= 0, "the sample must have a cluster for the comparison to mean something"
    assert adjusted_rand_score(theirs.labels_, ours) >= floor
    # same medoid vector (as vectors: duplicate texts tie) for >= 99% of their clusters
    ours_by_medoid: dict = {}
    for e, m in members.items():
        ours_by_medoid.setdefault(m, set()).add(e)
    matched = same_members = same_members_matched = 0
    for c in range(theirs.labels_.max() + 1):
        members_c = [ids[i] for i in np.flatnonzero(theirs.labels_ == c)]
        our_medoids = {members[e] for e in members_c} - {None}
        hit = any(np.allclose(vectors[m], theirs.medoids_[c] * np.linalg.norm(vectors[m]), atol=1e-6) for m in our_medoids)
        matched += hit
        if len(our_medoids) == 1 and ours_by_medoid[next(iter(our_medoids))] == set(members_c):
            same_members += 1  # the same cluster in both: its medoid must be the same, whatever the ARI
            same_members_matched += hit
    assert same_members >= 1 and same_members_matched == same_members, (
        f"{same_members_matched} of {same_members} identical clusters share the medoid"
    )
    if floor >= 0.999:
        assert matched >= 0.99 * (theirs.labels_.max() + 1), f"{matched} of {theirs.labels_.max() + 1} medoids match"
    params = row["parameters"]
    # anyone can rerun the hdbscan package with engine_parameters: exactly the stored partition's structure
    assert params["engine_parameters"]["min_samples"] == params["min_samples"] - 1


def test_real_text_default_is_the_users_sklearn_call(realtext_db):
    """Their defaults find one tight cluster in 3,000 real sentences (99.3% outliers): exactly theirs."""
    url = f"sqlite:///{realtext_db}"
    report = run_clustering(Settings(database_url=url, downsample=1, workers=1))
    assert [r.model for r in report.results] == ["MiniLM"] and report.results[0].n_clusters == 1
    assert_users_result(url, "MiniLM", 1)


def test_real_text_with_clusters_and_outliers_is_the_users_sklearn_call(realtext_db):
    """Their call with min_cluster_size = min_samples = 5, no epsilon: two clusters and a quarter outliers on the
    3,000 real sentences -- a partition that can be wrong -- reproduced exactly, medoids included."""
    url = f"sqlite:///{realtext_db}"
    report = run_clustering(Settings(database_url=url, downsample=1, workers=1, min_cluster_size=5, min_samples=5, epsilon=0.0,
                                     allow_single_cluster=False))  # fmt: skip
    assert report.results[0].n_clusters >= 2 and 0.1 < report.results[0].outlier_share < 0.5
    assert_users_result(url, "MiniLM", 1, allow_single_cluster=False, floor=0.999, m=5, eps=0.0)


def test_real_text_without_single_cluster_is_as_close_as_their_own_call_to_itself(realtext_db):
    """min_samples = 3 on real text: 302 of 2,999 MST weights tie, and ties merge in an order no
    implementation defines -- scikit-learn against itself on permuted rows gives ARI 0.944-0.961 here
    (110-112 clusters). The MST weights are identical (tests/engines); the labels are within that spread."""
    url = f"sqlite:///{realtext_db}"
    report = run_clustering(Settings(database_url=url, downsample=1, workers=1, allow_single_cluster=False))
    assert 105 <= report.results[0].n_clusters <= 115
    assert_users_result(url, "MiniLM", 1, allow_single_cluster=False, floor=0.94)


@pytest.mark.parametrize("model", ["STSBMpnet", "Nomic"])
def test_generated_data_default_is_the_users_sklearn_call(mid_db, model):
    url = f"sqlite:///{mid_db}"
    run_clustering(Settings(database_url=url, downsample=1, workers=2, models=(model,)))
    assert_users_result(url, model, 1)


@pytest.mark.parametrize(
    "db, model, engine, floor",
    [("realtext_db", "MiniLM", "reference", 1.0), ("mid_db", "STSBMpnet", "fast", 0.999)],
    ids=["real-text-reference", "generated-fast"],
)
def test_hdbscan_with_engine_parameters_reproduces_the_stored_labels(request, db, model, engine, floor):
    url = f"sqlite:///{request.getfixturevalue(db)}"
    run_clustering(Settings(database_url=url, downsample=1, workers=1, engine=engine, models=(model,)))
    row, members = stored_result(url, model)
    engine_ = make_engine(url)
    with engine_.connect() as conn:
        v = fetch_vectors(conn, model, 1, len(members))
    engine_.dispose()
    data = (v.data / np.linalg.norm(v.data, axis=1, keepdims=True)).astype(np.float64)
    labels = hdbscan.HDBSCAN(**row["parameters"]["engine_parameters"]).fit_predict(data)
    ids = [uuid.UUID(bytes=bytes(b)) for b in v.ids]
    medoid_ids = sorted({m for m in members.values() if m is not None}, key=str)
    stored = np.array([medoid_ids.index(members[i]) if members[i] is not None else -1 for i in ids])
    assert labels.max() >= 0
    assert adjusted_rand_score(labels, stored) >= floor
    if floor == 1.0:
        assert np.array_equal(labels < 0, stored < 0)

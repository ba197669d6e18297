"""Kept trees: `recut` equals a fresh `cluster` of the same sample; `sweep` writes nothing; old results say so."""

from __future__ import annotations

import uuid

import hdbscan
import numpy as np
import pytest
import sqlalchemy as sa

from cluster_workers.db.attached import read_tree, sorted_member_ids
from cluster_workers.db.catalog import find_result
from cluster_workers.db.connect import make_engine
from cluster_workers.engines import HDBSCANParams, l2_normalise
from cluster_workers.engines.fast import cluster as fast_cluster
from cluster_workers.engines.reference import cluster as reference_cluster
from cluster_workers.engines.tree import cut_tree
from cluster_workers.errors import ConfigError
from cluster_workers.run.config import Settings
from cluster_workers.run.coordinator import run_clustering
from cluster_workers.run.recut import recut
from cluster_workers.views.sweep import sweep
from tests.engines.datasets import attractor_data, near_copy_data
from tests.helpers import file_hash, run_cli, write_experiment
from tests.legacy_tables import clustering_result, clustering_tree, embedding_cluster

MODEL = "MiniLM"


def cluster(url: str, model: str, force: bool = False, **params) -> uuid.UUID:  # type: ignore[no-untyped-def]
    """Cluster one model at downsample 1 through the real workflow; the new result's id."""
    run_clustering(Settings(database_url=url, downsample=1, models=(model,), force=force, timeout=600, **params))
    engine = make_engine(url)
    with engine.connect() as conn:
        found = find_result(conn, f"latest:{model}").id
    engine.dispose()
    return found


def snapshot(url: str, result_id: str) -> dict[uuid.UUID, tuple]:
    """Per embedding: (medoid id, probability, GLOSH score) of one result."""
    engine = make_engine(url)
    with engine.connect() as conn:
        rid = find_result(conn, result_id).id
        ids, medoids = sorted_member_ids(conn, rid)
        tree = read_tree(conn, rid)
    engine.dispose()
    row_ids, row_medoids = ids[tree.positions], medoids[tree.positions]
    return {
        uuid.UUID(bytes=row_ids[r].tobytes()): (row_medoids[r].tobytes(), tree.probabilities[r], tree.outlier_scores[r])
        for r in range(tree.points)
    }


def assert_recut_equals_fresh(url: str, model: str, base_id: uuid.UUID, base: dict, setting: dict) -> dict:
    """recut(the base result -> setting) gives what `cluster` with the base's values and ``setting`` gives; the
    recut result's parameters."""
    report = recut(url, base_id.hex, {
        "min_cluster_size": setting.get("min_cluster_size"), "cluster_selection_epsilon": setting.get("epsilon"),
        "cluster_selection_method": setting.get("cluster_selection_method"),
        "allow_single_cluster": setting.get("allow_single_cluster"),
    }, {}, force=True)  # fmt: skip
    cut = snapshot(url, f"latest:{model}")
    engine = make_engine(url)
    with engine.connect() as conn:
        parameters = find_result(conn, report.result_id.hex).parameters  # read now: the fresh run replaces it
    engine.dispose()
    cluster(url, model, force=True, **{**base, **setting})
    fresh = snapshot(url, f"latest:{model}")
    assert cut.keys() == fresh.keys()
    assert [cut[k][0] for k in fresh] == [fresh[k][0] for k in fresh]  # same clusters, same medoids
    np.testing.assert_array_equal([cut[k][1] for k in fresh], [fresh[k][1] for k in fresh])
    np.testing.assert_array_equal([cut[k][2] for k in fresh], [fresh[k][2] for k in fresh])
    assert len({m for m, _, _ in fresh.values()}) > 1 or setting.get("allow_single_cluster") is not False
    return parameters


SETTINGS = [
    {"min_cluster_size": 10, "epsilon": 0.0},
    {"min_cluster_size": 25, "epsilon": 0.2},
    {"min_cluster_size": 5, "cluster_selection_method": "leaf"},
    {"min_cluster_size": 8, "epsilon": 0.05, "allow_single_cluster": False},
]


@pytest.mark.parametrize("setting", SETTINGS, ids=lambda s: "-".join(f"{k}={v}" for k, v in s.items()))
def test_recut_equals_fresh_cluster_on_real_text(realtext_db, setting):
    url = f"sqlite:///{realtext_db}"
    base = {"min_cluster_size": 4, "min_samples": 4}
    base_id = cluster(url, MODEL, **base)
    assert_recut_equals_fresh(url, MODEL, base_id, base, setting)


@pytest.mark.parametrize("kind", ["attractors", "near_copies"])
def test_recut_equals_fresh_cluster_on_generated_data(tmp_path, kind):
    data = attractor_data(n=1500, dim=48, seed=3) if kind == "attractors" else near_copy_data(n=1500, dim=64, blobs=15, seed=3)
    path = tmp_path / "experiments.db"
    write_experiment(path, "Gen", [f"text {i}" for i in range(len(data))], data.astype(np.float32))
    url = f"sqlite:///{path}"
    base = {"min_cluster_size": 26, "min_samples": 26}
    base_id = cluster(url, "Gen", **base)
    for setting in ({"min_cluster_size": 60, "epsilon": 0.1}, {"min_cluster_size": 12, "cluster_selection_method": "leaf"},
                    {"min_cluster_size": 40, "epsilon": 0.0, "allow_single_cluster": False}):  # fmt: skip
        assert_recut_equals_fresh(url, "Gen", base_id, base, setting)


@pytest.mark.parametrize("drop_every", [0, 3])
def test_medoid_vectors_read_by_one_pass_over_the_sample(tmp_path, monkeypatch, drop_every):
    """Many changed medoids: the members' vectors come from one pass over the sample (and by primary key for any
    row that pass no longer finds, e.g. the database changed); the medoids are those of a fresh `cluster`."""
    import cluster_workers.db.attached as sources
    from cluster_workers.db.experiment import Vectors

    data = attractor_data(n=1500, dim=48, seed=4)
    path = tmp_path / "experiments.db"
    write_experiment(path, "Gen", [f"text {i}" for i in range(len(data))], data.astype(np.float32))
    url = f"sqlite:///{path}"
    base = {"min_cluster_size": 26, "min_samples": 26}
    base_id = cluster(url, "Gen", **base)
    monkeypatch.setattr(sources, "SCAN_MIN_ROWS", 0)
    if drop_every:
        real_fetch = sources.fetch_vectors

        def fetch_fewer(*args, **kwargs) -> Vectors:  # type: ignore[no-untyped-def]
            full = real_fetch(*args, **kwargs)
            keep = np.arange(len(full.ids)) % drop_every != 0
            return Vectors(ids=full.ids[keep], data=full.data[keep], skipped=full.skipped)

        monkeypatch.setattr(sources, "fetch_vectors", fetch_fewer)
    parameters = assert_recut_equals_fresh(
        url, "Gen", base_id, base, {"min_cluster_size": 12, "cluster_selection_method": "leaf"}
    )
    assert parameters["recut"]["medoids_computed"] > 0
    assert parameters["recut"]["vectors_read"] == ("sample scan and primary key" if drop_every else "sample scan")


def test_recut_equals_fresh_cluster_on_postgres(pg_demo):
    base = {"min_cluster_size": 3, "min_samples": 3}
    base_id = cluster(pg_demo, "Nomic", **base)
    assert_recut_equals_fresh(pg_demo, "Nomic", base_id, base, {"min_cluster_size": 6, "epsilon": 0.0})
    assert_recut_equals_fresh(pg_demo, "Nomic", base_id, base, {"min_cluster_size": 4, "cluster_selection_method": "leaf"})


def test_glosh_and_tree_equal_the_hdbscan_package():
    data = l2_normalise(attractor_data(n=1200, dim=32, seed=5).astype(np.float32))
    params = HDBSCANParams(min_cluster_size=15, min_samples=9)
    model = hdbscan.HDBSCAN(**params.as_dict()).fit(data.astype(np.float64))
    fast = fast_cluster(data.copy(), params, fidelity=False)
    np.testing.assert_allclose(fast.outlier_scores, model.outlier_scores_, rtol=1e-9, atol=1e-12)
    np.testing.assert_array_equal(fast.labels, model.labels_)
    ref = reference_cluster(data, params)
    again = cut_tree(ref.tree, params)  # the stored tree cut again gives the package's own answer
    np.testing.assert_array_equal(again.labels, ref.labels)
    np.testing.assert_array_equal(again.probabilities, ref.probabilities)
    np.testing.assert_array_equal(again.outlier_scores, model.outlier_scores_)


def test_sweep_writes_nothing_and_matches_recut(realtext_db):
    url = f"sqlite:///{realtext_db}"
    cluster(url, MODEL, min_cluster_size=4, min_samples=4)
    before = file_hash(realtext_db)
    summary, rows = sweep(url, f"latest:{MODEL}", [0.0, 0.5], [4, 20, 50])
    assert file_hash(realtext_db) == before
    assert [(r.min_cluster_size, r.cluster_selection_epsilon) for r in rows] == [(s, e) for s in (4, 20, 50) for e in (0.0, 0.5)]
    stored = [r for r in rows if r.min_cluster_size == 4 and r.cluster_selection_epsilon == 0.5][0]
    assert stored.ari_vs_stored == pytest.approx(1.0)
    assert stored.clusters == summary.clusters
    assert min(r.ari_vs_stored for r in rows) < 0.99  # other settings do differ
    done = recut(url, summary.id.hex, {"min_cluster_size": 20, "cluster_selection_epsilon": 0.0}, {})
    row = [r for r in rows if r.min_cluster_size == 20 and r.cluster_selection_epsilon == 0.0][0]
    assert (done.clusters, round(done.outlier_share, 9)) == (row.clusters, round(row.outlier_share, 9))


def test_cli_sweep_json_and_recut_skip_rule(realtext_db):
    db = str(realtext_db)
    cluster(f"sqlite:///{db}", MODEL, min_cluster_size=4, min_samples=4)
    out = run_cli("sweep", "latest", "-d", db, "--epsilon", "0,0.3", "--min-cluster-size", "10", "--json")
    assert out.returncode == 0, out.stderr
    import json

    assert len(json.loads(out.stdout)["settings"]) == 2
    first = run_cli("recut", "latest", "-d", db, "--min-cluster-size", "10")
    assert first.returncode == 0 and "wrote result" in first.stdout, first.stderr
    again = run_cli("recut", "latest", "-d", db, "--min-cluster-size", "10")  # the same key on the same sample
    assert again.returncode == 0 and "not written" in again.stdout


def test_min_samples_change_and_missing_tree_are_one_clear_line(demo_db):
    url = f"sqlite:///{demo_db}"
    cluster(url, "Nomic", min_cluster_size=3, min_samples=3)
    with pytest.raises(ConfigError, match="needs a new clustering"):
        recut(url, "latest", {"min_samples": 5}, {})
    engine = make_engine(url)
    with engine.begin() as conn:
        conn.execute(sa.delete(clustering_tree))  # as a result made before trees were kept
    engine.dispose()
    before = file_hash(demo_db)
    out = run_cli("recut", "latest", "-d", str(demo_db), "--epsilon", "0.1")
    assert out.returncode != 0
    assert "no stored tree" in out.stderr and "cluster-workers cluster --model Nomic" in out.stderr
    assert len(out.stderr.strip().splitlines()) == 1
    assert file_hash(demo_db) == before
    out = run_cli("sweep", "latest", "-d", str(demo_db), "--epsilon", "0.1")
    assert out.returncode != 0 and "no stored tree" in out.stderr


def test_delete_removes_the_tree_with_its_result(demo_db):
    url = f"sqlite:///{demo_db}"
    cluster(url, "Nomic", min_cluster_size=3, min_samples=3)
    engine = make_engine(url)
    with engine.connect() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(clustering_tree)).scalar() == 1
    out = run_cli("delete", "latest", "-d", str(demo_db), "--yes")
    assert out.returncode == 0, out.stderr
    with engine.connect() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(clustering_tree)).scalar() == 0
        assert conn.execute(sa.select(sa.func.count()).select_from(clustering_result)).scalar() == 0
        assert conn.execute(sa.select(sa.func.count()).select_from(embedding_cluster)).scalar() == 0
    engine.dispose()


def test_export_and_load_result_carry_probability_and_glosh(realtext_db, tmp_path):
    import csv

    import cluster_workers

    url = f"sqlite:///{realtext_db}"
    cluster(url, MODEL, min_cluster_size=4, min_samples=4)
    kept = snapshot(url, f"latest:{MODEL}")
    out = run_cli("export", "latest", "-d", str(realtext_db), "-o", str(tmp_path / "r.csv"))
    assert out.returncode == 0, out.stderr
    with open(tmp_path / "r.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == len(kept)
    for row in rows:
        _, probability, score = kept[uuid.UUID(row["embedding_id"])]
        assert float(row["probability"]) == probability and float(row["outlier_score"]) == score
        assert (row["cluster"] == "-1") == (probability == 0.0)
    frame = cluster_workers.load_result(url, "latest")
    assert frame.dtypes["probability"] == "float64"
    assert sorted(frame["outlier_score"]) == sorted(s for _, _, s in kept.values())


def test_sweep_ranges_and_the_flattest_window():
    from cluster_workers.views.sweep import SweepRow, flattest, parse_values

    assert parse_values("5:2000:log20", int)[:3] == [5, 7, 9] and parse_values("5:2000:log20", int)[-1] == 2000
    assert len(parse_values("5:2000:log20", int)) == 20 and parse_values("0.1:0.5:0.1", float) == [0.1, 0.2, 0.3, 0.4, 0.5]
    assert parse_values("3,4", int) == [3, 4]
    with pytest.raises(ConfigError, match="range"):
        parse_values("0:10:log5", int)
    clusters = [40, 30, 20, 12, 12, 12, 11, 5, 2, 1]  # flat from the 4th to the 7th setting
    rows = [SweepRow(5 * (i + 1), 0.5, "eom", c, 0.3 + 0.01 * i * (c < 12 or i < 3), 0.1, 1.0) for i, c in enumerate(clusters)]
    (p,) = flattest(rows)
    assert (p.min_cluster_size_from, p.min_cluster_size_to, p.clusters) == (20, 30, (12, 12))

"""``assign`` and ``cluster --offset`` through the CLI on both schemas (and PostgreSQL): the frozen result untouched,
the assigned rows what the hdbscan package's approximate_predict gives on the same sample."""

from __future__ import annotations

import json
import uuid

import hdbscan
import numpy as np
import pytest
import sqlalchemy as sa
from hdbscan.prediction import approximate_predict
from sklearn.metrics import adjusted_rand_score

from cluster_workers.db.attached import read_assignment, read_tree, sorted_member_ids
from cluster_workers.db.catalog import find_result
from cluster_workers.db.connect import read_with
from cluster_workers.db.detect import schema_of
from cluster_workers.db.experiment import vectors_of
from cluster_workers.engines import l2_normalise
from cluster_workers.run.config import Settings
from cluster_workers.run.coordinator import run_clustering
from tests.helpers import file_hash, run_cli

MODEL = {"legacy": "Nomic", "current": "Nomic256"}


def kind_of(url: str) -> str:
    return read_with(url, 30.0, lambda conn: schema_of(conn).name)


def result_rows(url: str, result_id: uuid.UUID) -> tuple:
    """Everything stored of one result: its row, its memberships, its tree."""

    def read(conn):  # type: ignore[no-untyped-def]
        s = schema_of(conn)
        ec = s.embedding_cluster
        row = conn.execute(sa.select(s.clustering_result).where(s.clustering_result.c.id == result_id)).one()
        members = conn.execute(sa.select(ec).where(ec.c.clustering_result_id == result_id).order_by(ec.c.embedding_id)).all()
        tree = conn.execute(sa.select(s.clustering_tree).where(s.clustering_tree.c.clustering_result_id == result_id)).all()
        return tuple(row), [tuple(m) for m in members], [tuple(t) for t in tree]

    return read_with(url, 30.0, read)


def check_assignment(url: str, source_id: uuid.UUID, new_id: uuid.UUID) -> None:
    """The new result's frozen rows are the source's; its assigned rows partition as the package predicts them."""

    def read(conn):  # type: ignore[no-untyped-def]
        tree, assignment = read_tree(conn, source_id), read_assignment(conn, new_id)
        src_ids, src_medoids = sorted_member_ids(conn, source_id)
        new_ids, new_medoids = sorted_member_ids(conn, new_id)
        rows = src_ids[tree.positions]
        vectors = vectors_of(conn, [uuid.UUID(bytes=r.tobytes()) for r in new_ids])
        params = find_result(conn, str(source_id)).parameters["engine_parameters"]
        return tree, assignment, src_ids, src_medoids, new_ids, new_medoids, rows, vectors, params

    tree, assignment, src_ids, src_medoids, new_ids, new_medoids, rows, vectors, params = read_with(url, 30.0, read)
    assert assignment.assigned_from == source_id and assignment.points == len(new_ids)
    frozen = new_ids[assignment.positions[~assignment.assigned]]
    np.testing.assert_array_equal(frozen, rows)  # the frozen rows are the source's sample, in its tree's order
    at = {new_ids[i].tobytes(): i for i in range(len(new_ids))}
    same = [new_medoids[at[src_ids[i].tobytes()]].tobytes() == src_medoids[i].tobytes() for i in range(len(src_ids))]
    assert all(same)  # every frozen row keeps its cluster (medoid) and outliers stay outliers
    new_rows = new_ids[assignment.positions[assignment.assigned]]
    sample = l2_normalise(np.stack([vectors[uuid.UUID(bytes=r.tobytes())] for r in rows]).astype(np.float32))
    queries = l2_normalise(np.stack([vectors[uuid.UUID(bytes=r.tobytes())] for r in new_rows]).astype(np.float32))
    model = hdbscan.HDBSCAN(**params, prediction_data=True).fit(sample.astype(np.float64))
    want, _ = approximate_predict(model, queries.astype(np.float64))
    medoid_code = np.unique(new_medoids[assignment.positions[assignment.assigned]], axis=0, return_inverse=True)[1].ravel()
    got = np.where(~new_medoids[assignment.positions[assignment.assigned]].any(axis=1), -1, medoid_code)
    assert (got < 0).sum() == (want < 0).sum() or adjusted_rand_score(want, got) >= 0.99
    assert adjusted_rand_score(want, got) >= 0.99 and 0 < (want < 0).mean() < 1


def assign_and_check(url: str, target: str, tmp_path) -> None:
    model = MODEL[kind_of(url)]
    run_clustering(Settings(database_url=url, downsample=3, models=(model,)))
    source = read_with(url, 30.0, lambda conn: find_result(conn, f"latest:{model}"))
    before = result_rows(url, source.id)
    out = run_cli("assign", f"latest:{model}", "-d", target, "--json")
    assert out.returncode == 0, out.stderr
    done = json.loads(out.stdout)
    assert done["source"] == str(source.id) and done["frozen"] == source.sample_count and done["assigned"] > source.sample_count
    assert result_rows(url, source.id) == before  # the frozen result is never changed
    check_assignment(url, source.id, uuid.UUID(done["result"]))
    listed = json.loads(run_cli("results", "-d", target, "--json").stdout)
    new = next(r for r in listed if r["id"] == done["result"])
    assert new["parameters"]["assigned_from"] == str(source.id) and new["sample_count"] == done["frozen"] + done["assigned"]
    again = run_cli("assign", f"{source.id}", "-d", target)
    assert again.returncode == 0 and "not written" in again.stdout
    exported = run_cli("export", done["result"], "-d", target, "-o", str(tmp_path / "assigned.csv"))
    assert exported.returncode == 0, exported.stderr
    import csv

    rows = list(csv.DictReader(open(tmp_path / "assigned.csv")))
    assert len(rows) == new["sample_count"] and all(r["probability"] != "" and r["core_distance"] != "" for r in rows)


def test_assign_on_both_schemas(any_db, tmp_path):
    assign_and_check(f"sqlite:///{any_db}", str(any_db), tmp_path)


@pytest.mark.postgres
def test_assign_on_postgres(pg_demo, tmp_path):
    assign_and_check(pg_demo, pg_demo, tmp_path)


def test_what_cannot_be_assigned_to_is_one_clear_line(current_db):
    url = f"sqlite:///{current_db}"
    run_clustering(Settings(database_url=url, downsample=3))
    assert run_cli("assign", "latest:Nomic256", "-d", str(current_db)).returncode == 0
    theirs = read_with(
        url,
        30.0,
        lambda conn: next(
            str(r.id) for r in __import__("cluster_workers.db.catalog", fromlist=["x"]).list_results(conn) if not r.ours
        ),
    )
    assigned = read_with(url, 30.0, lambda conn: str(find_result(conn, "latest:Nomic256").id))
    before = file_hash(current_db)
    for target, says in ((theirs, "not made by this tool"), (assigned, "made by assign")):
        out = run_cli("assign", target, "-d", str(current_db))
        assert out.returncode != 0 and says in out.stderr and len(out.stderr.strip().splitlines()) == 1, out.stderr
    assert run_cli("cluster", "-d", str(current_db), "--downsample", "3", "--offset", "3").returncode != 0
    assert file_hash(current_db) == before


def test_offsets_are_disjoint_samples_of_the_same_runs(any_db):
    url = f"sqlite:///{any_db}"
    model = MODEL[kind_of(url)]
    ids = []
    for offset in range(3):
        out = run_cli("cluster", "-d", str(any_db), "--downsample", "3", "--offset", str(offset), "--model", model)
        assert out.returncode == 0, out.stderr
        result = read_with(url, 30.0, lambda conn: find_result(conn, f"latest:{model}"))
        assert result.parameters.get("offset", 0) == offset and (offset == 0) == ("offset" not in result.parameters["run_key"])
        ids.append({r.tobytes() for r in read_with(url, 30.0, lambda conn: sorted_member_ids(conn, result.id)[0])})
    run_clustering(Settings(database_url=url, downsample=1, models=(model,)))
    everything = {
        r.tobytes()
        for r in read_with(url, 30.0, lambda conn: sorted_member_ids(conn, find_result(conn, f"latest:{model}").id)[0])
    }
    assert not (ids[0] & ids[1] or ids[0] & ids[2] or ids[1] & ids[2]) and ids[0] | ids[1] | ids[2] == everything
    listed = run_cli("results", "-d", str(any_db))
    assert "offset=2" in listed.stdout and "CHANGED" not in listed.stdout


def test_stability_agrees_with_assign_and_writes_only_with_keep(any_db):
    url = f"sqlite:///{any_db}"
    model = MODEL[kind_of(url)]
    before = file_hash(any_db)
    out = run_cli("stability", model, "-d", str(any_db), "--downsample", "3", "--offsets", "3", "--json")
    assert out.returncode == 0, out.stderr
    assert file_hash(any_db) == before  # nothing written without --keep
    found = json.loads(out.stdout)["models"][0]
    assert len(found["pairs"]) == 6 and found["worst"]["ari"] == min(p["ari"] for p in found["pairs"])
    kept = run_cli("stability", model, "-d", str(any_db), "--downsample", "3", "--offsets", "2", "--keep", "--json")
    assert kept.returncode == 0 and len(json.loads(kept.stdout)["kept"]) == 2, kept.stderr
    again = run_cli("stability", model, "-d", str(any_db), "--downsample", "3", "--offsets", "2", "--keep", "--json")
    assert again.returncode == 0 and json.loads(again.stdout)["kept"] == [], again.stderr  # the same samples: not written twice
    # the same pair by another path: offset 1's stored result against offset 1 assigned to offset 0's stored result
    results = json.loads(run_cli("results", "-d", str(any_db), "--json").stdout)
    by_offset = {
        r["parameters"].get("offset", 0): r for r in results if r["model"] == model and r["made_by"] == "cluster_workers"
    }
    done = json.loads(
        run_cli("assign", by_offset[0]["id"], "-d", str(any_db), "--downsample", "3", "--offset", "1", "--json").stdout
    )

    def medoids(conn, rid):  # type: ignore[no-untyped-def]
        ids, med = sorted_member_ids(conn, uuid.UUID(rid))
        return {ids[i].tobytes(): med[i].tobytes() for i in range(len(ids))}

    own = read_with(url, 30.0, lambda conn: medoids(conn, by_offset[1]["id"]))
    assigned = read_with(url, 30.0, lambda conn: medoids(conn, done["result"]))
    keys = sorted(own)
    codes = lambda m: np.unique([m[k] if any(m[k]) else b"" for k in keys], return_inverse=True)[1]  # noqa: E731
    pair = next(p for p in found["pairs"] if (p["own"], p["other"]) == (1, 0))
    assert adjusted_rand_score(codes(own), codes(assigned)) == pytest.approx(pair["ari"], abs=1e-12)


def test_stability_refuses_an_unknown_model_in_one_line(any_db):
    """It used to reach the worker and fail there with a ValueError: now exit 2, one line naming the models, untouched."""
    before = file_hash(any_db)
    out = run_cli("stability", "NoSuchModel", "-d", str(any_db), "--downsample", "3", "--offsets", "2")
    assert out.returncode == 2, out.stderr
    assert out.stderr.strip().splitlines()[-1].startswith("error: unknown embedding model(s): NoSuchModel; the database has:")
    assert MODEL[kind_of(f"sqlite:///{any_db}")] in out.stderr
    assert file_hash(any_db) == before


def test_stability_refuses_an_offset_too_small_to_cluster(demo_db):
    """The demo's Dummy model (3 embeddings) samples 1 point per offset at downsample 1000: refused before any work."""
    before = file_hash(demo_db)
    out = run_cli("stability", "Dummy", "-d", str(demo_db), "--downsample", "1000", "--offsets", "3")
    last = out.stderr.strip().splitlines()[-1]
    assert out.returncode == 2 and last.startswith("error: model Dummy: offsets 0..2 at downsample 1000 sample"), out.stderr
    assert "each needs at least 2" in last and "clustered" not in out.stderr
    assert file_hash(demo_db) == before


@pytest.mark.parametrize("kind", ["real-text", "near-copies"])
def test_exported_core_distances_equal_a_float64_brute_force(kind, tmp_path):
    """The stored, exported ``core_distance`` of sampled rows, against a brute force on the vectors from the database."""
    import csv

    from cluster_workers.engines.neighbours import brute_force_core_distances
    from tests.engines.datasets import near_copy_data
    from tests.helpers import REALTEXT, write_experiment

    vectors = np.load(REALTEXT)["vectors"] if kind == "real-text" else near_copy_data(3000, dim=128)
    db = tmp_path / "cores.db"
    write_experiment(db, "M", [f"text {i % 700}" for i in range(len(vectors))], vectors)
    url = f"sqlite:///{db}"
    run_clustering(Settings(database_url=url, downsample=1))
    result = read_with(url, 30.0, lambda conn: find_result(conn, "latest"))
    assert run_cli("export", str(result.id), "-d", str(db), "-o", str(tmp_path / "out.csv")).returncode == 0
    rows = list(csv.DictReader(open(tmp_path / "out.csv")))
    k = result.parameters["engine_parameters"]["min_samples"]
    ids = [uuid.UUID(r["embedding_id"]) for r in rows]
    stored = read_with(url, 30.0, lambda conn: vectors_of(conn, ids))
    data = l2_normalise(np.stack([stored[i] for i in ids]).astype(np.float32))
    pick = np.sort(np.random.default_rng(0).choice(len(rows), 300, replace=False))
    want = brute_force_core_distances(data, pick, k)
    got = np.array([float(rows[i]["core_distance"]) for i in pick])
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-12)
    assert (want == 0).any() == (kind == "near-copies")  # exact copies: distance 0 among them

"""The evoc engine through the whole workflow: layers as results on both schemas and PostgreSQL, identical to the
package called directly, identical across worker core counts, and nothing written when a worker dies mid-fit."""

from __future__ import annotations

import csv
import glob
import json
import os
import sqlite3
import tempfile
import time
import uuid

import numba
import numpy as np
import psutil
import pytest

from cluster_workers.db.connect import make_engine
from cluster_workers.db.experiment import fetch_vectors
from cluster_workers.engines.evoc import EVoCParams, auto_base_size
from tests.helpers import application_rows, file_hash, memberships, ok, ours, partition, run_cli, start_cli

evoc = pytest.importorskip("evoc", reason="the evoc engine's tests need the evoc package (the test extra installs it)")


def evoc_runs(db) -> dict[str, list[dict]]:
    """model -> our evoc layer results, layer 0 first."""
    out: dict[str, list[dict]] = {}
    for r in ours(db):
        if r["parameters"].get("engine") == "evoc":
            out.setdefault(r["model"], []).append(r)
    return {m: sorted(rs, key=lambda r: r["layer"]) for m, rs in out.items()}


def direct_layers(url: str, model: str, downsample: int, n: int):
    """The model's sample read as the worker reads it, and the package's own fit of it (one thread, users' values)."""
    engine = make_engine(url, read_only=True)
    with engine.connect() as conn:
        vectors = fetch_vectors(conn, model, downsample, n)
    engine.dispose()
    data = vectors.data / np.linalg.norm(vectors.data, axis=1, keepdims=True)
    numba.set_num_threads(1)
    try:
        fitted = evoc.EVoC(noise_level=0.5, base_min_cluster_size=auto_base_size(n), min_samples=5, random_state=42).fit(
            np.ascontiguousarray(data, dtype=np.float32)
        )
    finally:
        numba.set_num_threads(numba.config.NUMBA_NUM_THREADS)
    ids = [str(uuid.UUID(bytes=row.tobytes())) for row in vectors.ids]
    return ids, fitted


def labels_partition(ids: list[str], labels: np.ndarray) -> set[frozenset[str]]:
    groups: dict[int, set[str]] = {}
    for i, lab in zip(ids, labels):
        if lab >= 0:
            groups.setdefault(int(lab), set()).add(i)
    return {frozenset(g) for g in groups.values()}


@pytest.mark.slow
def test_layers_through_the_workflow_on_both_schemas(any_db, tmp_path):
    current = sqlite3.connect(any_db).execute("SELECT 1 FROM sqlite_master WHERE name = 'clustering_results'").fetchone()
    theirs = application_rows(any_db) if current else None
    ok("cluster", "-d", str(any_db), "--engine", "evoc", "--downsample", "2")
    runs = evoc_runs(any_db)
    assert runs, "no evoc results"
    url = f"sqlite:///{any_db}"
    for model, layers in runs.items():
        n = layers[0]["sample_count"]
        assert [r["layer"] for r in layers] == list(range(layers[0]["parameters"]["layers"]))
        assert all(r["parameters"]["reproducible"]["threads"] == 1 and r["parameters"]["versions"]["evoc"] for r in layers)
        ids, fitted = direct_layers(url, model, 2, n)
        assert len(fitted.cluster_layers_) == len(layers)
        for r, labels, strengths in zip(layers, fitted.cluster_layers_, fitted.membership_strength_layers_):
            # the same partition as the package's own fit of the same rows, and its strengths as probabilities
            assert partition(memberships(any_db, r["id"])) == labels_partition(ids, labels)
            out = tmp_path / f"{r['id']}.csv"
            ok("export", r["id"], "-d", str(any_db), "-o", str(out))
            exported = {row["embedding_id"]: float(row["probability"]) for row in csv.DictReader(out.open())}
            assert exported == {i: float(s) for i, s in zip(ids, strengths)}
            assert r["algorithm"] == "evoc"
        # show names, for each cluster of a finer layer, the coarser cluster that holds its medoid
        shown = {
            r["id"]: json.loads(ok("show", r["id"], "-d", str(any_db), "--json", "--limit", "0"))["clusters"] for r in layers
        }
        held = {r["id"]: memberships(any_db, r["id"]) for r in layers}
        for r in layers[:-1]:
            placed = [c for c in shown[r["id"]] if "parent" in c]
            assert placed, "no layer tree shown"
            for c in placed:
                parent = layers[c["parent"]["layer"]]
                holder = held[parent["id"]][c["medoid_embedding_id"]]
                assert shown[parent["id"]][c["parent"]["rank"] - 1]["medoid_embedding_id"] == holder
    # every view reads a layer like any result
    model, layers = next(iter(runs.items()))
    ok("cluster", "-d", str(any_db), "--downsample", "2", "--model", model)
    hdbscan = next(r for r in ours(any_db) if r["model"] == model and r["parameters"].get("engine") == "fast")
    table = ok("compare", "-d", str(any_db), "-r", layers[0]["id"], "-r", hdbscan["id"], "--json")
    compared = json.loads(table)["comparisons"][0]
    assert compared["n"] == hdbscan["sample_count"] and -1.0 <= compared["ari"] <= 1.0
    ok("states", layers[0]["id"], "-d", str(any_db))
    ok("transitions", layers[-1]["id"], "-d", str(any_db))
    refused = run_cli("recut", layers[0]["id"], "-d", str(any_db), "--min-cluster-size", "5")
    assert refused.returncode != 0 and "is an evoc layer" in refused.stderr
    # the same command again is skipped; --force replaces every layer in one transaction
    again = run_cli("cluster", "-d", str(any_db), "--engine", "evoc", "--downsample", "2")
    assert again.returncode == 0 and "already clustered" in again.stderr
    assert evoc_runs(any_db) == runs
    ok("cluster", "-d", str(any_db), "--engine", "evoc", "--downsample", "2", "--force")
    replaced = evoc_runs(any_db)
    assert {m: len(v) for m, v in replaced.items()} == {m: len(v) for m, v in runs.items()}
    assert not {r["id"] for v in replaced.values() for r in v} & {r["id"] for v in runs.values() for r in v}
    layer_table = "cluster_workers_layers" if current else "clusteringlayer"
    con = sqlite3.connect(any_db)
    assert con.execute(f"SELECT count(*) FROM {layer_table}").fetchone()[0] == sum(len(v) for v in replaced.values())
    assert con.execute("PRAGMA foreign_key_check").fetchall() == []
    con.close()
    if theirs is not None:
        assert application_rows(any_db) == theirs
    ok("delete", "--all", "--yes", "-d", str(any_db))
    assert sqlite3.connect(any_db).execute(f"SELECT count(*) FROM {layer_table}").fetchone()[0] == 0


@pytest.mark.slow
def test_two_runs_on_different_worker_core_counts_give_identical_layers(demo_db):
    first = run_cli("cluster", "-d", str(demo_db), "--engine", "evoc", "--downsample", "2", "--workers", "1")
    assert first.returncode == 0, first.stderr[-2000:]
    assert "2 thread(s) each" in first.stderr or (os.cpu_count() or 1) < 2
    before = {m: [partition(memberships(demo_db, r["id"])) for r in rs] for m, rs in evoc_runs(demo_db).items()}
    second = run_cli("cluster", "-d", str(demo_db), "--engine", "evoc", "--downsample", "2", "--workers", "2", "--force")
    assert second.returncode == 0, second.stderr[-2000:]
    assert "1 thread(s) each" in second.stderr
    after = {m: [partition(memberships(demo_db, r["id"])) for r in rs] for m, rs in evoc_runs(demo_db).items()}
    assert len(before) == 3 and after == before


@pytest.mark.slow
def test_a_worker_killed_mid_evoc_writes_nothing(mid_db):
    digest = file_hash(mid_db)
    started = time.time()
    proc = start_cli("cluster", "-d", str(mid_db), "--engine", "evoc", "--downsample", "1", "-p", "n_epochs=3000")
    pid = None
    deadline = time.monotonic() + 120
    while pid is None and time.monotonic() < deadline:  # the worker's own status file says it is in the fit
        assert proc.poll() is None, proc.communicate()
        for path in glob.glob(os.path.join(tempfile.gettempdir(), "cluster_workers_*", "*.json")):
            try:
                status = json.loads(open(path).read())
            except (OSError, ValueError):
                continue
            if status.get("phase") == "cluster" and status.get("started", 0) >= started - 1:
                pid = status["pid"]
        time.sleep(0.05)
    assert pid is not None, "no worker reached the evoc fit"
    time.sleep(0.5)
    worker = psutil.Process(pid)
    assert worker.cpu_times().user > 0
    worker.kill()
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 1
    assert "nothing was written" in err, err
    assert file_hash(mid_db) == digest


@pytest.mark.postgres
def test_evoc_layers_on_postgres(pg_demo):
    ok("cluster", "-d", pg_demo, "--engine", "evoc", "--downsample", "3")
    runs = evoc_runs_url(pg_demo)
    assert len(runs) == 3 and all(len(v) == v[0]["parameters"]["layers"] for v in runs.values())
    shown = json.loads(ok("show", next(iter(runs.values()))[0]["id"], "-d", pg_demo, "--json"))
    assert shown["result"]["parameters"]["engine"] == "evoc"
    ok("delete", "--all", "--yes", "-d", pg_demo)
    assert not evoc_runs_url(pg_demo)


def evoc_runs_url(url: str) -> dict[str, list[dict]]:
    rows = json.loads(ok("results", "-d", url, "--json"))
    out: dict[str, list[dict]] = {}
    for r in rows:
        if r["made_by"] == "cluster_workers" and r["parameters"].get("engine") == "evoc":
            out.setdefault(r["model"], []).append(r)
    return out


def test_bad_engine_parameters_are_one_line_and_touch_nothing(demo_db):
    digest = file_hash(demo_db)
    for args, message in (
        (["-p", "noise=1"], "unknown evoc parameter 'noise'"),
        (["-p", "min_samples=many"], "invalid value"),
        (["-p", "threads"], "KEY=VALUE"),
    ):
        out = run_cli("cluster", "-d", str(demo_db), "--engine", "evoc", *args)
        assert out.returncode == 2 and message in out.stderr, out.stderr
        assert [line for line in out.stderr.splitlines() if line.startswith("error:")] and len(out.stderr.splitlines()) <= 3
    out = run_cli("cluster", "-d", str(demo_db), "-p", "threads=2")
    assert out.returncode == 2 and "for the evoc engine" in out.stderr
    assert file_hash(demo_db) == digest
    assert EVoCParams.from_options({"threads": "2"}).threads == 2


def test_the_mean_medoid_rule_is_the_one_that_matches_the_users_own_rows(current_db):
    """Their EVoC layers name each cluster by the member nearest its centroid: our ``--medoid mean`` picks a member
    exactly as near (the same member up to float32 ties among near-copies); the weighted rule picks farther ones."""
    from cluster_workers.engines.medoids import medoid_indices

    con = sqlite3.connect(current_db)
    vectors = {e: np.frombuffer(v, dtype="<f4") for e, v in con.execute("SELECT id, vector FROM embeddings")}
    layers = con.execute("SELECT id FROM clustering_results WHERE parameters NOT LIKE '%run_key%'").fetchall()
    assert layers
    differ = 0
    for (rid,) in layers:
        rows = con.execute(
            "SELECT embedding_id, medoid_embedding_id FROM embedding_clusters WHERE clustering_result_id = ? "
            "ORDER BY embedding_id",
            (rid,),
        ).fetchall()
        ids = [e for e, _ in rows]
        names = sorted({m for _, m in rows if m is not None})
        labels = np.array([names.index(m) if m is not None else -1 for _, m in rows])
        data = np.stack([vectors[e] for e in ids]).astype(np.float32)
        data /= np.linalg.norm(data, axis=1, keepdims=True)
        mean, _ = medoid_indices(data, labels, None, "mean")
        weighted, _ = medoid_indices(data, labels, np.ones(len(ids)), "weighted")
        for c, name in enumerate(names):
            members = np.flatnonzero(labels == c)
            centre = data[members].astype(np.float64).mean(axis=0)

            def to_centre(i: int) -> float:
                return float(((data[i].astype(np.float64) - centre) ** 2).sum())

            # theirs was chosen on their float64 vectors, before storing float32: among near-copies the pick is a tie
            # at float32 resolution, so the rule is shown by distance: ours and theirs are both the nearest
            assert abs(to_centre(int(mean[c])) - to_centre(ids.index(name))) <= 1e-6
            differ += to_centre(int(weighted[c])) > to_centre(ids.index(name)) + 1e-6
    assert differ > 0

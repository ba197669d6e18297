"""Stale results are never shown as current; one snapshot per run while the experiment keeps writing."""

from __future__ import annotations

import uuid

import numpy as np
import pytest
import sqlalchemy as sa

from cluster_workers.db.connect import make_engine
from cluster_workers.run.config import Settings
from cluster_workers.run.coordinator import run_clustering
from cluster_workers.views.tables import load_results
from tests.helpers import expected_sample, run_cli
from tests.legacy_tables import clustering_result, embedding, embedding_cluster, invocation, run

REAL = ("Nomic", "STSBMpnet", "STSBRoberta")


@pytest.fixture(params=["sqlite", "postgres"])
def database(request) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{request.getfixturevalue('demo_db')}"
    return request.getfixturevalue("pg_demo")


def append_run(url: str, texts: int = 12, seed: int = 0) -> int:
    """What the experiment does while we cluster: a new run, its text outputs, each real model's embeddings."""
    rng = np.random.default_rng(seed)
    engine = make_engine(url)
    run_id = uuid.uuid4()
    with engine.begin() as conn:
        conn.execute(
            sa.insert(run),
            [
                {
                    "id": run_id,
                    "network": [],
                    "seed": seed,
                    "max_length": 2 * texts,
                    "initial_prompt": f"late run {seed}",
                    "experiment_id": None,
                }
            ],
        )
        invs = [
            {
                "id": uuid.uuid4(),
                "run_id": run_id,
                "sequence_number": 2 * i + 1,
                "type": "TEXT",
                "model": "Moondream2",
                "seed": seed,
                "output_text": f"late text {seed}.{i}",
            }
            for i in range(texts)
        ]
        conn.execute(sa.insert(invocation), invs)
        conn.execute(
            sa.insert(embedding),
            [
                {
                    "id": uuid.uuid4(),
                    "invocation_id": inv["id"],
                    "embedding_model": model,
                    "vector": rng.standard_normal(768).astype("<f4").tobytes(),
                }
                for inv in invs
                for model in REAL
            ],
        )
    engine.dispose()
    return texts


def stored_samples(url: str) -> dict[str, set[uuid.UUID]]:
    engine = make_engine(url)
    with engine.connect() as conn:
        rows = conn.execute(
            sa.select(clustering_result.c.embedding_model, embedding_cluster.c.embedding_id).join(
                clustering_result, clustering_result.c.id == embedding_cluster.c.clustering_result_id
            )
        ).all()
    engine.dispose()
    out: dict[str, set[uuid.UUID]] = {}
    for model, emb in rows:
        out.setdefault(model, set()).add(emb)
    return out


@pytest.fixture()
def log_lines():
    from loguru import logger

    lines: list[str] = []
    handle = logger.add(lambda m: lines.append(m.record["message"]), level="INFO")
    yield lines
    logger.remove(handle)


def test_a_changed_database_is_clustered_again_and_old_results_show_stale(database, log_lines):
    settings = Settings(database_url=database, downsample=1, workers=2, models=REAL)
    first = run_clustering(settings)
    assert len(first.results) == 3
    assert all(not r.stale for r in load_results(database))
    assert run_clustering(settings).results == []  # unchanged database: skipped
    assert "same sample" in next(iter(run_clustering(settings).skipped.values()))

    added = append_run(database)
    second = run_clustering(settings)
    assert {r.model for r in second.results} == set(REAL)  # the sample changed: clustered again, not skipped
    err = "\n".join(log_lines)
    for model in REAL:
        n = first.sampled[model]
        assert f"{model}: sample changed since the last result with these parameters: {n:,} -> {n + added:,} embeddings" in err
    rows = load_results(database)
    assert len(rows) == 6
    assert sorted(r.stale for r in rows) == [False] * 3 + [True] * 3
    assert {r.model for r in rows if r.stale} == set(REAL)
    assert all(r.parameters["sample"]["count"] == r.sample_count for r in rows)
    assert run_clustering(settings).results == []  # and now it is current again


def test_results_command_says_stale(demo_db):
    url = f"sqlite:///{demo_db}"
    run_clustering(Settings(database_url=url, downsample=2, workers=2, models=("Nomic",)))
    assert " same " in run_cli("results", "-d", str(demo_db)).stdout
    append_run(url)
    out = run_cli("results", "-d", str(demo_db))
    assert out.returncode == 0 and "CHANGED" in out.stdout and "has changed since" in out.stdout
    fast = run_cli("results", "-d", str(demo_db), "--no-stale-check")
    header, _, row = fast.stdout.splitlines()[:3]  # header, rule, the one result
    at = header.index(" sample now ") + 1  # the table's columns are fixed-width
    assert "Nomic" in row and row[at : at + len("sample now")].strip() == "unknown"  # not checked: neither same nor CHANGED


def test_the_workers_read_what_the_coordinator_counted(database):
    """A writer adds runs after the counts and before the workers read: the stored sample is the counted one."""
    settings = Settings(database_url=database, downsample=1, workers=2, models=REAL)
    before = expected_sample(database, 1)
    report = run_clustering(settings, on_plan=lambda models: [append_run(database, seed=s) for s in (1, 2)])
    stored = stored_samples(database)
    for model in REAL:
        assert stored[model] == before[model]  # none of the 24 late texts got in
        assert len(stored[model]) == report.sampled[model]
    after = expected_sample(database, 1)
    assert all(len(after[m]) == len(before[m]) + 24 for m in REAL)  # the writer really wrote


def test_a_server_idle_in_transaction_timeout_does_not_break_a_run(pg_demo):
    """The coordinator's snapshot transaction sits idle while workers run; with one worker the later models import
    its snapshot seconds later. A database-wide 1 s idle-in-transaction timeout must not end it."""
    import sqlalchemy as sa

    from cluster_workers.db.connect import make_engine
    from tests.helpers import run_cli

    name = sa.make_url(pg_demo).database
    admin = make_engine(pg_demo)
    with admin.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.execute(sa.text(f"ALTER DATABASE \"{name}\" SET idle_in_transaction_session_timeout = '1s'"))
    admin.dispose()
    out = run_cli("cluster", "-d", pg_demo, "--downsample", "1", "--workers", "1", "--engine", "reference")
    assert out.returncode == 0, out.stderr
    assert "clustered 4 model(s)" in out.stdout


def _waiting_snapshots(url: str) -> int:
    """Sessions on the run's database holding the run's exported snapshot open (its transaction names itself)."""
    import sqlalchemy as sa

    from cluster_workers.db.connect import make_engine
    from cluster_workers.db.snapshot import SNAPSHOT_APPLICATION

    name = sa.make_url(url).database
    engine = make_engine(url)
    try:
        with engine.connect() as conn:
            return conn.execute(
                sa.text("SELECT count(*) FROM pg_stat_activity WHERE datname = :db AND application_name = :app "
                        "AND state LIKE 'idle in transaction%' AND backend_xmin IS NOT NULL"),
                {"db": name, "app": SNAPSHOT_APPLICATION},
            ).scalar_one()  # fmt: skip
    finally:
        engine.dispose()


def test_the_snapshot_is_released_once_every_worker_has_read(pg_demo, tmp_path):
    """While the workers cluster (here: paused on purpose after reading), no transaction of the run is left open
    on the server, so VACUUM is not held back for the clustering's hours. With the snapshot held to the end (the
    earlier behaviour) this finds the coordinator's idle transaction."""
    import os
    import subprocess
    import sys
    import time

    from tests.helpers import ROOT

    log = tmp_path / "run.log"
    env = {**os.environ, "CLUSTER_WORKERS_FAULT": "pause-in-clustering=8"}
    with log.open("w") as err:
        proc = subprocess.Popen(
            [sys.executable, "-m", "cluster_workers", "cluster", "-d", pg_demo, "--downsample", "1", "--workers", "2",
             "--model", "Nomic", "--model", "STSBMpnet", "--engine", "reference"],
            stdout=subprocess.DEVNULL, stderr=err, env=env, cwd=ROOT,
        )  # fmt: skip
    try:
        limit = time.monotonic() + 60
        while log.read_text().count("fault: pausing before clustering") < 2:
            assert proc.poll() is None, log.read_text()
            assert time.monotonic() < limit, "the workers never reached the clustering"
            time.sleep(0.1)
        time.sleep(1.5)  # the coordinator looks every quarter of a second
        assert proc.poll() is None, "the pause is over before the database was looked at"
        assert _waiting_snapshots(pg_demo) == 0, "a transaction of the run is still open while the workers cluster"
        assert proc.wait(timeout=120) == 0, log.read_text()
    finally:
        if proc.poll() is None:
            proc.kill()
    text = log.read_text()
    assert "every worker has read its sample: snapshot" in text and "released" in text


def test_the_snapshot_is_held_until_the_last_worker_has_read(pg_demo):
    """One worker for two models: the second reads after the first has clustered, in the same snapshot, so the
    coordinator's transaction must stay open until then (released too early, the second import fails with
    "invalid snapshot identifier") -- and be gone by the time the last result is in."""
    from cluster_workers.db.snapshot import RunSnapshot

    seen: list[int] = []
    held: list[bool] = []
    real_release = RunSnapshot.release

    def watch(result) -> None:  # called in the coordinator as each model finishes
        seen.append(_waiting_snapshots(pg_demo))

    settings = Settings(database_url=pg_demo, downsample=1, workers=1, models=("Nomic", "STSBMpnet"), engine="reference")
    try:
        RunSnapshot.release = lambda self: (held.append(self.held), real_release(self))[1]  # type: ignore[method-assign]
        report = run_clustering(settings, on_result=watch)
    finally:
        RunSnapshot.release = real_release  # type: ignore[method-assign]
    assert len(report.results) == 2, "the second worker could not read in the run's snapshot"
    assert held == [True], "the snapshot must be released once, while it was still held"
    assert seen[-1] == 0, "after the last model the snapshot must be gone"

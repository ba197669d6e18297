"""Failure semantics: whatever goes wrong, the database is exactly as before and the message says why."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time
import uuid

import numpy as np
import psutil
import pytest
import sqlalchemy as sa

from cluster_workers.db.connect import make_engine
from cluster_workers.views.tables import load_results
from tests.helpers import ROOT, SLOW, expected_sample, file_hash, run_cli, start_cli, wait_for_workers
from tests.legacy_tables import clustering_result, embedding, embedding_cluster


def assert_gone(processes: list[psutil.Process], within: float = 15) -> None:
    gone, alive = psutil.wait_procs(processes, timeout=within)
    assert not alive, f"workers still running: {alive}"


def test_a_worker_killed_hard_fails_the_run_and_writes_nothing(mid_db):
    digest = file_hash(mid_db)
    proc = start_cli("cluster", "-d", str(mid_db), *SLOW)
    workers = wait_for_workers(proc)
    workers[0].kill()  # what the OOM killer does
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 1
    assert "died" in err and "nothing was written" in err, err
    assert any(m in err for m in ("STSBMpnet", "STSBRoberta", "Nomic"))
    assert_gone(workers)
    assert file_hash(mid_db) == digest


def test_a_worker_past_its_timeout_is_stopped(mid_db):
    digest = file_hash(mid_db)
    out = run_cli("cluster", "-d", str(mid_db), *SLOW, "--timeout", "1")
    assert out.returncode == 1
    assert "passed its timeout of 1 s" in out.stderr and "nothing was written" in out.stderr
    assert file_hash(mid_db) == digest


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_an_interrupt_stops_the_workers_and_writes_nothing(mid_db, sig):
    digest = file_hash(mid_db)
    proc = start_cli("cluster", "-d", str(mid_db), *SLOW)
    workers = wait_for_workers(proc)
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130
    assert "interrupted" in err and "Traceback" not in err
    assert_gone(workers)
    assert file_hash(mid_db) == digest


def test_loky_resource_tracker_cannot_print_over_our_message(mid_db):
    """loky's tracker can print a KeyError traceback when a stopped run's temporary folder is deleted twice
    (joblib issue #1595; it failed this file's interrupt test once in CI): it runs with stderr on /dev/null."""
    proc = start_cli("cluster", "-d", str(mid_db), *SLOW)
    try:
        wait_for_workers(proc)
        trackers = [
            p
            for p in psutil.Process(proc.pid).children(recursive=True)
            if "loky.backend.resource_tracker" in " ".join(p.cmdline())
        ]
        assert trackers, "no loky resource tracker found"
        assert all(os.readlink(f"/proc/{t.pid}/fd/2") == os.devnull for t in trackers)
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.communicate(timeout=60)


def test_bin_cluster_run_stops_with_kill_pid(mid_db, tmp_path):
    import re

    env = {**os.environ, "CLUSTER_WORKERS_PYTHON": sys.executable}
    out = subprocess.run(
        [str(ROOT / "bin" / "cluster"), "1", "-d", str(mid_db), "--engine", "reference"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env=env,
        timeout=30,
    )
    pid = int(re.search(r"PID (\d+)", out.stdout).group(1))
    log = tmp_path / re.search(r"log:\s+(\S+)", out.stdout).group(1)
    deadline = time.monotonic() + 60
    while "clustering 4 model" not in log.read_text():
        assert time.monotonic() < deadline
        time.sleep(0.2)
    time.sleep(1)
    digest = file_hash(mid_db)
    os.kill(pid, signal.SIGTERM)
    psutil.Process(pid).wait(timeout=60) if psutil.pid_exists(pid) else None
    assert "interrupted" in log.read_text()
    assert file_hash(mid_db) == digest


def test_a_database_locked_by_another_writer_means_a_bounded_wait_then_a_clear_error(demo_db):
    digest = file_hash(demo_db)
    holder = sqlite3.connect(demo_db, isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")
    try:
        started = time.monotonic()
        out = run_cli("cluster", "-d", str(demo_db), "--downsample", "3", "--busy-timeout", "1")
        assert time.monotonic() - started < 60
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    assert out.returncode == 1
    assert "locked" in out.stderr and "Traceback" not in out.stderr
    assert file_hash(demo_db) == digest


def test_a_second_run_at_once_refuses_and_the_lock_dies_with_its_holder(demo_db):
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import fcntl,os,sys,time; fd=os.open(sys.argv[1], os.O_RDONLY); "
            "fcntl.flock(fd, fcntl.LOCK_EX); print('locked', flush=True); time.sleep(600)",
            str(demo_db),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert holder.stdout.readline().strip() == "locked"
    digest = file_hash(demo_db)
    out = run_cli("cluster", "-d", str(demo_db), "--downsample", "3")
    assert out.returncode == 1 and "another clustering run is already using" in out.stderr
    assert file_hash(demo_db) == digest
    holder.kill()  # the run holding the lock dies ...
    holder.wait()
    out = run_cli("cluster", "-d", str(demo_db), "--downsample", "3")
    assert out.returncode == 0, out.stderr  # ... and its lock with it


def test_a_second_run_at_once_refuses_on_postgres(pg_demo):
    from cluster_workers.db.lock import ADVISORY_KEY

    engine = make_engine(pg_demo)
    with engine.connect() as conn:
        assert conn.execute(sa.select(sa.func.pg_try_advisory_lock(ADVISORY_KEY))).scalar_one()
        out = run_cli("cluster", "-d", pg_demo, "--downsample", "3")
        conn.execute(sa.select(sa.func.pg_advisory_unlock(ADVISORY_KEY)))
    assert out.returncode == 1 and "another clustering run" in out.stderr
    assert load_results(pg_demo) == []
    engine.dispose()


def test_unreachable_postgres_is_one_clear_line():
    out = run_cli("cluster", "-d", "postgresql://postgres@127.0.0.1:1/test", "--downsample", "3", "--busy-timeout", "2")
    assert out.returncode == 1
    errors = [line for line in out.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "127.0.0.1" in errors[0] and "refused" in errors[0]
    assert "Traceback" not in out.stderr


def test_debug_shows_the_traceback(tmp_path):
    out = run_cli("--debug", "cluster", "-d", str(tmp_path / "missing.db"), "--downsample", "1")
    assert out.returncode == 1 and "Traceback" in out.stderr


def _set_vector(path, model: str, blob: bytes):
    engine = make_engine(str(path))
    with engine.begin() as conn:
        emb_id = conn.execute(sa.select(embedding.c.id).where(embedding.c.embedding_model == model).limit(1)).scalar_one()
        conn.execute(sa.update(embedding).where(embedding.c.id == emb_id).values(vector=blob))
    engine.dispose()
    return emb_id


def test_mixed_dimensions_name_the_embedding(demo_db):
    bad = _set_vector(demo_db, "Nomic", np.ones(384, dtype="<f4").tobytes())
    digest = file_hash(demo_db)
    out = run_cli("cluster", "-d", str(demo_db), "--downsample", "1")
    assert out.returncode == 1 and str(bad) in out.stderr and "1536 bytes, expected 3072" in out.stderr
    assert file_hash(demo_db) == digest


def test_skip_bad_vectors_leaves_them_out_and_counts_them(demo_db):
    _set_vector(demo_db, "Nomic", np.full(768, np.nan, dtype="<f4").tobytes())
    _set_vector(demo_db, "STSBMpnet", b"\x00" * 10)
    out = run_cli("cluster", "-d", str(demo_db), "--downsample", "1", "--skip-bad-vectors")
    assert out.returncode == 0, out.stderr
    assert "left out 1 bad vector" in out.stderr
    by_model = {r.model: r for r in load_results(str(demo_db))}
    assert by_model["Nomic"].parameters["skipped_bad_vectors"] == 1
    assert by_model["Nomic"].sample_count == by_model["STSBRoberta"].sample_count - 1


def test_an_embedding_without_its_invocation_is_named(demo_db):
    engine = sa.create_engine(f"sqlite:///{demo_db}")  # a plain connection, foreign keys off: how such a row gets in
    orphan = uuid.uuid4()
    with engine.begin() as conn:
        conn.execute(
            sa.insert(embedding).values(
                id=orphan, invocation_id=uuid.uuid4(), embedding_model="Nomic", vector=np.ones(768, dtype="<f4").tobytes()
            )
        )
    engine.dispose()
    digest = file_hash(demo_db)
    out = run_cli("cluster", "-d", str(demo_db), "--downsample", "3")
    assert out.returncode == 1 and str(orphan) in out.stderr and "invocation is missing" in out.stderr
    assert file_hash(demo_db) == digest
    out = run_cli("cluster", "-d", str(demo_db), "--downsample", "3", "--skip-bad-vectors")
    assert out.returncode == 0 and "invocation is missing" in out.stderr


def test_user_input_never_becomes_sql(demo_db):
    """A model *named* like an injection, present in the data, passes the Python checks: the queries must bind it."""
    evil = "Nomic'; DROP TABLE embedding; --"
    engine = make_engine(str(demo_db))
    with engine.begin() as conn:
        conn.execute(sa.update(embedding).where(embedding.c.embedding_model == "Nomic").values(embedding_model=evil))
        total = conn.execute(sa.select(sa.func.count()).select_from(embedding)).scalar_one()
    engine.dispose()
    out = run_cli("cluster", "-d", str(demo_db), "--downsample", "1", "--model", evil)
    assert out.returncode == 0, out.stderr
    engine = make_engine(str(demo_db))
    with engine.connect() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(embedding)).scalar_one() == total  # table intact
        models = conn.execute(sa.select(clustering_result.c.embedding_model)).scalars().all()
        stored = conn.execute(sa.select(sa.func.count()).select_from(embedding_cluster)).scalar_one()
    engine.dispose()
    sampled = len(expected_sample(str(demo_db), 1)[evil])
    assert models == [evil] and stored == sampled  # clustered under its own name, every one of its embeddings


def test_no_password_in_any_output(pg_url, tmp_path):
    """A password in the database URL appears in no command's output and in no file they write."""
    import sqlalchemy as sa

    secret = "s3cret-pw-4711"
    url = sa.make_url(pg_url).set(password=secret).render_as_string(hide_password=False)
    runs = [
        run_cli("demo-db", "--database-url", url, "--embeddings", "1285"),
        run_cli("cluster", "-d", url, "--downsample", "2"),
        run_cli("results", "-d", url),
        run_cli("report", "-d", url, "--output", str(tmp_path / "report")),
        run_cli("bench", "-d", url, "--downsample", "3", "--output-dir", str(tmp_path / "bench")),
        run_cli("cluster", "-d", url.replace("127.0.0.1", "127.0.0.1:1"), "--downsample", "2"),  # an error message
    ]
    assert [r.returncode for r in runs[:5]] == [0] * 5 and runs[5].returncode != 0
    for out in runs:
        assert secret not in out.stdout and secret not in out.stderr
    assert all("***" in out.stdout + out.stderr for out in runs[:2])  # the URL is shown, masked
    for path in tmp_path.rglob("*"):
        if path.is_file():
            assert secret not in path.read_text(errors="replace"), path


@pytest.mark.parametrize("where", ["sqlite", "postgres"])
def test_a_sql_error_names_its_phase(request, where):
    """A statement failing in a worker's fetch says "while fetching" (not "while counting"), and writes nothing."""
    if where == "sqlite":
        db = request.getfixturevalue("demo_db")
        target, digest = str(db), file_hash(db)
    else:
        target, digest = request.getfixturevalue("pg_demo"), None
    out = run_cli("cluster", "-d", target, "--downsample", "2", env={"CLUSTER_WORKERS_FAULT": "sql-error-in-fetch"})
    assert out.returncode == 1 and "Traceback" not in out.stderr
    assert "failed while fetching" in out.stderr and "cluster_workers_fault_no_such_table" in out.stderr
    assert "while counting" not in out.stderr
    if digest is not None:
        assert file_hash(db) == digest
    else:
        engine = make_engine(target)
        with engine.connect() as conn:
            assert not sa.inspect(conn).has_table("clusteringresult")
        engine.dispose()


def test_status_files_of_similar_model_names_never_collide(tmp_path):
    from cluster_workers.run.worker import status_file

    names = ["a/b", "a_b", "a b", "a:b", "A_b"]
    paths = {status_file(str(tmp_path), n) for n in names}
    assert len(paths) == len(names) and all(p.parent == tmp_path for p in paths)

"""Stopping and dying at the worst moments: inside the commit, on a full disk, on SIGTERM in every command,
on a locked PostgreSQL table. Afterwards the database holds all of the run or none of it, and the next run works."""

from __future__ import annotations

import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
import sqlalchemy as sa

from cluster_workers.db.connect import make_engine
from tests.helpers import ROOT, SLOW, run_cli, start_cli, wait_for_workers

FAST = ["--downsample", "3", "--workers", "2"]


def start(*args: str, env: dict | None = None) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "cluster_workers", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=ROOT,
        env={**os.environ, **(env or {})},
    )


def wait_for_line(proc: subprocess.Popen, needle: str, timeout: float = 120) -> list[str]:
    """Read stderr until a line holds ``needle``; returns the lines read."""
    lines: list[str] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        line = proc.stderr.readline()
        if not line and proc.poll() is not None:
            break
        lines.append(line)
        if needle in line:
            return lines
    pytest.fail(f"never saw {needle!r}; stderr was:\n{''.join(lines)}")


def result_rows(url: str) -> tuple[int, int]:
    """(clusteringresult rows, embeddingcluster rows); (0, 0) when the tables do not exist."""
    engine = make_engine(url)
    try:
        with engine.connect() as conn:
            if not sa.inspect(conn).has_table("clusteringresult"):
                return 0, 0
            return (
                conn.execute(sa.text("SELECT count(*) FROM clusteringresult")).scalar_one(),
                conn.execute(sa.text("SELECT count(*) FROM embeddingcluster")).scalar_one(),
            )
    finally:
        engine.dispose()


def integrity(path: Path) -> str:
    conn = sqlite3.connect(path)
    try:
        return conn.execute("PRAGMA integrity_check").fetchone()[0]
    finally:
        conn.close()


@pytest.fixture(params=["sqlite", "postgres"])
def any_db(request, tmp_path):
    """The small demo as a SQLite file or in a fresh PostgreSQL database: (url, path or None)."""
    if request.param == "sqlite":
        path = request.getfixturevalue("demo_db")
        return f"sqlite:///{path}", path
    return request.getfixturevalue("pg_demo"), None


# --- killed inside the commit --------------------------------------------------------------


def test_sigkill_inside_the_commit_leaves_nothing_and_the_next_run_works(any_db):
    url, path = any_db
    proc = start("cluster", "-d", url, *FAST, env={"CLUSTER_WORKERS_FAULT": "pause-in-commit=120"})
    wait_for_line(proc, "fault: pausing inside the commit")
    proc.kill()  # SIGKILL: no handler, no cleanup, mid-transaction
    proc.wait(timeout=30)
    assert result_rows(url) == (0, 0)  # nothing of the run
    left = path is not None and any(
        Path(f"{path}{s}").exists() and Path(f"{path}{s}").stat().st_size for s in ("-wal", "-journal")
    )
    if path is not None:
        assert integrity(path) == "ok"
    out = run_cli("cluster", "-d", url, *FAST)  # no manual cleanup
    assert out.returncode == 0, out.stderr
    results, memberships = result_rows(url)
    assert results == 4 and memberships > 0
    if path is not None:
        assert integrity(path) == "ok"
    if left:  # what the killed writer left is named in the log
        assert "rolls it back on open" in out.stderr or "applies only committed" in out.stderr


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_a_stop_inside_the_commit_rolls_back_and_says_so(any_db, sig):
    url, path = any_db
    proc = start("cluster", "-d", url, *FAST, env={"CLUSTER_WORKERS_FAULT": "pause-in-commit=120"})
    wait_for_line(proc, "fault: pausing inside the commit")
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert f"error: {sig.name}: interrupted during the commit; the transaction was rolled back, nothing was written" in err
    assert "Traceback" not in err
    assert result_rows(url) == (0, 0)
    if path is not None:
        assert integrity(path) == "ok"


def test_a_full_disk_during_the_commit_is_a_clear_error_and_writes_nothing(demo_db):
    url = f"sqlite:///{demo_db}"
    out = run_cli("cluster", "-d", str(demo_db), *FAST, env={"CLUSTER_WORKERS_FAULT": "disk-full-in-commit"})
    assert out.returncode == 1
    assert "database or disk is full" in out.stderr and "Traceback" not in out.stderr
    assert "during the commit" in out.stderr  # the phase is named
    assert result_rows(url) == (0, 0) and integrity(demo_db) == "ok"
    assert run_cli("cluster", "-d", str(demo_db), *FAST).returncode == 0


@pytest.fixture()
def small_filesystem(tmp_path):
    """A 1 MiB-larger-than-needed tmpfs (root only); skipped where mounting is not allowed."""
    mount = tmp_path / "small"
    mount.mkdir()
    yield mount
    subprocess.run(["umount", str(mount)], capture_output=True, check=False)


def test_a_real_full_filesystem_during_the_commit(demo_db, small_filesystem):
    size_kib = demo_db.stat().st_size // 1024 + 160  # the database fits; the commit's WAL does not
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size_kib}k", "tmpfs", str(small_filesystem)],
        capture_output=True,
        text=True,
        check=False,
    )
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs here (needs root): {mounted.stderr.strip()}")
    db = small_filesystem / "experiments.db"
    shutil.copy(demo_db, db)
    out = run_cli("cluster", "-d", str(db), "--downsample", "1", "--workers", "2")
    assert out.returncode == 1, out.stderr
    assert "disk is full" in out.stderr and "Traceback" not in out.stderr
    # read the database as SQLite would after a crash here: the main file *with* its WAL (committed frames in the
    # WAL count), copied where there is room for SQLite to open it
    check = small_filesystem.parent / "check"
    check.mkdir()
    for suffix in ("", "-wal"):
        if Path(f"{db}{suffix}").exists():
            shutil.copy(f"{db}{suffix}", check / f"experiments.db{suffix}")
    assert integrity(check / "experiments.db") == "ok" and result_rows(f"sqlite:///{check / 'experiments.db'}") == (0, 0)


# --- one way to stop, every command ------------------------------------------------------------


def test_bench_stops_on_sigterm_with_130(mid_db, tmp_path):
    proc = start_cli("bench", "-d", str(mid_db), *SLOW[:4], "--output-dir", str(tmp_path / "out"))
    workers = wait_for_workers(proc)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert "error: SIGTERM: interrupted while clustering" in err and "nothing was written" in err
    assert not any(p.is_running() and p.status() != "zombie" for p in workers)
    assert result_rows(f"sqlite:///{mid_db}") == (0, 0)


@pytest.mark.parametrize("target", ["sqlite", "postgres"])
def test_demo_db_stops_on_sigterm_with_130_and_keeps_nothing(target, tmp_path, request):
    url = str(tmp_path / "big.db") if target == "sqlite" else request.getfixturevalue("pg_url")
    proc = (
        start("demo-db", url, "--embeddings", "2000000")
        if target == "sqlite"
        else start("demo-db", "--database-url", url, "--embeddings", "2000000")
    )
    wait_for_line(proc, "demo-db:", timeout=120)  # the first progress line: rows are being written
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    assert "error: SIGTERM: interrupted while building the database; nothing was kept" in err
    if target == "sqlite":
        assert list(tmp_path.iterdir()) == []
    else:
        engine = make_engine(url)
        with engine.connect() as conn:
            assert "embedding" not in sa.inspect(conn).get_table_names()
        engine.dispose()


def test_a_stop_during_a_long_sqlite_statement_aborts_it(demo_db):
    """The progress handler: a stop request ends a statement in progress instead of waiting for it."""
    from cluster_workers import stopping
    from cluster_workers.db.connect import read_with
    from cluster_workers.errors import Interrupted

    def endless(conn):  # noqa: ANN001, ANN202 - a statement that would run for minutes
        import threading

        threading.Timer(0.5, stopping.request).start()
        return conn.execute(
            sa.text("WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c) SELECT count(*) FROM c")
        ).all()

    started = time.monotonic()
    try:
        with pytest.raises(Interrupted, match="SIGTERM: interrupted while reading the database"):
            read_with(str(demo_db), 5.0, endless)
    finally:
        stopping.reset()
    assert time.monotonic() - started < 10


# --- bounded waits on PostgreSQL ------------------------------------------------------------------


def test_a_locked_postgres_table_is_a_bounded_wait_then_a_clear_error(pg_demo):
    holder = make_engine(pg_demo)
    with holder.connect() as conn:
        conn.execute(sa.text("LOCK TABLE embedding IN ACCESS EXCLUSIVE MODE"))  # held until this block ends
        started = time.monotonic()
        out = run_cli("cluster", "-d", pg_demo, *FAST, "--busy-timeout", "1")
        elapsed = time.monotonic() - started
        conn.rollback()
    holder.dispose()
    assert out.returncode == 1, out.stderr
    assert "is locked by another session" in out.stderr and "lock timeout" in out.stderr
    assert elapsed < 30
    assert result_rows(pg_demo) == (0, 0)


def test_a_statement_past_statement_timeout_is_cancelled_with_a_clear_error(pg_demo):
    out = run_cli("cluster", "-d", pg_demo, *FAST, env={"CLUSTER_WORKERS_STATEMENT_TIMEOUT": "0.001"})
    assert out.returncode == 1
    assert "ran past statement_timeout" in out.stderr and "Traceback" not in out.stderr
    assert result_rows(pg_demo) == (0, 0)


def test_a_stale_postgres_run_lock_is_cleared_with_a_log_line(pg_demo):
    """A killed coordinator whose server session lives on (its socket held by a forked child)."""
    code = (
        "import os, sys, time\n"
        "from cluster_workers.db.lock import run_lock\n"
        "with run_lock(sys.argv[1]):\n"
        "    if os.fork() == 0:\n"
        "        time.sleep(30); os._exit(0)\n"
        "    print('locked', flush=True)\n"
        "    time.sleep(60)\n"
    )
    holder = subprocess.Popen([sys.executable, "-c", code, pg_demo], stdout=subprocess.PIPE, text=True, cwd=ROOT)
    assert holder.stdout.readline().strip() == "locked"
    holder.kill()
    holder.wait(timeout=10)
    out = run_cli("cluster", "-d", pg_demo, *FAST)
    assert out.returncode == 0, out.stderr
    assert "cleared a stale run lock" in out.stderr
    assert result_rows(pg_demo)[0] == 4

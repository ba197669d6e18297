"""What a newcomer meets first: results that depend on others are protected, a database that cannot be written
is refused before any work, and output goes where and in the format the user names. Real files, the real CLI."""

from __future__ import annotations

import csv
import io
import json
import shutil
import subprocess
import time

import pytest

from tests.helpers import file_hash, ok, ours, run_cli


def _errors(out) -> list[str]:  # type: ignore[no-untyped-def]
    return [line for line in out.stderr.splitlines() if line.startswith("error")]


def test_a_result_others_were_made_from_is_protected(any_db):
    db = str(any_db)
    ok("cluster", "-d", db, "--downsample", "3")
    before = {r["id"] for r in ours(any_db)}
    source = ours(any_db)[0]
    ok("assign", source["id"], "-d", db)
    (assigned,) = [r for r in ours(any_db) if r["id"] not in before]
    digest = file_hash(any_db)
    for command in (("delete", source["id"], "--yes"), ("cluster", "--downsample", "3", "--force")):
        out = run_cli(*command, "-d", db)
        assert out.returncode == 1 and len(_errors(out)) == 1, out.stderr
        assert assigned["id"][:8] in _errors(out)[0] and "--cascade" in _errors(out)[0], out.stderr
        assert file_hash(any_db) == digest  # refused before anything was clustered or written
    out = ok("delete", source["id"], "--yes", "--cascade", "-d", db)
    assert source["id"] in out and assigned["id"] in out
    assert {r["id"] for r in ours(any_db)} == before - {source["id"]}


def test_cluster_force_cascade_replaces_the_source_and_removes_what_was_made_from_it(any_db):
    db = str(any_db)
    ok("cluster", "-d", db, "--downsample", "3")
    sources = {r["id"] for r in ours(any_db)}
    ok("recut", next(iter(sources)), "-d", db, "--min-cluster-size", "7")
    ok("cluster", "-d", db, "--downsample", "3", "--force", "--cascade")
    fresh = {r["id"] for r in ours(any_db)}
    assert len(fresh) == len(sources) and not fresh & sources  # the sources replaced, the recut from one gone with it


def test_a_read_only_database_is_refused_before_any_work(demo_db, tmp_path):
    if shutil.which("chattr") is None:
        pytest.skip("chattr is not installed: no immutable file to test with")
    made = subprocess.run(["chattr", "+i", str(demo_db)], capture_output=True, text=True)
    if made.returncode:
        pytest.skip(f"this file system cannot make a file immutable: {made.stderr.strip()}")
    try:
        digest = file_hash(demo_db)
        started = time.monotonic()
        out = run_cli("cluster", "-d", str(demo_db), "--downsample", "1")
        took = time.monotonic() - started
    finally:
        subprocess.run(["chattr", "-i", str(demo_db)], check=True)
    assert out.returncode == 1 and len(_errors(out)) == 1, out.stderr
    assert "readonly" in _errors(out)[0] and "before any work" in _errors(out)[0]
    assert "worker" not in out.stderr.lower() and took < 15, (took, out.stderr)  # no worker started; a bound, not a timing
    assert file_hash(demo_db) == digest
    assert sorted(p.name for p in demo_db.parent.iterdir() if p.name.startswith(demo_db.name)) == [demo_db.name]


def test_export_writes_where_and_as_the_user_names(demo_db, tmp_path):
    db = str(demo_db)
    ok("cluster", "-d", db, "--downsample", "3")
    rid = ours(demo_db)[0]["id"]
    out = run_cli("export", rid, "-d", db, "-o", "-")
    assert out.returncode == 0, out.stderr
    rows = list(csv.DictReader(io.StringIO(out.stdout)))
    assert len(rows) == sum(r["sample_count"] for r in ours(demo_db) if r["id"] == rid)
    assert not (tmp_path / "-").exists()
    ok("export", rid, "-d", db, "-o", str(tmp_path / "m.json"))
    lines = (tmp_path / "m.json").read_text().splitlines()
    assert len(lines) == len(rows) and json.loads(lines[0])["embedding_id"] == rows[0]["embedding_id"]
    ok("export", rid, "-d", db, "-o", str(tmp_path / "m.data"), "--format", "csv")
    assert (tmp_path / "m.data").read_text().splitlines()[0].startswith("embedding_id,")
    refused = run_cli("export", rid, "-d", db, "-o", str(tmp_path / "m.txt"))
    assert refused.returncode == 1 and ".csv, .parquet, .json" in refused.stderr and not (tmp_path / "m.txt").exists()
    ok("report", "-d", db, "-o", str(tmp_path / "mine.html"))
    assert (tmp_path / "mine.html").is_file() and "<html" in (tmp_path / "mine.html").read_text()[:500].lower()


def test_recut_force_does_not_orphan_what_was_made_from_the_result_it_replaces(demo_db):
    db = str(demo_db)
    ok("cluster", "-d", db, "--downsample", "3", "--model", "Nomic")
    (source,) = ours(demo_db)
    ok("recut", source["id"], "-d", db, "--min-cluster-size", "7")
    (cut,) = [r for r in ours(demo_db) if r["id"] != source["id"]]
    ok("assign", cut["id"], "-d", db)
    (assigned,) = [r for r in ours(demo_db) if r["id"] not in (source["id"], cut["id"])]
    digest = file_hash(demo_db)
    out = run_cli("recut", source["id"], "-d", db, "--min-cluster-size", "7", "--force")
    assert out.returncode == 1 and len(_errors(out)) == 1 and assigned["id"][:8] in _errors(out)[0], out.stderr
    assert "would point at nothing" in _errors(out)[0] and "delete them first" in _errors(out)[0]
    assert file_hash(demo_db) == digest  # the transaction rolled back

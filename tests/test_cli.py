"""The command line as a user meets it: real subprocesses, real database files."""

from __future__ import annotations

import json

import pytest
import sqlalchemy as sa

from cluster_workers import __version__
from cluster_workers.db.connect import make_engine
from tests.helpers import file_hash, run_cli
from tests.legacy_tables import clustering_result, embedding


def test_help_and_version():
    out = run_cli("--help")
    assert out.returncode == 0 and "cluster" in out.stdout and "demo-db" in out.stdout
    out = run_cli("--version")
    assert out.returncode == 0 and __version__ in out.stdout
    out = run_cli("cluster", "--help")
    assert out.returncode == 0 and "--downsample" in out.stdout and "--force" in out.stdout


@pytest.mark.parametrize("bad", ["0", "-3", "abc", "2.5"])
def test_bad_downsample_is_a_usage_error(demo_db, bad):
    digest = file_hash(demo_db)
    out = run_cli("cluster", "--database-url", str(demo_db), "--downsample", bad)
    assert out.returncode == 2
    assert "downsample" in out.stderr.lower()
    assert file_hash(demo_db) == digest


def test_negative_epsilon_and_unknown_option_are_usage_errors(demo_db):
    assert run_cli("cluster", "-d", str(demo_db), "--epsilon", "-1").returncode == 2
    assert run_cli("cluster", "-d", str(demo_db), "--no-such-option").returncode == 2


def test_cluster_then_results_and_show(demo_db):
    out = run_cli("cluster", "--db-path", str(demo_db), "--downsample", "3", "--workers", "2")  # the users' -d/--db-path
    assert out.returncode == 0, out.stderr
    assert "skip" not in out.stderr and "committed" in out.stderr
    assert "clustered 4 model(s), skipped 0" in out.stdout  # Dummy too: the users' minimum is 2 sampled embeddings

    listing = run_cli("results", "-d", str(demo_db), "--json")
    assert listing.returncode == 0, listing.stderr
    rows = json.loads(listing.stdout)
    assert {r["model"] for r in rows} == {"STSBMpnet", "STSBRoberta", "Nomic", "Dummy"}
    nomic = next(r for r in rows if r["model"] == "Nomic")
    params = nomic["parameters"]
    assert params["downsample"] == 3 and nomic["sample_count"] == params["sample_count"]
    # the users' defaults, their min_samples convention, and what the engine was given
    users = max(2, int(params["sample_count"] * 0.001))
    assert (params["min_cluster_size"], params["min_samples"]) == (users, users)
    assert params["cluster_selection_epsilon"] == 0.5 and params["allow_single_cluster"] is True
    assert params["engine_parameters"] == {
        "min_cluster_size": users,
        "min_samples": users - 1,
        "cluster_selection_epsilon": 0.5,
        "allow_single_cluster": True,
        "cluster_selection_method": "eom",
    }
    assert params["medoid"]["rule"] == "weighted" and params["fidelity"]["exactly_equal"] == 1.0
    engine = make_engine(str(demo_db))
    with engine.connect() as conn:
        created = conn.execute(sa.select(clustering_result.c.created_at).order_by(clustering_result.c.created_at)).scalars().all()
    engine.dispose()
    assert len(created) == len(set(created)) == 4  # distinct, so "latest result" lookups are well defined

    table = run_cli("results", "-d", str(demo_db))
    assert table.returncode == 0 and "Nomic" in table.stdout and "outliers" in table.stdout

    shown = run_cli("show", nomic["id"][:8], "-d", str(demo_db), "--json", "--limit", "0")
    assert shown.returncode == 0, shown.stderr
    detail = json.loads(shown.stdout)
    assert len(detail["clusters"]) == nomic["clusters"]
    assert sum(c["size"] for c in detail["clusters"]) + detail["outliers"] == nomic["sample_count"]
    assert all(c["medoid_text"] for c in detail["clusters"])
    text = run_cli("show", nomic["id"], "-d", str(demo_db))
    assert text.returncode == 0 and "medoid text" in text.stdout


def test_environment_supplies_the_database_and_command_line_wins(demo_db, tmp_path):
    out = run_cli("results", "--json", env={"CLUSTER_WORKERS_DATABASE_URL": str(demo_db)})
    assert out.returncode == 0 and json.loads(out.stdout) == []
    out = run_cli("results", "-d", str(tmp_path / "missing.db"), env={"CLUSTER_WORKERS_DATABASE_URL": str(demo_db)})
    assert out.returncode == 1 and "not found" in out.stderr


def test_failing_worker_exits_non_zero_and_leaves_the_file_untouched(demo_db):
    engine = make_engine(str(demo_db))
    with engine.begin() as conn:
        bad = conn.execute(sa.select(embedding.c.id).where(embedding.c.embedding_model == "STSBMpnet").limit(1)).scalar_one()
        conn.execute(sa.update(embedding).where(embedding.c.id == bad).values(vector=b"\x01\x02\x03\x04" * 700))
    engine.dispose()
    digest = file_hash(demo_db)
    out = run_cli("cluster", "-d", str(demo_db), "--downsample", "1")
    assert out.returncode == 1
    assert "STSBMpnet" in out.stderr and str(bad) in out.stderr and "2800 bytes" in out.stderr
    assert "Traceback" not in out.stderr
    assert file_hash(demo_db) == digest


@pytest.mark.parametrize(
    "setup, message",
    [
        (lambda p: p.write_text("hello, not a database"), "not a SQLite database"),
        (lambda p: None, "not found"),
        (lambda p: p.write_bytes(b""), "missing table"),
    ],
)
def test_bad_database_file(tmp_path, setup, message):
    path = tmp_path / "x.db"
    setup(path)
    out = run_cli("cluster", "-d", str(path), "--downsample", "1")
    assert out.returncode == 1
    assert message in out.stderr and "Traceback" not in out.stderr


def test_unknown_model_name(demo_db):
    digest = file_hash(demo_db)
    out = run_cli("cluster", "-d", str(demo_db), "--downsample", "1", "--model", "NoSuchModel")
    assert out.returncode == 2 and "NoSuchModel" in out.stderr and "STSBMpnet" in out.stderr
    assert file_hash(demo_db) == digest


def test_demo_db_is_deterministic_and_refuses_to_overwrite(tmp_path):
    a, b = tmp_path / "a.db", tmp_path / "b.db"
    assert run_cli("demo-db", str(a), "--embeddings", "400", "--seed", "3").returncode == 0
    assert run_cli("demo-db", str(b), "--embeddings", "400", "--seed", "3").returncode == 0
    dump = lambda p: [tuple(r) for r in make_engine(str(p)).connect().execute(sa.select(embedding).order_by(embedding.c.id))]  # noqa: E731
    assert dump(a) == dump(b)
    again = run_cli("demo-db", str(a), "--embeddings", "400")
    assert again.returncode == 1 and "exists" in again.stderr

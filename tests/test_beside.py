"""Beside the experiment application without breaking it (current schema).

After every writing command of ours the application's tables are byte-identical, its loader's pivot
(one label per embedding and layer) holds, and its own deletes -- a model's clustering, memberships one
by one then the results; its newest experiment, newest rows first -- succeed with foreign keys on.
``publish`` writes our result in its format; a database 0.2.0 wrote is repaired by the first write.
Real SQLite files (and the PostgreSQL server), the real CLI in subprocesses, real worker processes.
"""

from __future__ import annotations

import gzip
import json
import shutil
import sqlite3
from collections import defaultdict
from pathlib import Path

import pytest
import sqlalchemy as sa

from cluster_workers.tools.demo import build_demo_database
from tests.helpers import ROOT, application_rows, file_hash, kill_while_paused, memberships, ok, ours, partition, run_cli

V020 = ROOT / "tests" / "data" / "v020_current.db.gz"


def _connect(db) -> sqlite3.Connection:
    con = sqlite3.connect(db)
    con.execute("PRAGMA foreign_keys = ON")  # the application's SQLite adapter's default
    return con


def pivot(db, model: str) -> dict[int, dict[str, str | None]]:
    """The application's loader's rule: per layer, embedding -> medoid, from its two tables joined on the result,
    grouped by layer alone; it fails (as theirs does) when an embedding has two labels in one layer."""
    con = _connect(db)
    layers: dict[int, dict[str, str | None]] = defaultdict(dict)
    for layer, emb, medoid in con.execute(
        "SELECT r.layer, c.embedding_id, c.medoid_embedding_id FROM embedding_clusters c "
        "JOIN clustering_results r ON r.id = c.clustering_result_id WHERE r.embedding_model = ?",
        (model,),
    ):
        assert emb not in layers[layer], f"found multiple elements in the same group: {emb} twice in layer {layer}"
        layers[layer][emb] = medoid
    con.close()
    return dict(layers)


def models(db) -> list[str]:
    con = sqlite3.connect(db)
    found = [m for (m,) in con.execute("SELECT DISTINCT embedding_model FROM embeddings ORDER BY 1")]
    con.close()
    return found


def delete_model_their_way(db, model: str) -> int:
    """``mix cluster.recompute``'s delete: every result of the model, each after its memberships one by one."""
    con = _connect(db)
    deleted = 0
    for (rid,) in con.execute("SELECT id FROM clustering_results WHERE embedding_model = ?", (model,)).fetchall():
        for (mid,) in con.execute("SELECT id FROM embedding_clusters WHERE clustering_result_id = ?", (rid,)).fetchall():
            con.execute("DELETE FROM embedding_clusters WHERE id = ?", (mid,))
        con.execute("DELETE FROM clustering_results WHERE id = ?", (rid,))
        deleted += 1
    con.commit()
    con.close()
    return deleted


def delete_newest_experiment_their_way(db) -> int:
    """The application's experiment delete: embeddings, invocations, runs, then the experiment, newest first."""
    con = _connect(db)
    (experiment,) = con.execute("SELECT id FROM experiments ORDER BY inserted_at DESC, id DESC LIMIT 1").fetchone()
    runs = "SELECT id FROM runs WHERE experiment_id = ?"
    invocations = f"SELECT id FROM invocations WHERE run_id IN ({runs})"
    gone = con.execute(f"SELECT count(*) FROM embeddings WHERE invocation_id IN ({invocations})", (experiment,)).fetchone()[0]
    con.execute(f"DELETE FROM embeddings WHERE invocation_id IN ({invocations})", (experiment,))
    con.execute(f"DELETE FROM invocations WHERE run_id IN ({runs})", (experiment,))
    con.execute("DELETE FROM runs WHERE experiment_id = ?", (experiment,))
    con.execute("DELETE FROM experiments WHERE id = ?", (experiment,))
    con.commit()
    assert con.execute("PRAGMA foreign_key_check").fetchall() == []
    con.close()
    return gone


def _their_deletes_succeed(db, tmp_path: Path, name: str) -> None:
    """On a copy: every model's clustering deleted the application's way, then its newest experiment (its own
    clusterings name medoids in every experiment, so it clears them first, as its recompute does)."""
    copy = tmp_path / f"{name}.db"
    shutil.copy(db, copy)
    for model in models(copy):
        delete_model_their_way(copy, model)
        assert pivot(copy, model) == {}
    assert delete_newest_experiment_their_way(copy) > 0


@pytest.mark.slow
def test_every_writing_command_leaves_the_application_as_it_was(current_db, tmp_path):
    db = str(current_db)
    guard = application_rows(current_db)
    theirs = pivot(current_db, "Nomic256")
    assert sorted(theirs) == [0, 1, 2]

    def unchanged(after: str) -> None:
        assert application_rows(current_db) == guard, f"the application's rows changed after {after}"
        assert pivot(current_db, "Nomic256") == theirs, after

    steps = [
        ("cluster", "-d", db, "--downsample", "2"),
        ("cluster", "-d", db, "--downsample", "2", "--engine", "evoc"),
        ("recut", "RESULT", "-d", db, "--min-cluster-size", "8"),
        ("assign", "RESULT", "-d", db),
        ("stability", "-d", db, "--downsample", "4", "--offsets", "2", "--keep"),
        ("delete", "RESULT", "-d", db, "--yes"),
        ("bench", "-d", db, "--downsample", "4", "--output-dir", str(tmp_path / "bench")),
        ("index", "-d", db),
    ]
    for step in steps:
        hdbscan = next(r for r in ours(current_db) if r["algorithm"] == "hdbscan") if "RESULT" in step else None
        ok(*[hdbscan["id"] if a == "RESULT" else a for a in step])
        unchanged(" ".join(step[:1]))
    _their_deletes_succeed(current_db, tmp_path, "after")
    # the application deletes its newest experiment under our results: they are listed with what is gone, and work
    before = {r["id"]: r for r in ours(current_db)}
    delete_model_their_way(current_db, "Nomic256")
    gone = delete_newest_experiment_their_way(current_db)
    after = {r["id"]: r for r in ours(current_db)}
    assert set(after) == set(before) and any(r["gone"] for r in after.values())
    assert sum(r["gone"] for r in after.values()) <= gone * len(after)
    assert "gone" in ok("results", "-d", db)
    mine = next(r for r in after.values() if r["algorithm"] == "hdbscan" and r["gone"])
    for command in (
        ("show", mine["id"]),
        ("export", mine["id"], "-o", str(tmp_path / "x.csv")),
        ("trajectories", mine["id"]),
        ("kinetics", mine["id"]),
        ("density", mine["id"]),
        ("recut", mine["id"], "--min-cluster-size", "9"),
        ("compare", "-r", mine["id"], "-r", next(r["id"] for r in after.values() if r["id"] != mine["id"])),
    ):
        out = run_cli(*command, "-d", db)
        assert out.returncode in (0, 1) and "Traceback" not in out.stderr, (command, out.stderr[-1500:])
        if out.returncode:
            assert len([line for line in out.stderr.splitlines() if line.startswith("error")]) == 1, out.stderr


@pytest.mark.slow
def test_publish_writes_our_partition_in_the_applications_format(tmp_path):
    db = tmp_path / "two.db"
    build_demo_database(str(db), embeddings=1_200, seed=4, schema="current", models=("Nomic256", "MiniLM"), dim=64)
    ok("cluster", "-d", str(db), "--downsample", "1", "--model", "Nomic256")
    (mine,) = ours(db)
    other = pivot(db, "MiniLM")

    def other_model_rows() -> str:
        con = sqlite3.connect(db)
        rows = con.execute(
            "SELECT r.*, c.* FROM clustering_results r JOIN embedding_clusters c ON c.clustering_result_id = r.id "
            "WHERE r.embedding_model = 'MiniLM' ORDER BY c.id"
        ).fetchall()
        con.close()
        return repr(rows)

    guard = other_model_rows()
    plan = json.loads(ok("publish", mine["id"], "-d", str(db), "--dry-run", "--json"))
    assert plan["covered"] == plan["embeddings"] == mine["sample_count"] and len(plan["deleted"]) == 3
    ok("publish", mine["id"], "-d", str(db), "--yes")
    published = pivot(db, "Nomic256")
    assert sorted(published) == [0]
    assert published[0] == memberships(db, mine["id"])  # embedding by embedding, medoid by medoid
    con = sqlite3.connect(db)
    ((algorithm, params),) = con.execute(
        "SELECT algorithm, parameters FROM clustering_results WHERE embedding_model = 'Nomic256'"
    )
    con.close()
    params = json.loads(params)
    assert algorithm == "hdbscan" and "run_key" not in params and params["published_from"]["result_id"] == mine["id"]
    assert other_model_rows() == guard and pivot(db, "MiniLM") == other
    assert [r["id"] for r in ours(db)] == [mine["id"]]  # our copy stays
    # several layers cut from the tree, finest first: each the partition a recut with that min_cluster_size writes
    ok("publish", mine["id"], "-d", str(db), "--yes", "--layers", "12,4")
    layered = pivot(db, "Nomic256")
    assert sorted(layered) == [0, 1]
    for layer, size in ((0, 4), (1, 12)):
        ok("recut", mine["id"], "-d", str(db), "--min-cluster-size", str(size))
        cut = next(
            r
            for r in ours(db)
            if r["parameters"].get("recut", {}).get("from") == mine["id"] and r["parameters"]["min_cluster_size"] == size
        )
        assert partition(layered[layer]) == partition(memberships(db, cut["id"]))
    _their_deletes_succeed(db, tmp_path, "published")
    # an evoc run: its layers 0..L-1 as the application's evoc layers
    ok("cluster", "-d", str(db), "--downsample", "1", "--engine", "evoc", "--model", "Nomic256")
    evoc = sorted((r for r in ours(db) if r["algorithm"] == "evoc"), key=lambda r: r["layer"])
    ok("publish", evoc[0]["id"], "-d", str(db), "--yes")
    layered = pivot(db, "Nomic256")
    assert sorted(layered) == [r["layer"] for r in evoc]
    for r in evoc:
        assert layered[r["layer"]] == memberships(db, r["id"])
    assert other_model_rows() == guard


def test_publish_refuses_a_partial_result_in_one_line(current_db):
    ok("cluster", "-d", str(current_db), "--downsample", "3")
    (mine,) = ours(current_db)
    digest = file_hash(current_db)
    out = run_cli("publish", mine["id"], "-d", str(current_db), "--yes")
    errors = [line for line in out.stderr.splitlines() if line.startswith("error")]
    assert out.returncode == 1 and len(errors) == 1, out.stderr
    assert "--downsample 1" in errors[0] and f"assign {mine['id'][:8]}" in errors[0] and "--partial" in errors[0]
    assert file_hash(current_db) == digest
    guard = application_rows(current_db)
    ok("publish", mine["id"], "-d", str(current_db), "--yes", "--partial")
    assert application_rows(current_db) != guard
    assert pivot(current_db, "Nomic256")[0] == memberships(current_db, mine["id"])


def test_a_publish_killed_inside_its_transaction_leaves_their_rows(current_db):
    ok("cluster", "-d", str(current_db), "--downsample", "1")
    (mine,) = ours(current_db)
    guard = application_rows(current_db)
    # SIGKILL after the application's rows were deleted and the first layer written, uncommitted
    kill_while_paused(
        ["publish", mine["id"], "-d", str(current_db), "--yes"], "pause-in-publish=120", "fault: pausing inside publish"
    )
    assert application_rows(current_db) == guard
    assert [r["id"] for r in ours(current_db)] == [mine["id"]]


def _v020(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "v020.db"
    with gzip.open(V020) as src, open(path, "wb") as dst:
        shutil.copyfileobj(src, dst)
    return path


def _v020_state(db) -> tuple[dict[str, dict], dict[str, dict], str]:
    """What 0.2.0 left, read straight from the file: our results (run key) and their memberships, and a digest of
    every row that is the application's own."""
    con = sqlite3.connect(db)
    ids = [rid for rid, params in con.execute("SELECT id, parameters FROM clustering_results") if "run_key" in json.loads(params)]
    rows = {
        rid: con.execute(
            "SELECT id, embedding_model, algorithm, parameters, layer, started_at, completed_at, inserted_at "
            "FROM clustering_results WHERE id = ?",
            (rid,),
        ).fetchone()
        for rid in ids
    }
    con.close()
    members = {rid: memberships(db, rid) for rid in ids}
    return rows, members, _application_own_rows(db)


def _application_own_rows(db) -> str:
    con = sqlite3.connect(db)
    digest = []
    for table in ("experiments", "runs", "invocations", "embeddings", "lyapunov_results", "persistence_diagrams"):
        digest.append(con.execute(f"SELECT * FROM {table} ORDER BY id").fetchall())
    theirs = [
        rid
        for rid, params in con.execute("SELECT id, parameters FROM clustering_results ORDER BY id")
        if "run_key" not in json.loads(params)
    ]
    for rid in theirs:
        digest.append(con.execute("SELECT * FROM clustering_results WHERE id = ?", (rid,)).fetchall())
        digest.append(
            con.execute("SELECT * FROM embedding_clusters WHERE clustering_result_id = ? ORDER BY id", (rid,)).fetchall()
        )
    con.close()
    return repr(digest)


def test_a_database_0_2_0_wrote_is_read_as_it_is_and_repaired_by_the_first_write(tmp_path):
    db = _v020(tmp_path)
    rows, members, theirs = _v020_state(db)
    assert len(rows) == 6 and len(pivot_rows := pivot_counts(db)) and max(pivot_rows.values()) > 1  # 0.2.0's double labels
    listed = {r["id"]: r for r in ours(db)}  # read-only commands work before the repair
    assert set(listed) == set(rows)
    hdbscan = next(rid for rid, row in rows.items() if row[2].startswith("hdbscan") and "assigned_from" not in row[3])
    ok("show", hdbscan, "-d", str(db))
    ok("density", hdbscan, "-d", str(db))
    digest = file_hash(db)
    ok("results", "-d", str(db))
    assert file_hash(db) == digest  # reading repaired nothing
    # the first write repairs: recut (a write of ours) on 0.2.0's result
    out = run_cli("recut", hdbscan, "-d", str(db), "--min-cluster-size", "6")
    assert out.returncode == 0 and "repaired a database written by cluster-workers 0.2.0: moved 6 result(s)" in out.stderr
    assert _application_own_rows(db) == theirs
    con = _connect(db)
    tables = {name for (name,) in con.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    assert not tables & {"clusteringtree", "clusteringlayer", "clusteringassignment"}
    moved = {
        rid: con.execute(
            "SELECT id, embedding_model, algorithm, parameters, layer, started_at, completed_at, inserted_at "
            "FROM cluster_workers_results WHERE id = ?",
            (rid,),
        ).fetchone()
        for rid in rows
    }
    assert con.execute("SELECT count(*) FROM clustering_results WHERE parameters LIKE '%run_key%'").fetchone() == (0,)
    assert con.execute("PRAGMA foreign_key_check").fetchall() == []
    con.close()
    assert moved == rows  # the same ids, parameters and times, byte for byte
    assert {rid: memberships(db, rid) for rid in rows} == members
    assert set(rows) < {r["id"] for r in ours(db)}
    assert max(pivot_counts(db).values()) == 1  # the application's loader works again
    ok("density", hdbscan, "-d", str(db))  # the trees moved with their results
    _their_deletes_succeed(db, tmp_path, "repaired")


def pivot_counts(db) -> dict[tuple[str, int], int]:
    con = sqlite3.connect(db)
    found = {
        (e, layer): n
        for e, layer, n in con.execute(
            "SELECT c.embedding_id, r.layer, count(*) FROM embedding_clusters c JOIN clustering_results r ON r.id = c.clustering_result_id "
            "GROUP BY c.embedding_id, r.layer"
        )
    }
    con.close()
    return found


def test_the_repair_command_and_a_delete_before_it(tmp_path):
    db = _v020(tmp_path)
    rows, _, theirs = _v020_state(db)
    out = run_cli("repair", "-d", str(db))
    assert out.returncode == 0 and out.stdout.startswith("repaired: moved 6 result(s)"), out.stdout + out.stderr
    assert ok("repair", "-d", str(db)).strip() == "nothing to repair"
    assert _application_own_rows(db) == theirs
    # a fresh copy: the first write is a delete of one of 0.2.0's results, named by the id 0.2.0 printed
    db2 = _v020(tmp_path / "second")
    victim = next(rid for rid, row in rows.items() if "assigned_from" in json.loads(row[3]))  # nothing was made from it
    ok("delete", victim, "-d", str(db2), "--yes")
    assert set(r["id"] for r in ours(db2)) == set(rows) - {victim}
    assert _application_own_rows(db2) == theirs


@pytest.mark.postgres
def test_beside_the_application_on_postgres(pg_url, tmp_path):
    build_demo_database(pg_url, embeddings=900, seed=6, schema="current")
    engine = sa.create_engine(pg_url)

    def their_rows() -> str:
        with engine.connect() as conn:
            return repr(
                [
                    conn.execute(sa.text(f"SELECT * FROM {t} ORDER BY id")).all()
                    for t in ("clustering_results", "embedding_clusters", "embeddings", "runs", "experiments")
                ]
            )

    guard = their_rows()
    ok("cluster", "-d", pg_url, "--downsample", "1")
    ok("cluster", "-d", pg_url, "--downsample", "2", "--engine", "evoc")
    assert their_rows() == guard
    with engine.connect() as conn:
        fks = conn.execute(
            sa.text(
                "SELECT tc.table_name, ccu.table_name FROM information_schema.table_constraints tc JOIN "
                "information_schema.constraint_column_usage ccu ON ccu.constraint_name = tc.constraint_name "
                "WHERE tc.constraint_type = 'FOREIGN KEY' AND tc.table_name LIKE 'cluster_workers_%'"
            )
        ).all()
    assert fks and all(target.startswith("cluster_workers_") for _, target in fks)
    with engine.begin() as conn:  # their recompute's delete of a model, on their tables alone
        for (rid,) in conn.execute(sa.text("SELECT id FROM clustering_results")).all():
            conn.execute(sa.text("DELETE FROM embedding_clusters WHERE clustering_result_id = :r"), {"r": rid})
            conn.execute(sa.text("DELETE FROM clustering_results WHERE id = :r"), {"r": rid})
    hdbscan = next(r for r in ours(pg_url) if r["algorithm"] == "hdbscan")
    ok("publish", hdbscan["id"], "-d", pg_url, "--yes")
    with engine.connect() as conn:
        rows = conn.execute(
            sa.text(
                "SELECT c.embedding_id, c.medoid_embedding_id, r.layer, r.algorithm FROM embedding_clusters c "
                "JOIN clustering_results r ON r.id = c.clustering_result_id"
            )
        ).all()
    engine.dispose()
    assert {r[3] for r in rows} == {"hdbscan"} and {r[2] for r in rows} == {0}
    assert {str(e): None if m is None else str(m) for e, m, _, _ in rows} == _pg_memberships(pg_url, hdbscan["id"])


def _pg_memberships(url: str, result_id: str) -> dict[str, str | None]:
    engine = sa.create_engine(url)
    with engine.connect() as conn:
        rows = conn.execute(
            sa.text("SELECT embedding_id, medoid_embedding_id FROM cluster_workers_memberships WHERE clustering_result_id = :r"),
            {"r": result_id},
        ).all()
    engine.dispose()
    return {str(e): None if m is None else str(m) for e, m in rows}


@pytest.mark.postgres
def test_a_database_0_2_0_wrote_on_postgres_is_repaired(pg_url, tmp_path):
    """0.2.0's database copied row for row onto the PostgreSQL server (its own DDL: the application's migrations and
    0.2.0's side tables with their foreign keys into clustering_results), then repaired there."""
    from cluster_workers.tools.application_schema import APPLICATION_TABLES, create_application_tables

    source = _v020(tmp_path)
    rows, members, _ = _v020_state(source)
    src = sqlite3.connect(source)
    former = ("clusteringtree", "clusteringassignment", "clusteringlayer")
    engine = sa.create_engine(pg_url)
    with engine.begin() as conn:
        create_application_tables(conn)
        for name in former:
            (ddl,) = src.execute("SELECT sql FROM sqlite_master WHERE name = ?", (name,)).fetchone()
            conn.exec_driver_sql(ddl.replace("BLOB", "BYTEA"))
        for table in (*APPLICATION_TABLES, *former):
            names = [row[1] for row in src.execute(f'PRAGMA table_info("{table}")')]
            data = src.execute(f'SELECT {", ".join(names)} FROM "{table}"').fetchall()
            if data:
                conn.connection.driver_connection.cursor().executemany(
                    f'INSERT INTO "{table}" ({", ".join(names)}) VALUES ({", ".join(["%s"] * len(names))})', data
                )
    src.close()

    def application_rows_pg() -> str:
        with engine.connect() as conn:
            own = [r for (r,) in conn.execute(sa.text("SELECT id FROM clustering_results WHERE parameters NOT LIKE '%run_key%'"))]
            return repr(
                [conn.execute(sa.text(f"SELECT * FROM {t} ORDER BY id")).all() for t in ("experiments", "runs", "embeddings")]
                + [conn.execute(sa.text("SELECT * FROM clustering_results WHERE id = ANY(:ids) ORDER BY id"), {"ids": own}).all()]
                + [
                    conn.execute(
                        sa.text("SELECT * FROM embedding_clusters WHERE clustering_result_id = ANY(:ids) ORDER BY id"),
                        {"ids": own},
                    ).all()
                ]  # fmt: skip
            )

    theirs = application_rows_pg()
    assert {r["id"] for r in ours(pg_url)} == set(rows)  # read as it is before the repair
    out = run_cli("repair", "-d", pg_url)
    assert out.returncode == 0 and out.stdout.startswith("repaired: moved 6 result(s)"), out.stdout + out.stderr
    assert application_rows_pg() == theirs
    assert {r["id"] for r in ours(pg_url)} == set(rows)
    with engine.connect() as conn:
        left = {t for (t,) in conn.execute(sa.text("SELECT tablename FROM pg_tables WHERE schemaname = 'public'"))}
        moved = {
            rid: {str(e): None if m is None else str(m) for e, m in conn.execute(
                sa.text("SELECT embedding_id, medoid_embedding_id FROM cluster_workers_memberships WHERE clustering_result_id = :r"),
                {"r": rid})}
            for rid in rows
        }  # fmt: skip
        doubled = conn.execute(sa.text(
            "SELECT count(*) FROM (SELECT c.embedding_id, r.layer FROM embedding_clusters c JOIN clustering_results r "
            "ON r.id = c.clustering_result_id GROUP BY c.embedding_id, r.layer HAVING count(*) > 1) d")).scalar_one()  # fmt: skip
    engine.dispose()
    assert not left & set(former) and moved == members and doubled == 0
    hdbscan = next(rid for rid, row in rows.items() if row[2].startswith("hdbscan") and "assigned_from" not in row[3])
    ok("density", hdbscan, "-d", pg_url)  # its tree moved with it

"""The users' database as it is today: the whole workflow on the current schema, beside the legacy one.

Real SQLite files, the real CLI in subprocesses, real worker processes.
"""

from __future__ import annotations

import datetime as dt
import json
import re
import sqlite3
import uuid

import pytest
import sqlalchemy as sa

from cluster_workers.db.connect import make_engine
from cluster_workers.db.schema import CURRENT_SCHEMA
from tests.helpers import application_rows, file_hash, kill_while_paused, memberships, ok, ours, partition, results, run_cli

DASHED = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")
STAMP = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z$")


def test_the_same_data_gives_the_same_samples_partitions_and_medoid_texts(twin_templates, tmp_path):
    found = {}
    for schema, template in twin_templates.items():
        db = tmp_path / f"{schema}.db"
        db.write_bytes(template.read_bytes())
        ok("cluster", "-d", str(db), "--downsample", "2")
        (result,) = ours(db)
        members = memberships(db, result["id"])
        shown = json.loads(ok("show", result["id"], "-d", str(db), "--json", "--limit", "0"))
        found[schema] = (members, [(c["size"], c["medoid_text"]) for c in shown["clusters"]], result)
    legacy, current = found["legacy"], found["current"]
    assert set(legacy[0]) == set(current[0]) and len(legacy[0]) > 500  # the same sample, embedding by embedding
    assert partition(legacy[0]) == partition(current[0])  # the same clusters
    assert legacy[0] == current[0]  # and the same medoid for each
    assert legacy[1] == current[1]  # the same medoid texts, in the same order
    assert legacy[2]["algorithm"] == current[2]["algorithm"] == "hdbscan"
    assert legacy[2]["parameters"]["engine_parameters"] == current[2]["parameters"]["engine_parameters"]


def _schema_objects(db) -> list[tuple]:
    con = sqlite3.connect(db)
    rows = con.execute(
        "SELECT type, name, tbl_name, sql FROM sqlite_master WHERE name NOT LIKE 'sqlite_%' ORDER BY name"
    ).fetchall()
    con.close()
    return rows


def test_every_row_we_write_is_in_our_own_tables_in_the_applications_formats(current_db):
    before = _schema_objects(current_db)
    guard = application_rows(current_db)
    ok("cluster", "-d", str(current_db), "--downsample", "2")
    (first,) = ours(current_db)
    ok("recut", first["id"], "-d", str(current_db), "--min-cluster-size", "8")
    ok("cluster", "-d", str(current_db), "--downsample", "3", "--epsilon", "0.2")
    assert len(ours(current_db)) == 3
    con = sqlite3.connect(current_db)
    assert con.execute("PRAGMA foreign_key_check").fetchall() == []
    assert con.execute("PRAGMA integrity_check").fetchone() == ("ok",)
    after = con.execute(
        "SELECT type, name, tbl_name, sql FROM sqlite_master WHERE name NOT LIKE 'sqlite_%' ORDER BY name"
    ).fetchall()
    added = [row for row in after if row not in before]
    assert before == [row for row in after if row in before]  # their tables, indexes and constraints as they were
    assert sorted(row[1] for row in added if row[0] == "table") == [
        "cluster_workers_memberships",
        "cluster_workers_results",
        "cluster_workers_trees",
    ]
    assert all(row[2].startswith("cluster_workers_") for row in added)
    assert not any(
        "REFERENCES" in (row[3] or "") and "cluster_workers_" not in (row[3] or "").split("REFERENCES", 1)[1][:40]
        for row in added
    ), "a foreign key of ours into a table of theirs"
    assert application_rows(current_db) == guard
    for rid, _model, algorithm, params, layer, started, completed, inserted, updated in con.execute(
        "SELECT id, embedding_model, algorithm, parameters, layer, started_at, completed_at, inserted_at, updated_at "
        "FROM cluster_workers_results"
    ):
        assert DASHED.match(rid) and layer == 0 and algorithm == "hdbscan"
        assert all(STAMP.match(v) for v in (started, completed, inserted, updated)), (started, completed, inserted, updated)
        assert "run_key" in json.loads(params)
        rows = con.execute(
            "SELECT id, embedding_id, medoid_embedding_id, inserted_at, updated_at FROM cluster_workers_memberships "
            "WHERE clustering_result_id = ?",
            (rid,),
        ).fetchall()
        assert rows
        for mid, emb, medoid, ins, upd in rows:
            assert DASHED.match(mid) and DASHED.match(emb) and (medoid is None or DASHED.match(medoid))
            assert STAMP.match(ins) and STAMP.match(upd)
    con.close()


def test_their_evoc_layers_are_results_and_stay_byte_identical(current_db, tmp_path):
    theirs = [r for r in results(current_db) if r["made_by"] == "application"]
    assert sorted(r["layer"] for r in theirs) == [0, 1, 2] and {r["algorithm"] for r in theirs} == {"evoc"}
    guard = application_rows(current_db)
    ok("cluster", "-d", str(current_db), "--downsample", "1")
    (hdb,) = ours(current_db)
    for layer in theirs:
        shown = json.loads(ok("show", layer["id"], "-d", str(current_db), "--json"))
        assert shown["result"]["sample_count"] == layer["sample_count"] and shown["clusters"][0]["medoid_text"]
        csv = tmp_path / f"layer{layer['layer']}.csv"
        ok("export", layer["id"], "-d", str(current_db), "--output", str(csv))
        assert len(csv.read_text().splitlines()) == layer["sample_count"] + 1
        agreement = json.loads(ok("compare", "--result", hdb["id"], "--result", layer["id"], "-d", str(current_db), "--json"))
        pair = agreement["comparisons"][0]
        assert 0.0 < pair["ari"] <= 1.0 and pair["n"] > 0
    ok("transitions", theirs[0]["id"], "-d", str(current_db))
    ok("recut", hdb["id"], "-d", str(current_db), "--min-cluster-size", "6")
    ok("sweep", hdb["id"], "-d", str(current_db), "--min-cluster-size", "4,8")
    ok("bench", "-d", str(current_db), "--downsample", "4", "--output-dir", str(tmp_path / "bench"))
    ok("index", "-d", str(current_db))
    ok("delete", "--all", "--yes", "-d", str(current_db))
    assert ours(current_db) == [] and len(results(current_db)) == 3
    assert application_rows(current_db) == guard


def _add_run(db) -> None:
    """One more run in the users' format (as their application would insert it while experiments go on)."""
    s = CURRENT_SCHEMA
    engine = make_engine(f"sqlite:///{db}")
    now = dt.datetime(2026, 6, 1, 12, 0, 0, 1)
    with engine.begin() as conn:
        experiment = conn.execute(sa.select(s.experiment.c.id)).scalars().first()
        model, vector = conn.execute(sa.select(s.embedding.c.embedding_model, s.embedding.c.vector).limit(1)).one()
        run_id = uuid.uuid4()
        conn.execute(
            sa.insert(s.run),
            [
                {
                    "id": run_id,
                    "experiment_id": experiment,
                    "initial_prompt": "a new prompt",
                    "max_length": 4,
                    "network": ["FLUX.1-schnell", "Moondream2"],
                    "run_number": 9999,
                    "inserted_at": now,
                    "updated_at": now,
                }
            ],
        )
        for seq in range(4):
            inv = uuid.uuid4()
            conn.execute(
                sa.insert(s.invocation),
                [
                    {
                        "id": inv,
                        "run_id": run_id,
                        "sequence_number": seq,
                        "type": "text" if seq % 2 else "image",
                        "model": "Moondream2",
                        "output_text": "a new caption" if seq % 2 else None,
                        "started_at": now,
                        "inserted_at": now,
                        "updated_at": now,
                    }
                ],
            )
            if seq % 2:
                conn.execute(
                    sa.insert(s.embedding),
                    [
                        {
                            "id": uuid.uuid4(),
                            "invocation_id": inv,
                            "embedding_model": model,
                            "vector": vector,
                            "started_at": now,
                            "inserted_at": now,
                            "updated_at": now,
                        }
                    ],
                )
    engine.dispose()


def test_a_changed_sample_is_clustered_again_and_force_replaces_in_one_transaction(current_db):
    ok("cluster", "-d", str(current_db), "--downsample", "1")
    (old,) = ours(current_db)
    _add_run(current_db)  # the same parameters now mean another sample
    ok("cluster", "-d", str(current_db), "--downsample", "1")  # our tables have no UNIQUE rule of theirs: one more result
    again = [r for r in ours(current_db) if r["id"] != old["id"]]
    assert len(again) == 1 and again[0]["sample_count"] == old["sample_count"] + 2
    ok("delete", again[0]["id"], "--yes", "-d", str(current_db))
    # a replacement killed inside its transaction (old rows deleted, new rows half in) loses nothing
    kill_while_paused(["cluster", "-d", str(current_db), "--downsample", "1", "--force"], "pause-in-commit=120",
                      "fault: pausing inside the commit")  # fmt: skip
    assert [r["id"] for r in ours(current_db)] == [old["id"]]
    assert len(memberships(current_db, old["id"])) == old["sample_count"]
    ok("cluster", "-d", str(current_db), "--downsample", "1", "--force")
    (new,) = ours(current_db)
    assert new["id"] != old["id"] and new["sample_count"] == old["sample_count"] + 2
    assert memberships(current_db, old["id"]) == {}
    assert len(memberships(current_db, new["id"])) == new["sample_count"]


def test_the_whole_workflow_on_either_schema(any_db, tmp_path):
    db = str(any_db)
    ok("cluster", "-d", db, "--downsample", "2")
    mine = ours(any_db)
    assert mine and all(r["layer"] == 0 for r in mine)
    rid = mine[0]["id"]
    assert "medoid text" in ok("show", rid, "-d", db)
    ok("export", rid, "-d", db, "--output", str(tmp_path / "m.csv"))
    ok("trajectories", rid, "-d", db)
    ok("transitions", rid, "-d", db, "--json")
    ok("run-lengths", rid, "-d", db)
    ok("report", "-d", db, "--output", str(tmp_path / "report"))
    assert (tmp_path / "report" / "report.html").exists()
    assert "ARI vs stored" in ok("sweep", rid, "-d", db, "--epsilon", "0,0.5")
    ok("recut", rid, "-d", db, "--min-cluster-size", "9")
    assert len(ours(any_db)) == len(mine) + 1
    recut = ours(any_db)[0]["id"]
    agreement = json.loads(ok("compare", "--result", rid, "--result", recut, "-d", db, "--json"))
    assert 0 < agreement["comparisons"][0]["ari"] <= 1
    ok("delete", rid, "--yes", "--cascade", "-d", db)  # the recut was made from it: it goes too
    assert not {rid, recut} & {r["id"] for r in results(any_db)}


@pytest.mark.parametrize("fault", ["bad-vector", "locked", "timeout", "disk-full"])
def test_failures_on_the_current_schema_leave_it_untouched(current_db, fault):
    import sqlite3 as sq

    env = None
    args = ["cluster", "-d", str(current_db), "--downsample", "1"]
    holder = None
    if fault == "bad-vector":
        con = sq.connect(current_db)
        con.execute("UPDATE embeddings SET vector = x'0000803f' WHERE id = (SELECT id FROM embeddings LIMIT 1 OFFSET 7)")
        con.commit()
        con.close()
    digest = file_hash(current_db)
    if fault == "locked":
        holder = sq.connect(current_db, isolation_level=None)
        holder.execute("BEGIN IMMEDIATE")
        args += ["--busy-timeout", "1"]
    elif fault == "timeout":
        env = {"CLUSTER_WORKERS_FAULT": "pause-in-clustering=30"}
        args += ["--timeout", "2"]
    elif fault == "disk-full":
        env = {"CLUSTER_WORKERS_FAULT": "disk-full-in-commit"}
    try:
        out = run_cli(*args, env=env)
    finally:
        if holder is not None:
            holder.execute("ROLLBACK")
            holder.close()
    assert out.returncode == 1 and "Traceback" not in out.stderr, out.stderr
    expected = {
        "bad-vector": "4 bytes, expected 1024",
        "locked": "locked",
        "timeout": "passed its timeout",
        "disk-full": "database or disk is full",
    }[fault]
    assert expected in out.stderr, out.stderr
    assert file_hash(current_db) == digest


def test_index_offers_the_index_their_schema_lacks(current_db):
    guard = application_rows(current_db)
    out = ok("index", "-d", str(current_db))
    assert "ix_cw_embedding_clusters_result: created" in out + "", out
    con = sqlite3.connect(current_db)
    names = {
        row[0] for row in con.execute("SELECT name FROM sqlite_master WHERE type = 'index' AND tbl_name = 'embedding_clusters'")
    }
    con.close()
    assert "ix_cw_embedding_clusters_result" in names
    assert application_rows(current_db) == guard  # an index changes no row
    ok("index", "--drop", "-d", str(current_db))


def _experiment_sample(db, experiment: str) -> set[str]:
    """The embeddings of one experiment's non-calibration runs, straight from the file (downsample 1)."""
    con = sqlite3.connect(db)
    rows = con.execute(
        "SELECT e.id FROM embeddings e JOIN invocations i ON i.id = e.invocation_id JOIN runs r ON r.id = i.run_id "
        "WHERE r.experiment_id = ? AND i.type = 'text' AND lower(trim(r.initial_prompt)) NOT IN ('yeah', 'nah')",
        (experiment,),
    ).fetchall()
    con.close()
    return {e for (e,) in rows}


def test_experiment_chooses_the_runs_of_a_clustering_and_of_every_analysis(current_db):
    con = sqlite3.connect(current_db)
    experiments = [e for (e,) in con.execute("SELECT id FROM experiments ORDER BY id")]
    con.close()
    assert len(experiments) == 2
    first, second = experiments
    ok("cluster", "-d", str(current_db), "--downsample", "1", "--experiment", first)
    (mine,) = ours(current_db)
    assert set(memberships(current_db, mine["id"])) == _experiment_sample(current_db, first)
    assert mine["parameters"]["experiment"] == first
    ok("cluster", "-d", str(current_db), "--downsample", "1")  # globally, as the users cluster
    whole = [r for r in ours(current_db) if "experiment" not in r["parameters"]][0]
    per = {e: json.loads(ok("transitions", whole["id"], "-d", str(current_db), "--experiment", e, "--json")) for e in experiments}
    every = json.loads(ok("transitions", whole["id"], "-d", str(current_db), "--json"))
    total = lambda rows: sum(r["count"] for r in rows)  # noqa: E731
    assert total(per[first]) > 0 and total(per[second]) > 0
    assert total(per[first]) + total(per[second]) == total(every)
    runs = {
        e: len(json.loads(ok("run-lengths", whole["id"], "-d", str(current_db), "--experiment", e, "--json")))
        for e in experiments
    }
    assert all(n > 0 for n in runs.values())
    out = run_cli("transitions", whole["id"], "-d", str(current_db), "--experiment", str(uuid.uuid4()))
    assert out.returncode == 1 and "no runs of experiment" in out.stderr
    bad = run_cli("cluster", "-d", str(current_db), "--downsample", "1", "--experiment", "not-an-id")
    assert bad.returncode == 2 and "must be an experiment id" in bad.stderr


@pytest.mark.postgres
def test_the_current_schema_on_postgres(pg_url):
    """Their DDL on a PostgreSQL server (text ids and timestamps there too): cluster, read, recut, delete ours only."""
    from cluster_workers.tools.demo import build_demo_database

    build_demo_database(pg_url, embeddings=1_500, seed=7, schema="current")
    ok("cluster", "-d", pg_url, "--downsample", "1")
    listed = json.loads(ok("results", "-d", pg_url, "--json"))
    mine = [r for r in listed if r["made_by"] == "cluster_workers"]
    theirs = [r for r in listed if r["made_by"] == "application"]
    assert len(mine) == 1 and mine[0]["algorithm"] == "hdbscan" and sorted(r["layer"] for r in theirs) == [0, 1, 2]
    agreement = json.loads(ok("compare", "--result", mine[0]["id"], "--result", theirs[0]["id"], "-d", pg_url, "--json"))
    assert 0 < agreement["comparisons"][0]["ari"] <= 1
    ok("recut", mine[0]["id"], "-d", pg_url, "--min-cluster-size", "6")
    engine = make_engine(pg_url)
    with engine.connect() as conn:
        stamps = conn.execute(sa.text("SELECT inserted_at, updated_at, id FROM cluster_workers_memberships LIMIT 50")).all()
        theirs_hold = conn.execute(sa.text("SELECT count(*) FROM clustering_results WHERE algorithm <> 'evoc'")).scalar_one()
    engine.dispose()
    assert stamps and all(STAMP.match(a) and STAMP.match(b) and DASHED.match(i) for a, b, i in stamps)
    assert theirs_hold == 0  # nothing of ours in their tables
    ok("delete", "--all", "--yes", "-d", pg_url)
    left = json.loads(ok("results", "-d", pg_url, "--json"))
    assert sorted(r["id"] for r in left) == sorted(r["id"] for r in theirs)

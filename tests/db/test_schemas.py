"""Both schemas recognised by looking; a database of neither says what it lacks; the mapping matches the users' DDL."""

from __future__ import annotations

import sqlite3

import pytest

from cluster_workers.db.connect import make_engine
from cluster_workers.db.detect import detect
from cluster_workers.db.schema import CURRENT_SCHEMA, DashedUuid, IsoTimestamp, parse_timestamp
from cluster_workers.errors import DatabaseError
from cluster_workers.tools.application_schema import create_application_tables
from tests.helpers import file_hash, run_cli


def _schema_name(path) -> str:
    engine = make_engine(f"sqlite:///{path}", read_only=True)
    with engine.connect() as conn:
        name = detect(conn).name
    engine.dispose()
    return name


def test_each_schema_is_recognised_from_its_tables(demo_db, current_db):
    assert _schema_name(demo_db) == "legacy"
    assert _schema_name(current_db) == "current"


def test_the_override_is_checked_against_the_tables(current_db, monkeypatch):
    monkeypatch.setenv("CLUSTER_WORKERS_SCHEMA", "legacy")
    with pytest.raises(DatabaseError, match="missing table"):
        _schema_name(current_db)
    monkeypatch.setenv("CLUSTER_WORKERS_SCHEMA", "current")
    assert _schema_name(current_db) == "current"


@pytest.fixture()
def users_ddl_db(tmp_path):
    path = tmp_path / "users.db"
    engine = make_engine(f"sqlite:///{path}", create=True)
    with engine.begin() as conn:
        create_application_tables(conn)
    engine.dispose()
    return path


def test_the_mapping_matches_the_users_tables(users_ddl_db):
    con = sqlite3.connect(users_ddl_db)
    for table in (
        CURRENT_SCHEMA.experiment,
        CURRENT_SCHEMA.run,
        CURRENT_SCHEMA.invocation,
        CURRENT_SCHEMA.embedding,
        CURRENT_SCHEMA.application_result,
        CURRENT_SCHEMA.application_membership,
    ):
        theirs = {row[1]: bool(row[3]) for row in con.execute(f'PRAGMA table_info("{table.name}")')}
        ours = {c.name: not c.nullable for c in table.columns}
        assert set(ours) == set(theirs), table.name
        for name, not_null in theirs.items():
            if not_null and name != "id":
                assert ours[name], f"{table.name}.{name} is NOT NULL in their DDL"
    con.close()


def test_dashed_uuids_and_their_timestamps_round_trip():
    import datetime as dt
    import uuid

    u = uuid.uuid4()
    kind = DashedUuid()
    assert kind.process_bind_param(u, None) == str(u) and len(str(u)) == 36
    assert kind.process_bind_param(u.hex, None) == str(u)
    assert kind.process_result_value(str(u), None) == u
    stamp = IsoTimestamp().process_bind_param(dt.datetime(2026, 5, 19, 6, 43, 59, 123456), None)
    assert stamp == "2026-05-19T06:43:59.123456Z"
    assert parse_timestamp(stamp) == dt.datetime(2026, 5, 19, 6, 43, 59, 123456)
    assert parse_timestamp("2026-05-19T08:43:59+02:00") == dt.datetime(2026, 5, 19, 6, 43, 59)


def test_a_database_of_neither_schema_names_what_each_lacks(tmp_path):
    path = tmp_path / "other.db"
    con = sqlite3.connect(path)
    con.execute("CREATE TABLE notes (id INTEGER PRIMARY KEY, body TEXT)")
    con.commit()
    con.close()
    digest = file_hash(path)
    for command in (["cluster", "--downsample", "2"], ["results"]):
        out = run_cli(*command, "-d", str(path))
        assert out.returncode == 1, out.stderr
        lines = [line for line in out.stderr.splitlines() if line.startswith("error")]
        assert len(lines) == 1 and "Traceback" not in out.stderr, out.stderr
        assert lines[0].startswith("error: not an experiment database")
        assert "legacy schema: missing table(s) run, invocation, embedding" in lines[0]
        assert "current schema: missing table(s) experiments, runs, invocations, embeddings, clustering_results" in lines[0]
    assert file_hash(path) == digest


def test_the_current_schema_missing_a_column_is_named(current_db):
    con = sqlite3.connect(current_db)
    con.execute("ALTER TABLE invocations DROP COLUMN output_text")
    con.commit()
    con.close()
    digest = file_hash(current_db)
    for command in (["cluster", "--downsample", "2"], ["results"], ["show", "latest"]):
        out = run_cli(*command, "-d", str(current_db))
        assert out.returncode == 1, out.stderr
        lines = [line for line in out.stderr.splitlines() if line.startswith("error")]
        assert len(lines) == 1 and "Traceback" not in out.stderr, out.stderr
        assert lines[0].startswith(
            "error: not an experiment database: current schema: missing column(s) invocations.output_text"
        ), lines[0]
    assert file_hash(current_db) == digest


def test_both_schemas_at_once_ask_for_the_override(demo_db):
    engine = make_engine(f"sqlite:///{demo_db}")
    with engine.begin() as conn:
        create_application_tables(conn)
    with engine.connect() as conn:
        with pytest.raises(DatabaseError, match="CLUSTER_WORKERS_SCHEMA"):
            detect(conn)
        assert detect(conn, override="current").name == "current"
    engine.dispose()

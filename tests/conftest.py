"""Shared fixtures: small real experiment databases (SQLite files, a fresh PostgreSQL database)."""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import uuid
from collections import defaultdict
from pathlib import Path

import pytest
import sqlalchemy as sa

from cluster_workers.db.connect import make_engine
from cluster_workers.db.schema import embedding, invocation, run
from cluster_workers.tools.demo import build_demo_database

ROOT = Path(__file__).resolve().parent.parent
SMALL = 3 * 420 + 25  # 420 text invocations per real model, Dummy with 25
PG_ADMIN_URL = os.environ.get("CLUSTER_WORKERS_TEST_PG", "postgresql+psycopg://postgres@127.0.0.1:5432/test")


def file_hash(path: Path) -> str:
    """Hash of a SQLite file and its WAL companion, to prove a database untouched."""
    h = hashlib.sha256()
    for p in (Path(path), Path(str(path) + "-wal")):
        if p.exists():
            h.update(p.read_bytes())
    return h.hexdigest()


def run_cli(*args: str, env: dict | None = None, timeout: float = 300, cwd: Path | None = None) -> subprocess.CompletedProcess:
    """Run `python -m cluster_workers ARGS` as a user would, capturing output."""
    full_env = {**os.environ, **(env or {})}
    return subprocess.run(
        [sys.executable, "-m", "cluster_workers", *args],
        capture_output=True, text=True, timeout=timeout, env=full_env, cwd=cwd or ROOT,
    )


def expected_sample(url: str, downsample: int) -> dict[str, set[uuid.UUID]]:
    """The spec's downsampling, computed independently in Python from the raw rows."""
    engine = make_engine(url)
    with engine.connect() as conn:
        prompts = dict(conn.execute(sa.select(run.c.id, run.c.initial_prompt)).all())
        texts: dict[uuid.UUID, list[tuple[int, uuid.UUID]]] = defaultdict(list)
        for inv_id, run_id, seq, typ in conn.execute(
            sa.select(invocation.c.id, invocation.c.run_id, invocation.c.sequence_number, sa.cast(invocation.c.type, sa.String))
        ):
            if typ.upper() == "TEXT" and (prompts[run_id] or "").strip().lower() not in ("yeah", "nah"):
                texts[run_id].append((seq, inv_id))
        kept = set()
        for items in texts.values():
            items.sort()
            kept.update(inv for i, (_, inv) in enumerate(items) if i % downsample == 0)
        sample: dict[str, set[uuid.UUID]] = defaultdict(set)
        for emb_id, inv_id, model in conn.execute(sa.select(embedding.c.id, embedding.c.invocation_id, embedding.c.embedding_model)):
            if inv_id in kept:
                sample[model].add(emb_id)
    engine.dispose()
    return dict(sample)


def _template(tmp_path_factory, embeddings: int, seed: int) -> Path:
    path = tmp_path_factory.mktemp("template") / "experiments.db"
    build_demo_database(str(path), embeddings=embeddings, seed=seed)
    return path


def _private_copy(template: Path, tmp_path: Path) -> Path:
    path = tmp_path / template.name
    shutil.copy(template, path)
    return path


@pytest.fixture(scope="session")
def demo_template(tmp_path_factory) -> Path:
    return _template(tmp_path_factory, SMALL, 7)


@pytest.fixture()
def demo_db(demo_template, tmp_path) -> Path:
    """A private copy of the small demo database (a real SQLite file)."""
    return _private_copy(demo_template, tmp_path)


def _pg_available() -> str | None:
    try:
        engine = sa.create_engine(PG_ADMIN_URL, connect_args={"connect_timeout": 3})
        with engine.connect() as conn:
            conn.execute(sa.text("SELECT 1"))
        engine.dispose()
        return None
    except Exception as exc:  # noqa: BLE001 - any failure means: no server to test against
        return f"no PostgreSQL server answers at {PG_ADMIN_URL}: {str(exc).splitlines()[0]}"


def _scratch_pg_database():
    """A fresh, empty PostgreSQL database on the live server, dropped afterwards."""
    reason = _pg_available()
    if reason:
        pytest.skip(reason)
    name = f"cw_test_{uuid.uuid4().hex[:12]}"
    admin = sa.create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    url = sa.make_url(PG_ADMIN_URL).set(database=name).render_as_string(hide_password=False)
    yield url
    with admin.connect() as conn:
        conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


pg_url = pytest.fixture(_scratch_pg_database, name="pg_url")
pg_url_second = pytest.fixture(_scratch_pg_database, name="pg_url_second")


@pytest.fixture()
def pg_demo(pg_url) -> str:
    build_demo_database(pg_url, embeddings=SMALL, seed=7)
    return pg_url


MID = 3 * 1500 + 25  # big enough that the reference engine works for seconds per model


@pytest.fixture(scope="session")
def mid_template(tmp_path_factory) -> Path:
    return _template(tmp_path_factory, MID, 11)


@pytest.fixture()
def mid_db(mid_template, tmp_path) -> Path:
    return _private_copy(mid_template, tmp_path)


REALTEXT = ROOT / "tests" / "data" / "realtext_3000.npz"


def write_experiment(path: Path, model: str, texts: list[str], vectors, run_length: int = 30) -> None:
    """A real SQLite experiment database holding ``texts`` as runs of ``run_length`` text outputs, one model."""
    import datetime as dt

    from cluster_workers.db.schema import EXPERIMENT_TABLES, metadata

    engine = make_engine(f"sqlite:///{path}", create=True)
    when = dt.datetime(2026, 1, 1)
    runs, invs, embs = [], [], []
    for r, start in enumerate(range(0, len(texts), run_length)):
        run_id = uuid.uuid5(uuid.NAMESPACE_URL, f"run/{r}")
        runs.append({"id": run_id, "network": ["FLUX.1-schnell", "Moondream2"], "seed": r, "max_length": 2 * run_length,
                     "initial_prompt": f"prompt {r}", "experiment_id": None})
        for i, k in enumerate(range(start, min(len(texts), start + run_length))):
            inv_id = uuid.uuid5(uuid.NAMESPACE_URL, f"inv/{k}")
            invs.append({"id": inv_id, "started_at": when, "completed_at": when, "model": "Moondream2", "type": "TEXT",
                         "seed": r, "run_id": run_id, "sequence_number": 2 * i + 1, "input_invocation_id": None,
                         "output_text": str(texts[k]), "output_image_data": None})
            embs.append({"id": uuid.uuid5(uuid.NAMESPACE_URL, f"emb/{k}"), "started_at": when, "completed_at": when,
                         "invocation_id": inv_id, "embedding_model": model, "vector": vectors[k].astype("<f4").tobytes()})
    with engine.begin() as conn:
        metadata.create_all(conn, tables=list(EXPERIMENT_TABLES))
        for table, rows in ((run, runs), (invocation, invs), (embedding, embs)):
            conn.execute(sa.insert(table), rows)
    engine.dispose()


@pytest.fixture(scope="session")
def realtext_template(tmp_path_factory) -> Path:
    """3,000 real sentences (Debian package descriptions) with their all-MiniLM-L6-v2 vectors, as one model."""
    import numpy as np

    data = np.load(REALTEXT)
    path = tmp_path_factory.mktemp("realtext") / "experiments.db"
    write_experiment(path, "MiniLM", data["texts"].tolist(), data["vectors"])
    return path


@pytest.fixture()
def realtext_db(realtext_template, tmp_path) -> Path:
    return _private_copy(realtext_template, tmp_path)


CURRENT_SMALL = 1_500  # one 256-d model, as the users' current data


@pytest.fixture(scope="session")
def current_template(tmp_path_factory) -> Path:
    """A small database in the users' current schema, with their own EVoC-style layers."""
    path = tmp_path_factory.mktemp("current") / "current.db"
    build_demo_database(str(path), embeddings=CURRENT_SMALL, seed=7, schema="current")
    return path


@pytest.fixture()
def current_db(current_template, tmp_path) -> Path:
    return _private_copy(current_template, tmp_path)


@pytest.fixture(scope="session")
def twin_templates(tmp_path_factory) -> dict[str, Path]:
    """The same data (seed, model, 256-d vectors, ids, texts) in both schemas."""
    out = {}
    for schema in ("legacy", "current"):
        path = tmp_path_factory.mktemp(f"twin_{schema}") / "experiments.db"
        build_demo_database(str(path), embeddings=CURRENT_SMALL, seed=3, schema=schema, models=("Nomic256",), dim=256)
        out[schema] = path
    return out


@pytest.fixture(params=["legacy", "current"])
def any_db(request, tmp_path) -> Path:
    """A private copy of a small database in each schema in turn (the legacy demo, or the current one)."""
    template = request.getfixturevalue("demo_template" if request.param == "legacy" else "current_template")
    return _private_copy(template, tmp_path)


def users_rows(path: Path) -> str:
    """A digest of every row of the users' own tables that is not ours: their results (no run key), their
    memberships, their other analyses -- to prove them byte-identical after our runs."""
    import sqlite3

    con = sqlite3.connect(path)
    h = hashlib.sha256()
    theirs = [r[0] for r in con.execute("SELECT id FROM clustering_results WHERE parameters NOT LIKE '%run_key%' ORDER BY id")]
    assert theirs, "no users' results to guard"
    for rid in theirs:
        h.update(repr(con.execute("SELECT * FROM clustering_results WHERE id = ?", (rid,)).fetchall()).encode())
        h.update(repr(con.execute("SELECT * FROM embedding_clusters WHERE clustering_result_id = ? ORDER BY id", (rid,)).fetchall()).encode())
    for table in ("lyapunov_results", "persistence_diagrams", "experiments", "runs"):
        h.update(repr(con.execute(f"SELECT * FROM {table} ORDER BY id").fetchall()).encode())
    con.close()
    return h.hexdigest()

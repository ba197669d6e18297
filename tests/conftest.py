"""Shared fixtures: small real experiment databases (SQLite files, a fresh PostgreSQL database)."""

from __future__ import annotations

import os
import shutil
import uuid
from pathlib import Path

import pytest
import sqlalchemy as sa

from cluster_workers.tools.demo import build_demo_database
from tests.helpers import REALTEXT, SMALL, write_experiment

PG_ADMIN_URL = os.environ.get("CLUSTER_WORKERS_TEST_PG", "postgresql+psycopg://postgres@127.0.0.1:5432/test")


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

"""Helpers the tests share: running the CLI, hashing a database file, the spec's sample computed independently,
small real databases built by hand, and reading results back. Fixtures live in conftest.py."""

from __future__ import annotations

import hashlib
import json
import os
import re
import sqlite3
import subprocess
import sys
import time
import uuid
from collections import defaultdict
from pathlib import Path

import psutil
import pytest
import sqlalchemy as sa

from cluster_workers.db.connect import make_engine
from tests.legacy_tables import clustering_result, embedding, embedding_cluster, invocation, run

ROOT = Path(__file__).resolve().parent.parent
SMALL = 3 * 420 + 25  # 420 text invocations per real model, Dummy with 25
REALTEXT = ROOT / "tests" / "data" / "realtext_3000.npz"
SLOW = ["--downsample", "1", "--engine", "reference", "--workers", "2"]
# run -> (network, labels per text step (-1 outlier), texts per text step)
RUNS = {
    "r0": ("X", [-1, 2, 2, 1, 1, 1], ["a", "b", "c", "d", "d", "d"]),  # fixed point "d" at 3; absorbed in 1 at 3
    "r1": ("X", [2, -1, 1, -1, 2, 1], ["a", "b", "a", "c", "e", "e"]),  # never settles; tail "e" too short
    "r2": ("Y", [-1, -1, -1, -1], ["x", "y", "z", "z"]),  # no core at all
    "r3": ("Y", [1, 1, 1, 1, 1], ["q", "q", "q", "q", "q"]),  # one state from the start
}


def ok(*args: str, **kw) -> str:
    out = run_cli(*args, **kw)
    assert out.returncode == 0, f"{args}: {out.stderr[-2000:]}"
    return out.stdout


def results(db) -> list[dict]:
    return json.loads(ok("results", "-d", str(db), "--json"))


def ours(db) -> list[dict]:
    return [r for r in results(db) if r["made_by"] == "cluster_workers"]


def memberships(db, result_id: str) -> dict[str, str | None]:
    """``embedding id -> medoid id`` (dashed, lower case) of one result, straight from the file."""
    con = sqlite3.connect(db)
    present = {name for (name,) in con.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    rows = []
    for table in ("cluster_workers_memberships", "embedding_clusters", "embeddingcluster"):  # ours, the application's, legacy
        if table in present:
            rid = uuid.UUID(result_id).hex if table == "embeddingcluster" else result_id
            rows += con.execute(
                f"SELECT embedding_id, medoid_embedding_id FROM {table} WHERE clustering_result_id = ?", (rid,)
            ).fetchall()
    con.close()
    return {str(uuid.UUID(e)): None if m is None else str(uuid.UUID(m)) for e, m in rows}


def partition(members: dict[str, str | None]) -> set[frozenset[str]]:
    groups: dict[str, set[str]] = {}
    for emb, medoid in members.items():
        if medoid is not None:
            groups.setdefault(medoid, set()).add(emb)
    return {frozenset(g) for g in groups.values()}


def stored(url: str) -> tuple[dict[str, list[dict]], dict[uuid.UUID, list[tuple]]]:
    engine = make_engine(url)
    with engine.connect() as conn:
        results = defaultdict(list)
        for row in conn.execute(sa.select(clustering_result)).mappings():
            results[row["embedding_model"]].append(dict(row))
        members = defaultdict(list)
        for row in conn.execute(
            sa.select(
                embedding_cluster.c.clustering_result_id,
                embedding_cluster.c.embedding_id,
                embedding_cluster.c.medoid_embedding_id,
            )
        ):
            members[row[0]].append((row[1], row[2]))
    engine.dispose()
    return dict(results), dict(members)


def start_cli(*args: str) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "cluster_workers", *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT
    )


def wait_for_workers(proc: subprocess.Popen, settle: float = 1.5, timeout: float = 60) -> list[psutil.Process]:
    """The loky worker processes of a running CLI, once they have started working."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert proc.poll() is None, proc.communicate()
        workers = [
            p
            for p in psutil.Process(proc.pid).children(recursive=True)
            if "loky" in " ".join(p.cmdline()) and "resource_tracker" not in " ".join(p.cmdline())
        ]
        if workers:
            time.sleep(settle)
            return workers
        time.sleep(0.1)
    pytest.fail("no worker process started")


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
        capture_output=True,
        text=True,
        timeout=timeout,
        env=full_env,
        cwd=cwd or ROOT,
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
        for emb_id, inv_id, model in conn.execute(
            sa.select(embedding.c.id, embedding.c.invocation_id, embedding.c.embedding_model)
        ):
            if inv_id in kept:
                sample[model].add(emb_id)
    engine.dispose()
    return dict(sample)


def write_experiment(path: Path, model: str, texts: list[str], vectors, run_length: int = 30) -> None:
    """A real SQLite experiment database holding ``texts`` as runs of ``run_length`` text outputs, one model."""
    import datetime as dt

    from tests.legacy_tables import EXPERIMENT_TABLES, metadata

    engine = make_engine(f"sqlite:///{path}", create=True)
    when = dt.datetime(2026, 1, 1)
    runs, invs, embs = [], [], []
    for r, start in enumerate(range(0, len(texts), run_length)):
        run_id = uuid.uuid5(uuid.NAMESPACE_URL, f"run/{r}")
        runs.append(
            {
                "id": run_id,
                "network": ["FLUX.1-schnell", "Moondream2"],
                "seed": r,
                "max_length": 2 * run_length,
                "initial_prompt": f"prompt {r}",
                "experiment_id": None,
            }
        )
        for i, k in enumerate(range(start, min(len(texts), start + run_length))):
            inv_id = uuid.uuid5(uuid.NAMESPACE_URL, f"inv/{k}")
            invs.append(
                {
                    "id": inv_id,
                    "started_at": when,
                    "completed_at": when,
                    "model": "Moondream2",
                    "type": "TEXT",
                    "seed": r,
                    "run_id": run_id,
                    "sequence_number": 2 * i + 1,
                    "input_invocation_id": None,
                    "output_text": str(texts[k]),
                    "output_image_data": None,
                }
            )
            embs.append(
                {
                    "id": uuid.uuid5(uuid.NAMESPACE_URL, f"emb/{k}"),
                    "started_at": when,
                    "completed_at": when,
                    "invocation_id": inv_id,
                    "embedding_model": model,
                    "vector": vectors[k].astype("<f4").tobytes(),
                }
            )
    with engine.begin() as conn:
        metadata.create_all(conn, tables=list(EXPERIMENT_TABLES))
        for table, rows in ((run, runs), (invocation, invs), (embedding, embs)):
            conn.execute(sa.insert(table), rows)
    engine.dispose()


def application_rows(path: Path) -> str:
    """A digest of every row of every table of the experiment application (the current schema's: experiments,
    runs, invocations, embeddings, its clustering results and memberships, its other analyses), to prove them
    byte-identical after this tool's commands."""
    import sqlite3

    from cluster_workers.tools.application_schema import APPLICATION_TABLES

    con = sqlite3.connect(path)
    h = hashlib.sha256()
    assert con.execute("SELECT count(*) FROM clustering_results").fetchone()[0], "no results of the application's to guard"
    for table in APPLICATION_TABLES:
        h.update(table.encode())
        h.update(repr(con.execute(f"SELECT * FROM {table} ORDER BY id").fetchall()).encode())
    con.close()
    return h.hexdigest()


# what differs between runs of a documented example: ids, dates, times, rates, memory peaks
MASKS = [
    (re.compile(r"\b[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}\b"), "<uuid>"),
    (re.compile(r"\b[0-9a-f]{8}\b"), "<id>"),
    (re.compile(r"\d{4}-\d\d-\d\d \d\d:\d\d"), "<date>"),
    (re.compile(r"\b\d+\.\d+ ?s\b"), "<time>"),
    (re.compile(r"\b[\d,]+ rows/s"), "<rate>"),
    (re.compile(r"\bpeak [\d,]+ MiB"), "<peak>"),
]


def masked(line: str) -> str:
    for pattern, mark in MASKS:
        line = pattern.sub(mark, line)
    return re.sub(r"\s+", " ", line).strip()


def missing_lines(shown: list[str], printed: list[str], skip=lambda line: False) -> list[str]:  # type: ignore[no-untyped-def]
    """The documented lines ``shown`` (masked; a line may stop at ``…``) that no ``printed`` line starts with."""
    got = [masked(x) for x in printed]
    prefixes = [masked(line).split("…")[0].strip() for line in shown if not skip(line)]
    return [p for p in prefixes if not any(g.startswith(p) for g in got)]


def kill_while_paused(args: list[str], fault: str, said: str, wait_s: float = 120.0) -> None:
    """Run the CLI with a fault that pauses inside a transaction (``run/faults.py``), wait until it says ``said``,
    then SIGKILL it there: no handler, no cleanup, the transaction left open."""
    proc = subprocess.Popen([sys.executable, "-m", "cluster_workers", *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, cwd=ROOT, env={**os.environ, "CLUSTER_WORKERS_FAULT": fault})  # fmt: skip
    deadline = time.monotonic() + wait_s
    while time.monotonic() < deadline and said not in (proc.stderr.readline() or ""):
        assert proc.poll() is None, proc.communicate()
    proc.kill()
    proc.wait(timeout=30)

"""Transitions and run lengths (the users' definitions), `latest`, and `delete`, on the hand-built database."""

from __future__ import annotations

import json
import sys

import pytest
import sqlalchemy as sa

from cluster_workers.analysis.sequences import run_lengths, transitions
from cluster_workers.db.connect import make_engine
from tests.helpers import file_hash, run_cli
from tests.known_results import B_RUNS, _id, build_known
from tests.legacy_tables import clustering_result, embedding_cluster

# model A (tests/known_results.py), outliers dropped first: run 0 -> [3,1,1,1,1,1,1], run 1 -> [2,2,1,2,1,1,1,1],
# run 2 -> [2]*8, run 3 -> [1,2]*4, run 4 -> [3,3,3], run 5 -> [1]
A_TRANSITIONS = {(1, 1): 8, (2, 2): 8, (2, 1): 5, (1, 2): 5, (3, 1): 1, (3, 3): 2}
# kept: run 0 gains (-1,3); run 4 gains (3,-1) and four (-1,-1); run 5 gains (1,-1)
A_TRANSITIONS_WITH_OUTLIERS = {**A_TRANSITIONS, (-1, 3): 1, (3, -1): 1, (-1, -1): 4, (1, -1): 1}
A_BY_PROMPT = {"p0": {(1, 1): 8, (2, 2): 8, (2, 1): 2, (1, 2): 1, (3, 1): 1}, "p1": {(1, 2): 4, (2, 1): 3, (3, 3): 2}}
# networks: runs 0, 1, 3 SDXL→Moondream; runs 2, 4, 5 FLUX
A_BY_NETWORK = {"SDXL→Moondream": {(1, 1): 8, (2, 2): 1, (2, 1): 5, (1, 2): 5, (3, 1): 1}, "FLUX": {(2, 2): 7, (3, 3): 2}}
A_STRETCHES = [  # (run, cluster, length) in run order
    (0, 3, 1), (0, 1, 6),
    (1, 2, 2), (1, 1, 1), (1, 2, 1), (1, 1, 4),
    (2, 2, 8),
    (3, 1, 1), (3, 2, 1), (3, 1, 1), (3, 2, 1), (3, 1, 1), (3, 2, 1), (3, 1, 1), (3, 2, 1),
    (4, 3, 3),
    (5, 1, 1),
]  # fmt: skip


@pytest.fixture()
def known(tmp_path):
    return build_known(tmp_path / "known.db")


def as_counts(rows: list[dict], group=None) -> dict:
    return {(r["from_cluster"], r["to_cluster"]): r["count"] for r in rows if r["group"] == group}


def cli_json(*args: str) -> list[dict]:
    result = run_cli(*args)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def test_transitions_without_outliers(known):
    rows = cli_json("transitions", str(known.result_ids["A"]), "-d", known.url, "--json")
    assert as_counts(rows) == A_TRANSITIONS


def test_transitions_with_outliers(known):
    rows = cli_json("transitions", str(known.result_ids["A"]), "-d", known.url, "--json", "--include-outliers")
    assert as_counts(rows) == A_TRANSITIONS_WITH_OUTLIERS


@pytest.mark.parametrize("by, want", [("prompt", A_BY_PROMPT), ("network", A_BY_NETWORK)])
def test_transitions_by_group(known, by, want):
    rows = cli_json("transitions", str(known.result_ids["A"]), "-d", known.url, "--json", "--by", by)
    assert {r["group"] for r in rows} == set(want)
    for group, counts in want.items():
        assert as_counts(rows, group) == counts


def test_run_lengths(known):
    rows = cli_json("run-lengths", "latest:A", "-d", known.url, "--json")
    number = {str(_id("run", r)): r for r in range(6)}
    got = [(number[r["run_id"]], r["cluster"], r["length"]) for r in rows]
    assert sorted(got) == sorted(A_STRETCHES)
    for run in range(6):  # each run's stretches in text order
        assert [g for g in got if g[0] == run] == [a for a in A_STRETCHES if a[0] == run]
    assert {(number[r["run_id"]], r["network"], r["initial_prompt"]) for r in rows} == {
        (0, "SDXL→Moondream", "p0"), (1, "SDXL→Moondream", "p0"), (2, "FLUX", "p0"),
        (3, "SDXL→Moondream", "p1"), (4, "FLUX", "p1"), (5, "FLUX", "p1"),
    }  # fmt: skip


def test_run_lengths_table_summarises_per_cluster(known):
    result = run_cli("run-lengths", str(known.result_ids["A"]), "-d", known.url)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert "17 stretches in 6 runs" in lines[0]
    row1 = next(line for line in lines if line.strip().startswith("1 "))  # cluster 1: 8 stretches, lengths 6,1,4,1,1,1,1,1
    assert row1.split()[:4] == ["1", "8", "1", "6"]


def test_bigrams_are_transitions_pure_function():
    import numpy as np

    runs = np.array(["r1"] * 4 + ["r2"] * 3, dtype=object)
    steps = np.array([3, 0, 2, 1, 0, 1, 2])
    clusters = np.array([9, 1, -1, 1, 2, 2, 1])  # r1 in step order: 1, 1, -1, 9
    assert dict(transitions(runs, steps, clusters)[None]) == {(1, 1): 1, (1, 9): 1, (2, 2): 1, (2, 1): 1}
    lengths = run_lengths(runs, steps, clusters, {}, {}, include_outliers=True)
    assert [(s.run_id, s.cluster, s.length) for s in lengths] == [
        ("r1", 1, 2),
        ("r1", -1, 1),
        ("r1", 9, 1),
        ("r2", 2, 2),
        ("r2", 1, 1),
    ]


def counts(url: str) -> tuple[int, int]:
    engine = make_engine(url)
    with engine.connect() as conn:
        out = (conn.execute(sa.select(sa.func.count()).select_from(clustering_result)).scalar(),
               conn.execute(sa.select(sa.func.count()).select_from(embedding_cluster)).scalar())  # fmt: skip
    engine.dispose()
    return out


def test_latest_names_the_newest_result(known):
    shown = run_cli("show", "latest", "-d", known.url, "--json")
    assert shown.returncode == 0, shown.stderr
    assert json.loads(shown.stdout)["result"]["id"] == str(known.result_ids["B"])  # B was created one second after A


@pytest.mark.parametrize(
    "bad, message", [("latest:Z", "no clustering result for model 'Z'"), ("zzzz", "no clustering result with id")]
)
def test_bad_result_ids_are_one_clear_line(known, bad, message):
    result = run_cli("transitions", bad, "-d", known.url)
    assert result.returncode == 1 and message in result.stderr and len(result.stderr.strip().splitlines()) == 1


def test_an_unknown_model_names_the_models_that_have_results(known):
    result = run_cli("show", "latest:Z", "-d", known.url)
    models = sorted({r["model"] for r in json.loads(run_cli("results", "-d", known.url, "--json").stdout)})
    assert result.returncode == 1 and models
    assert result.stderr.strip().endswith(f"results exist for: {', '.join(models)}"), result.stderr


def test_delete_one_result(known):
    result = run_cli("delete", str(known.result_ids["A"])[:8], "-d", known.url, "--yes")
    assert result.returncode == 0, result.stderr
    assert "deleted 1 result(s)" in result.stdout
    assert counts(known.url) == (1, sum(len(v) for v in B_RUNS.values()))


def test_delete_a_model_and_all(known):
    assert run_cli("delete", "--model", "B", "-d", known.url, "--yes").returncode == 0
    assert counts(known.url)[0] == 1
    assert run_cli("delete", "--all", "-d", known.url, "--yes").returncode == 0
    assert counts(known.url) == (0, 0)


def test_delete_without_yes_off_a_terminal_refuses(known):
    before = file_hash(known.url.removeprefix("sqlite:///"))
    result = run_cli("delete", "--all", "-d", known.url)  # stdin is not a terminal here
    assert result.returncode == 2 and "without --yes" in result.stderr
    assert file_hash(known.url.removeprefix("sqlite:///")) == before


def test_delete_declined_at_the_prompt_changes_nothing(known, tmp_path):
    """A real terminal (a pty): the user answers no."""
    import os
    import pty
    import subprocess

    before = file_hash(known.url.removeprefix("sqlite:///"))
    leader, follower = pty.openpty()
    proc = subprocess.Popen([sys.executable, "-m", "cluster_workers", "delete", "--all", "-d", known.url],
                            stdin=follower, stdout=subprocess.PIPE, stderr=subprocess.PIPE)  # fmt: skip
    os.write(leader, b"n\n")
    out, err = proc.communicate(timeout=120)
    os.close(leader)
    os.close(follower)
    assert proc.returncode == 1 and b"nothing deleted" in err
    assert file_hash(known.url.removeprefix("sqlite:///")) == before


def test_delete_interrupted_midway_keeps_everything(known):
    import signal
    import subprocess
    import time

    before = counts(known.url)
    env = {**os_environ(), "CLUSTER_WORKERS_FAULT": "pause-in-delete=30"}
    proc = subprocess.Popen([sys.executable, "-m", "cluster_workers", "delete", "--all", "-d", known.url, "--yes"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)  # fmt: skip
    deadline = time.monotonic() + 60
    err = b""
    while time.monotonic() < deadline:  # wait until the first result is deleted inside the transaction
        time.sleep(0.2)
        if proc.poll() is not None:
            break
        if b"pausing inside the delete" in (err := err + _peek(proc)):
            break
    proc.send_signal(signal.SIGTERM)
    _, rest = proc.communicate(timeout=60)
    assert proc.returncode == 130, (err + rest).decode()
    assert b"nothing was deleted" in err + rest
    assert counts(known.url) == before


def test_delete_refuses_while_a_run_holds_the_lock(known):
    from cluster_workers.db.lock import run_lock

    with run_lock(known.url):
        result = run_cli("delete", "--all", "-d", known.url, "--yes")
    assert result.returncode == 1 and "another clustering run is already using" in result.stderr
    assert counts(known.url)[0] == 2


def os_environ() -> dict:
    import os

    return dict(os.environ)


def _peek(proc) -> bytes:  # type: ignore[no-untyped-def]
    import os
    import select

    ready, _, _ = select.select([proc.stderr], [], [], 0)
    return os.read(proc.stderr.fileno(), 65536) if ready else b""

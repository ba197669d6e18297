"""fixed-points, states and kinetics through the CLI on a hand-built database, in either schema: every number known."""

from __future__ import annotations

import datetime as dt
import json
import uuid

import numpy as np
import pytest
import sqlalchemy as sa

from cluster_workers.db.connect import make_engine
from cluster_workers.db.schema import SCHEMAS
from cluster_workers.tools.application_schema import create_application_tables
from tests.helpers import RUNS, run_cli

WHEN = dt.datetime(2026, 3, 1, 12, 0, 0)


def build(path, schema: str) -> str:
    """RUNS as a database: each run's texts on the odd sequence numbers, one 4-d embedding per text, and one result
    whose memberships are the labels (outliers: no medoid; each cluster's medoid its first member)."""
    s = SCHEMAS[schema]
    engine = make_engine(f"sqlite:///{path}", create=True)
    stamps = {"inserted_at": WHEN, "updated_at": WHEN} if s.stamped else {}
    experiment = uuid.uuid5(uuid.NAMESPACE_URL, "experiment")
    result_id = uuid.uuid5(uuid.NAMESPACE_URL, "result")
    with engine.begin() as conn:
        if schema == "current":
            create_application_tables(conn)
            conn.execute(
                sa.insert(s.experiment),
                [
                    {
                        "id": experiment,
                        "max_length": 20,
                        "embedding_models": ["M"],
                        "prompts": ["p"],
                        "networks": [["X"], ["Y"]],
                        "num_runs": 4,
                        **stamps,
                    }
                ],
            )
        else:
            s.metadata.create_all(conn)
        members, medoid = [], {}
        for r, (network, labels, texts) in enumerate(RUNS.values()):
            run_id = uuid.uuid5(uuid.NAMESPACE_URL, f"run{r}")
            row = {
                "id": run_id,
                "network": [network],
                "initial_prompt": f"p{r}",
                "max_length": 20,
                "experiment_id": experiment,
                **stamps,
            }
            conn.execute(sa.insert(s.run), [row | ({"run_number": r} if schema == "current" else {"seed": r})])
            for k, (label, text) in enumerate(zip(labels, texts)):
                for seq, kind in ((2 * k, "image"), (2 * k + 1, "text")):
                    inv = uuid.uuid5(uuid.NAMESPACE_URL, f"inv{r}/{seq}")
                    conn.execute(
                        sa.insert(s.invocation),
                        [
                            {
                                "id": inv,
                                "run_id": run_id,
                                "sequence_number": seq,
                                "model": "m",
                                "started_at": WHEN,
                                "type": kind if schema == "current" else kind.upper(),
                                "output_text": text if kind == "text" else None,
                                **stamps,
                            }
                        ],
                    )
                emb = uuid.uuid5(uuid.NAMESPACE_URL, f"emb{r}/{k}")
                conn.execute(
                    sa.insert(s.embedding),
                    [
                        {
                            "id": emb,
                            "invocation_id": inv,
                            "embedding_model": "M",
                            "started_at": WHEN,
                            "vector": np.ones(4, dtype="<f4").tobytes(),
                            **stamps,
                        }
                    ],
                )
                medoid.setdefault(label, emb)
                members.append((emb, label))
        result = {
            "id": result_id,
            "embedding_model": "M",
            "algorithm": "evoc",
            "parameters": {},
            "started_at": WHEN,
            "completed_at": WHEN,
            "created_at": WHEN,
        }
        # current schema: the application's own result (in its tables); legacy: the result tables are this tool's
        theirs = s.application_result is not None
        results = s.application_result if theirs else s.clustering_result
        memberships = s.application_membership if theirs else s.embedding_cluster
        conn.execute(sa.insert(results), [result | ({"layer": 0, "updated_at": WHEN} if schema == "current" else {})])
        conn.execute(
            sa.insert(memberships),
            [
                {
                    "id": uuid.uuid5(uuid.NAMESPACE_URL, f"m{i}"),
                    "embedding_id": emb,
                    "clustering_result_id": result_id,
                    "medoid_embedding_id": None if label < 0 else medoid[label],
                    **stamps,
                }
                for i, (emb, label) in enumerate(members)
            ],
        )
    engine.dispose()
    return str(result_id)


def cli_json(*args: str):
    out = run_cli(*args, "--json")
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


@pytest.mark.parametrize("schema", ["legacy", "current"])
def test_known_answers_through_the_cli(tmp_path, schema):
    db = tmp_path / f"{schema}.db"
    rid = build(db, schema)
    fixed = cli_json("fixed-points", "-d", str(db))
    groups = {g["group"]: g for g in fixed["groups"]}
    assert (groups["X"]["runs"], groups["X"]["absorbed"], groups["X"]["repeated_texts"]) == (2, 1, 4)
    assert groups["X"]["top_captions"] == [["d", 1]] and groups["X"]["time_to_absorption"]["median"] == 3.0
    assert (groups["Y"]["absorbed"], groups["Y"]["top_captions"], groups["Y"]["repeated_texts"]) == (1, [["q", 1]], 5)
    assert sorted((r["fixed_at"], r["caption"]) for r in fixed["runs"] if r["fixed_at"] is not None) == [(0, "q"), (3, "d")]

    states = cli_json("states", rid, "-d", str(db))
    by_prompt = {r["network"]: [] for r in states["runs"]}
    for r in states["runs"]:
        by_prompt[r["network"]].append(r["states"])
    assert sorted(by_prompt["X"]) == [[-1, 2, 2, 1, 1, 1], [2, 2, 1, 1, 2, 1]]
    assert sorted(by_prompt["Y"]) == [[-1, -1, -1, -1], [1, 1, 1, 1, 1]]
    assert states["summary"] == {
        "runs": 4,
        "steps": 21,
        "core_steps": 14,
        "milestoned_steps": 7,
        "initial_transit_steps": 5,
        "runs_without_core": 1,
        "states": 2,
    }
    assert not states["probabilities_stored"]  # no tree: every member is core

    kin = {g["group"]: g for g in cli_json("kinetics", rid, "-d", str(db), "--by", "network")["groups"]}
    x, y = kin["X"], kin["Y"]
    assert (x["runs"], x["steps"], x["core_steps"], x["transit_share"], x["absorbed"]) == (2, 12, 9, 0.25, 1)
    assert x["jumps"] == [{"from": 1, "to": 2, "count": 1}, {"from": 2, "to": 1, "count": 3}]
    assert x["dwell"]["completed"] == {"q1": 1.75, "median": 2.0, "q3": 2.0} and (
        x["dwell"]["stays"],
        x["dwell"]["censored"],
    ) == (6, 2)
    assert x["absorption_time"]["median"] == 3.0
    assert x["chain"]["counts"] == [[3, 1], [3, 2]] and x["chain"]["closed_classes"] == [[1, 2]]
    assert x["chain"]["stationary"][0]["1"] == pytest.approx(2.4 / 3.4, abs=1e-12)
    assert (y["runs_without_core"], y["initial_transit_steps"], y["absorbed"], y["chain"]["stationary"]) == (
        1,
        4,
        1,
        [{"1": 1.0}],
    )


def test_states_read_each_members_stored_probability(current_db):
    """The probabilities the states use are the tree's, row for row (matched in numpy, checked here by id)."""
    from cluster_workers.db.attached import point_scores
    from cluster_workers.db.catalog import list_results
    from cluster_workers.db.connect import read_with
    from cluster_workers.db.experiment import uuid_bytes
    from cluster_workers.db.memberships import labelled
    from cluster_workers.run.config import Settings
    from cluster_workers.run.coordinator import run_clustering

    url = f"sqlite:///{current_db}"
    run_clustering(Settings(database_url=url, downsample=1))

    def check(conn):
        result = next(r for r in list_results(conn) if r.ours)
        data = labelled(conn, result.id, with_probabilities=True)
        s = conn.execute(
            sa.text(
                "SELECT e.invocation_id, e.id FROM embeddings e JOIN cluster_workers_memberships ec ON ec.embedding_id = e.id "
                "WHERE ec.clustering_result_id = :r"
            ),
            {"r": str(result.id)},
        ).all()
        by_invocation = {inv.replace("-", ""): emb for inv, emb in s}
        scores = point_scores(conn, result.id)
        want = [scores[uuid_bytes(by_invocation[str(i).replace("-", "")])][0] for i in data.invocation_ids]
        assert data.probabilities.tolist() == want and max(want) == 1.0 and len(want) > 1000

    read_with(url, 30.0, check)

"""A hand-built experiment database whose clustering results are known exactly.

Each model's result is written directly (no clustering): per run, the cluster of
each of its text outputs in order. Labels are chosen so that cluster *sizes* give
the ranks the labels name (1 largest), so the expected answers can be read off
the lists below.
"""

from __future__ import annotations

import datetime as dt
import uuid
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import sqlalchemy as sa

from cluster_workers.db.connect import make_engine
from tests.legacy_tables import (
    EXPERIMENT_TABLES,
    RESULT_TABLES,
    clustering_result,
    embedding,
    embedding_cluster,
    invocation,
    metadata,
    run,
)

# model A: run -> clusters of its text outputs in order (-1 outlier). Sizes: 1 -> 16, 2 -> 15, 3 -> 4.
A_RUNS = {
    0: [-1, 3, 1, 1, 1, 1, 1, 1],  # ends in 1, for good from step 2
    1: [2, 2, 1, 2, 1, 1, 1, 1],  # ends in 1 from step 4
    2: [2, 2, 2, 2, 2, 2, 2, 2],  # ends in 2 from step 0
    3: [1, 2, 1, 2, 1, 2, 1, 2],  # ends in 2, never settles (last 3: 2, 1, 2)
    4: [3, 3, 3, -1, -1, -1, -1, -1],  # ends with the outliers from step 3
    5: [1, -1],  # short: 2 texts < K = 3
}
PROMPTS = {0: "p0", 1: "p0", 2: "p0", 3: "p1", 4: "p1", 5: "p1"}
NETWORKS = {0: ["SDXL", "Moondream"], 1: ["SDXL", "Moondream"], 2: ["FLUX"], 3: ["SDXL", "Moondream"], 4: ["FLUX"], 5: ["FLUX"]}
# model B sees runs 0-4 only (run 5 has no B embeddings): 1 and 3 merge, 2 splits at its run 3 members.
B_RUNS = {
    0: [-1, 1, 1, 1, 1, 1, 1, 1],
    1: [2, 2, 1, 2, 1, 1, 1, 1],
    2: [2, 2, 2, 2, 2, 2, 2, 2],
    3: [1, 3, 1, 3, 1, 3, 1, 3],
    4: [1, 1, 1, -1, -1, -1, 2, -1],
}
WHEN = dt.datetime(2026, 1, 1)


@dataclass
class Known:
    url: str
    result_ids: dict[str, uuid.UUID]
    rows: dict[str, list[tuple]]  # model -> expected export rows (EXPORT_COLUMNS order)
    labels: dict[str, dict[uuid.UUID, int]]  # model -> invocation id -> label


def _id(*parts: object) -> uuid.UUID:
    return uuid.uuid5(uuid.NAMESPACE_URL, "/".join(map(str, parts)))


def build_known(path: Path, models: dict[str, dict[int, list[int]]] | None = None, downsample: int = 1) -> Known:
    """Write the database at ``path`` (SQLite) and return what every query must answer."""
    models = {"A": A_RUNS, "B": B_RUNS} if models is None else models
    url = f"sqlite:///{path}"
    engine = make_engine(url, create=True)
    runs = sorted({r for spec in models.values() for r in spec})
    length = {r: max(len(spec.get(r, [])) for spec in models.values()) for r in runs}
    rng = np.random.default_rng(0)
    run_rows, inv_rows, emb_rows, res_rows, ec_rows = [], [], [], [], []
    texts: dict[uuid.UUID, str] = {}
    for r in runs:
        run_rows.append(
            {
                "id": _id("run", r),
                "network": NETWORKS.get(r, ["m"]),
                "seed": r,
                "max_length": 2 * length[r] + 1,
                "initial_prompt": PROMPTS.get(r, f"p{r}"),
                "experiment_id": None,
            }
        )
        for seq in range(2 * length[r] + 1):  # images on even sequence numbers, texts on odd ones
            is_text = seq % 2 == 1
            inv = _id("inv", r, seq)
            texts[inv] = f"text of run {r} step {seq // 2}" if is_text else None
            inv_rows.append(
                {
                    "id": inv,
                    "started_at": WHEN,
                    "completed_at": WHEN,
                    "model": "m",
                    "type": "TEXT" if is_text else "IMAGE",
                    "seed": r,
                    "run_id": _id("run", r),
                    "sequence_number": seq,
                    "input_invocation_id": None,
                    "output_text": texts[inv],
                    "output_image_data": None,
                }
            )
    expected: dict[str, list[tuple]] = {}
    labels: dict[str, dict[uuid.UUID, int]] = {}
    result_ids: dict[str, uuid.UUID] = {}
    for m, (model, spec) in enumerate(models.items()):
        result_ids[model] = rid = _id("result", model)
        res_rows.append(
            {
                "id": rid,
                "created_at": WHEN + dt.timedelta(seconds=m),
                "started_at": WHEN,
                "completed_at": WHEN,
                "embedding_model": model,
                "algorithm": "hdbscan",
                "parameters": {"downsample": downsample},
            }
        )
        members: dict[int, list[tuple]] = {}
        for r, seq_labels in spec.items():
            for step, label in enumerate(seq_labels):
                seq = 2 * step + 1
                inv, emb = _id("inv", r, seq), _id("emb", model, r, seq)
                emb_rows.append(
                    {
                        "id": emb,
                        "started_at": WHEN,
                        "completed_at": WHEN,
                        "invocation_id": inv,
                        "embedding_model": model,
                        "vector": rng.normal(size=8).astype("<f4").tobytes(),
                    }
                )
                members.setdefault(label, []).append((emb, inv, r, seq, step))
                labels.setdefault(model, {})[inv] = label
        medoid = {label: rows[0][0] for label, rows in members.items() if label != -1}
        expected[model] = []
        for label, rows in members.items():
            for emb, inv, r, seq, step in rows:
                ec_rows.append(
                    {
                        "id": _id("ec", emb),
                        "embedding_id": emb,
                        "clustering_result_id": rid,
                        "medoid_embedding_id": medoid.get(label),
                    }
                )
                expected[model].append(
                    (
                        str(emb),
                        str(inv),
                        str(_id("run", r)),
                        "→".join(NETWORKS.get(r, ["m"])),
                        PROMPTS.get(r, f"p{r}"),
                        seq,
                        step,
                        label,
                        str(medoid[label]) if label != -1 else None,
                        texts[inv],
                        None,
                        None,
                    )
                )  # no tree kept
    with engine.begin() as conn:
        metadata.create_all(conn, tables=list(EXPERIMENT_TABLES) + list(RESULT_TABLES))
        for table, rows in (
            (run, run_rows),
            (invocation, inv_rows),
            (embedding, emb_rows),
            (clustering_result, res_rows),
            (embedding_cluster, ec_rows),
        ):
            if rows:
                conn.execute(sa.insert(table), rows)
    engine.dispose()
    return Known(url, result_ids, expected, labels)

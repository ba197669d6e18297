"""Where runs end and when they settle: ``trajectories`` read from the database, as tables and JSON.

The arithmetic is :mod:`cluster_workers.analysis.trajectories`.
"""

from __future__ import annotations

from dataclasses import dataclass

import sqlalchemy as sa

from cluster_workers.analysis.trajectories import LAST_K, Trajectories, trajectories
from cluster_workers.db.catalog import ResultSummary, find_result
from cluster_workers.db.connect import Database, as_database
from cluster_workers.db.experiment import texts_of
from cluster_workers.db.memberships import Labelled, labelled
from cluster_workers.errors import ClusterWorkersError
from cluster_workers.views.tables import clip, text_table


@dataclass(frozen=True)
class TrajectoryReport:
    result: ResultSummary
    trajectories: Trajectories
    medoid_texts: dict[int, str | None]  # rank -> medoid text
    by: str = "prompt"  # how runs are grouped: "prompt" (initial prompt) or "network"

    def as_dict(self) -> dict:
        t = self.trajectories
        return {
            "result": str(self.result.id),
            "model": self.result.model,
            "downsample": (self.result.parameters or {}).get("downsample"),
            "last_k": t.last_k,
            "overall": t.overall.as_dict(),
            "clusters": [{**r.as_dict(), "cluster": r.key, "medoid_text": self.medoid_texts.get(r.key)} for r in t.by_cluster],
            "by": self.by,
            GROUPS[self.by][0]: [{**r.as_dict(), GROUPS[self.by][1]: r.key} for r in t.by_group],
        }


GROUPS = {"prompt": ("prompts", "initial_prompt", "per initial prompt"), "network": ("networks", "network", "per network")}


def trajectories_in(
    conn: sa.Connection,
    result: ResultSummary,
    last_k: int = LAST_K,
    data: Labelled | None = None,
    by: str = "prompt",
    experiment: str | None = None,
) -> TrajectoryReport:
    """Where the result's runs end and when they settle; runs grouped ``by`` initial prompt or network."""
    if by not in GROUPS:
        raise ClusterWorkersError(f"--by must be prompt or network, got {by!r}")
    data = labelled(conn, result.id, experiment=experiment) if data is None else data
    t = trajectories(data.run_ids, data.prompts if by == "prompt" else data.networks, data.text_index, data.clusters, last_k)
    ranks = [r.key for r in t.by_cluster if r.key in data.medoids]
    texts = texts_of(conn, [data.medoids[k] for k in ranks])
    return TrajectoryReport(result, t, {k: texts.get(data.medoids[k]) for k in ranks}, by)


def load_trajectories(
    db: str | Database, result_id: str, last_k: int = LAST_K, by: str = "prompt", experiment: str | None = None
) -> TrajectoryReport:
    if last_k < 1:
        raise ClusterWorkersError("--last-k must be at least 1")
    if by not in GROUPS:
        raise ClusterWorkersError(f"--by must be prompt or network, got {by!r}")
    return as_database(db).read(
        lambda conn: trajectories_in(conn, find_result(conn, result_id), last_k, by=by, experiment=experiment)
    )


def _share(x: float | None) -> str:
    return "-" if x is None else f"{x:.0%}"


def _step(x: float | None) -> str:
    return "-" if x is None else f"{x:g}"


def trajectories_table(report: TrajectoryReport, limit: int = 20) -> str:
    t, o = report.trajectories, report.trajectories.overall
    by_cluster = t.by_cluster[:limit] if limit else t.by_cluster
    by_group = t.by_group[:limit] if limit else t.by_group
    label, heading = ("initial prompt", "per initial prompt") if report.by == "prompt" else ("network", "per network")
    head = (
        f"result {report.result.id}  model {report.result.model}: {o.runs:,} runs; "
        f"{_share(o.unsettled_share)} never settle (last {t.last_k} sampled texts span more than one cluster; "
        f"{o.short:,} runs shorter than that not judged); median entry step {_step(o.median_entry_step)}"
    )
    clusters = text_table(
        ["cluster", "runs ending", "settled", "unsettled", "median entry step", "medoid text"],
        [
            [
                "outliers" if r.key == -1 else str(r.key),
                f"{r.runs:,}",
                f"{r.settled:,}",
                _share(r.unsettled_share),
                _step(r.median_entry_step),
                clip(report.medoid_texts.get(r.key), 50),
            ]
            for r in by_cluster
        ],
        {0, 1, 2, 3, 4},
    )
    prompts = text_table(
        [label, "runs", "unsettled", "most runs end in", "share", "median entry step"],
        [
            [
                clip(str(r.key), 40),
                f"{r.runs:,}",
                _share(r.unsettled_share),
                "outliers" if r.top_end == -1 else str(r.top_end),
                _share(r.top_end_share),
                _step(r.median_entry_step),
            ]
            for r in by_group
        ],
        {1, 2, 3, 4, 5},
    )
    more = len(t.by_cluster) - limit
    tail = f"\n… {more} more end cluster(s); --limit 0 shows all" if limit and more > 0 else ""
    return f"{head}\n\nwhere runs end\n{clusters}{tail}\n\n{heading}\n{prompts}"

"""Transitions and run lengths of one result, read from the database, as tables and JSON.

The arithmetic is :mod:`cluster_workers.analysis.sequences` (the application's own
definitions); clusters are named by rank (1 = largest, -1 = outliers), with the
medoid's text beside them as the application labels them (``OUTLIER`` for outliers).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass

import sqlalchemy as sa

from cluster_workers.analysis.sequences import Stretch, run_lengths, stretch_summary, transitions
from cluster_workers.db.catalog import ResultSummary, find_result
from cluster_workers.db.connect import Database, as_database
from cluster_workers.db.experiment import texts_of
from cluster_workers.db.memberships import labelled
from cluster_workers.errors import ConfigError
from cluster_workers.views.tables import clip, text_table

GROUPINGS = ("network", "prompt")
OUTLIER_LABEL = "OUTLIER"


@dataclass(frozen=True)
class TransitionReport:
    result: ResultSummary
    by: str | None
    include_outliers: bool
    counts: dict[object, dict[tuple[int, int], int]]  # group -> (from, to) -> count
    labels: dict[int, str | None]  # rank -> medoid text

    def rows(self) -> list[dict]:
        """``{group, from_cluster, to_cluster, count}``, groups in order, then most frequent first."""
        out = []
        for group in sorted(self.counts, key=lambda g: (g is None, str(g))):
            for (a, b), count in sorted(self.counts[group].items(), key=lambda kv: (-kv[1], kv[0])):
                out.append({"group": group, "from_cluster": a, "to_cluster": b, "count": count})
        return out


@dataclass(frozen=True)
class RunLengthReport:
    result: ResultSummary
    include_outliers: bool
    stretches: list[Stretch]
    labels: dict[int, str | None]

    def rows(self) -> list[dict]:
        return [
            {
                "run_id": _uuid_text(s.run_id),
                "network": s.network,
                "initial_prompt": s.initial_prompt,
                "cluster": s.cluster,
                "length": s.length,
            }
            for s in self.stretches
        ]


def _uuid_text(value: object) -> str:
    """A run id as a canonical UUID string (SQLite hands back raw hex)."""
    try:
        return str(uuid.UUID(str(value)))
    except ValueError:
        return str(value)


def _labels(conn: sa.Connection, medoids: dict) -> dict[int, str | None]:
    texts = texts_of(conn, list(medoids.values()))
    return {rank: texts.get(m) for rank, m in medoids.items()} | {-1: OUTLIER_LABEL}


def load_transitions(
    db: str | Database, result_id: str, by: str | None = None, include_outliers: bool = False, experiment: str | None = None
) -> TransitionReport:
    if by is not None and by not in GROUPINGS:
        raise ConfigError(f"--by must be one of {', '.join(GROUPINGS)}, got {by!r}")

    def fn(conn: sa.Connection) -> TransitionReport:
        result = find_result(conn, result_id)
        data = labelled(conn, result.id, experiment=experiment)
        groups = None
        if by is not None:
            values = data.networks if by == "network" else data.prompts
            groups = dict(zip(data.run_ids.tolist(), values.tolist()))
        counts = transitions(data.run_ids, data.text_index, data.clusters, groups, include_outliers)
        return TransitionReport(
            result, by, include_outliers, {g: dict(c) for g, c in counts.items()}, _labels(conn, data.medoids)
        )

    return as_database(db).read(fn)


def load_run_lengths(
    db: str | Database, result_id: str, include_outliers: bool = False, experiment: str | None = None
) -> RunLengthReport:
    def fn(conn: sa.Connection) -> RunLengthReport:
        result = find_result(conn, result_id)
        data = labelled(conn, result.id, experiment=experiment)
        networks = dict(zip(data.run_ids.tolist(), data.networks.tolist()))
        prompts = dict(zip(data.run_ids.tolist(), data.prompts.tolist()))
        stretches = run_lengths(data.run_ids, data.text_index, data.clusters, networks, prompts, include_outliers)
        return RunLengthReport(result, include_outliers, stretches, _labels(conn, data.medoids))

    return as_database(db).read(fn)


def _name(rank: int) -> str:
    return "outliers" if rank == -1 else str(rank)


def transitions_table(report: TransitionReport, limit: int = 20) -> str:
    rows = report.rows()
    head = (
        f"result {report.result.id}  model {report.result.model}: {sum(r['count'] for r in rows):,} transitions"
        f"{' by ' + report.by if report.by else ''}; outliers {'kept' if report.include_outliers else 'dropped first'}"
    )
    parts = [head]
    for group in sorted(report.counts, key=lambda g: (g is None, str(g))):
        mine = [r for r in rows if r["group"] == group]
        shown = mine[:limit] if limit else mine
        table = text_table(
            ["from", "to", "count", "from medoid text", "to medoid text"],
            [[_name(r["from_cluster"]), _name(r["to_cluster"]), f"{r['count']:,}", clip(report.labels.get(r["from_cluster"]), 36),
              clip(report.labels.get(r["to_cluster"]), 36)] for r in shown],
            {0, 1, 2},
        )  # fmt: skip
        more = f"\n… {len(mine) - len(shown)} more; --limit 0 shows all" if len(mine) > len(shown) else ""
        parts.append((f"\n{report.by} {group}\n" if report.by else "\n") + table + more)
    return "\n".join(parts)


def run_lengths_table(report: RunLengthReport, limit: int = 20) -> str:
    summary = stretch_summary(report.stretches)
    shown = summary[:limit] if limit else summary
    head = (
        f"result {report.result.id}  model {report.result.model}: {len(report.stretches):,} stretches in "
        f"{len({s.run_id for s in report.stretches}):,} runs; outliers {'kept' if report.include_outliers else 'dropped first'}"
    )
    table = text_table(
        ["cluster", "stretches", "median length", "max length", "medoid text"],
        [[_name(c), f"{k:,}", f"{med:g}", f"{top:,}", clip(report.labels.get(c), 50)] for c, k, med, top in shown],
        {0, 1, 2, 3},
    )
    more = (
        f"\n… {len(summary) - len(shown)} more cluster(s); --limit 0 shows all; --json lists every stretch"
        if len(summary) > len(shown)
        else ""
    )
    return f"{head}\n\n{table}{more}"

"""Model agreement and run trajectories read from the database, as tables and JSON.

The database side is :mod:`cluster_workers.db.memberships`; the arithmetic is
:mod:`cluster_workers.analysis`. Compared results are each model's *latest*
result at a downsample (``results`` lists older ones).
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import sqlalchemy as sa

from cluster_workers.analysis.agreement import Agreement, NoSharedInvocations, agreement, align
from cluster_workers.analysis.trajectories import LAST_K, Trajectories, trajectories
from cluster_workers.db.memberships import Labelled, labelled, text_positions, texts_of
from cluster_workers.db.results import ResultSummary, find_result, list_results
from cluster_workers.errors import ClusterWorkersError
from cluster_workers.report import _short, _table, read_with


@dataclass(frozen=True)
class Comparison:
    a: ResultSummary
    b: ResultSummary
    downsample: int | None
    agreement: Agreement
    medoid_texts_a: dict[int, str | None]  # rank -> medoid text of model a's matched clusters

    def as_dict(self) -> dict:
        return {
            "model_a": self.a.model,
            "model_b": self.b.model,
            "result_a": str(self.a.id),
            "result_b": str(self.b.id),
            "downsample": self.downsample,
            "n": self.agreement.n,
            "ari": self.agreement.ari,
            "ami": self.agreement.ami,
            "matches": [
                {**vars(m), "medoid_text_a": self.medoid_texts_a.get(m.cluster_a)} for m in self.agreement.matches
            ],
        }


def latest_by_downsample(rows: list[ResultSummary]) -> dict[int | None, list[ResultSummary]]:
    """Each model's newest result per downsample (``rows`` newest first, as ``list_results`` gives them)."""
    chosen: dict[tuple[int | None, str], ResultSummary] = {}
    for r in rows:
        chosen.setdefault(((r.parameters or {}).get("downsample"), r.model), r)
    grouped: dict[int | None, list[ResultSummary]] = {}
    for (downsample, _), r in sorted(chosen.items(), key=lambda kv: (kv[0][0] is None, kv[0][0] or 0, kv[0][1])):
        grouped.setdefault(downsample, []).append(r)
    return grouped


def compare_in(
    conn: sa.Connection, downsample: int | None = None, cache: dict | None = None, positions: dict | None = None
) -> list[Comparison]:
    """Every pair of models clustered at the same downsample (or only at ``downsample``).

    ``cache`` (result id -> :class:`Labelled`) and ``positions`` (:func:`text_positions`) are reused when given.
    """
    groups = latest_by_downsample(list_results(conn))
    if downsample is not None:
        groups = {k: v for k, v in groups.items() if k == downsample}
    groups = {k: v for k, v in groups.items() if len(v) >= 2}
    if not groups:
        where = f"at downsample {downsample}" if downsample is not None else "at any one downsample"
        raise ClusterWorkersError(f"nothing to compare: fewer than two models have results {where}")
    cache = {} if cache is None else cache

    def get(r: ResultSummary) -> Labelled:
        nonlocal positions
        if r.id not in cache:
            positions = text_positions(conn) if positions is None else positions
            cache[r.id] = labelled(conn, r.id, positions)
        return cache[r.id]

    out = []
    for ds, results in groups.items():
        for a, b in itertools.combinations(results, 2):
            la, lb = get(a), get(b)
            try:
                agree = agreement(*align(la.invocation_ids, la.clusters, lb.invocation_ids, lb.clusters))
            except NoSharedInvocations:
                raise ClusterWorkersError(
                    f"models {a.model} and {b.model} share no clustered invocation at downsample {ds} "
                    f"(results {a.id.hex[:8]} and {b.id.hex[:8]})"
                ) from None
            medoids = [la.medoids[m.cluster_a] for m in agree.matches if m.cluster_a in la.medoids]
            texts = texts_of(conn, medoids)
            out.append(Comparison(a, b, ds, agree, {m.cluster_a: texts.get(la.medoids.get(m.cluster_a)) for m in agree.matches}))
    return out


def compare(url: str, downsample: int | None = None, busy_timeout: float = 30.0) -> list[Comparison]:
    return read_with(url, busy_timeout, lambda conn: compare_in(conn, downsample))


def compare_table(comparisons: list[Comparison]) -> str:
    head = _table(
        ["model a", "model b", "downsample", "n", "ARI", "AMI"],
        [[c.a.model, c.b.model, str(c.downsample), f"{c.agreement.n:,}", f"{c.agreement.ari:.3f}", f"{c.agreement.ami:.3f}"] for c in comparisons],
        {2, 3, 4, 5},
    )
    parts = [head]
    for c in comparisons:
        if not c.agreement.matches:
            parts.append(f"\n{c.a.model} -> {c.b.model} (downsample {c.downsample}): {c.a.model} has no cluster among the shared invocations")
            continue
        rows = [
            [str(m.cluster_a), f"{m.size_a:,}", "-" if m.cluster_b is None else str(m.cluster_b), f"{m.size_b:,}", f"{m.jaccard:.2f}",
             _short(c.medoid_texts_a.get(m.cluster_a), 50)]
            for m in c.agreement.matches
        ]
        parts.append(
            f"\n{c.a.model} -> {c.b.model} (downsample {c.downsample}): best match of {c.a.model}'s largest clusters\n"
            + _table([f"{c.a.model} #", "size", f"{c.b.model} #", "size", "Jaccard", f"{c.a.model} medoid text"], rows, {0, 1, 2, 3, 4})
        )
    return "\n".join(parts)


@dataclass(frozen=True)
class TrajectoryReport:
    result: ResultSummary
    trajectories: Trajectories
    medoid_texts: dict[int, str | None]  # rank -> medoid text

    def as_dict(self) -> dict:
        t = self.trajectories
        return {
            "result": str(self.result.id),
            "model": self.result.model,
            "downsample": (self.result.parameters or {}).get("downsample"),
            "last_k": t.last_k,
            "overall": t.overall.as_dict(),
            "clusters": [{**r.as_dict(), "cluster": r.key, "medoid_text": self.medoid_texts.get(r.key)} for r in t.by_cluster],
            "prompts": [{**r.as_dict(), "initial_prompt": r.key} for r in t.by_prompt],
        }


def trajectories_in(conn: sa.Connection, result: ResultSummary, last_k: int = LAST_K, data: Labelled | None = None) -> TrajectoryReport:
    data = labelled(conn, result.id) if data is None else data
    t = trajectories(data.run_ids, data.prompts, data.text_index, data.clusters, last_k)
    ranks = [r.key for r in t.by_cluster if r.key in data.medoids]
    texts = texts_of(conn, [data.medoids[k] for k in ranks])
    return TrajectoryReport(result, t, {k: texts.get(data.medoids[k]) for k in ranks})


def load_trajectories(url: str, result_id: str, last_k: int = LAST_K, busy_timeout: float = 30.0) -> TrajectoryReport:
    if last_k < 1:
        raise ClusterWorkersError("--last-k must be at least 1")
    return read_with(url, busy_timeout, lambda conn: trajectories_in(conn, find_result(conn, result_id), last_k))


def _share(x: float | None) -> str:
    return "-" if x is None else f"{x:.0%}"


def _step(x: float | None) -> str:
    return "-" if x is None else f"{x:g}"


def trajectories_table(report: TrajectoryReport, limit: int = 20) -> str:
    t, o = report.trajectories, report.trajectories.overall
    by_cluster = t.by_cluster[:limit] if limit else t.by_cluster
    by_prompt = t.by_prompt[:limit] if limit else t.by_prompt
    head = (
        f"result {report.result.id}  model {report.result.model}: {o.runs:,} runs; "
        f"{_share(o.unsettled_share)} never settle (last {t.last_k} sampled texts span more than one cluster; "
        f"{o.short:,} runs shorter than that not judged); median entry step {_step(o.median_entry_step)}"
    )
    clusters = _table(
        ["cluster", "runs ending", "settled", "unsettled", "median entry step", "medoid text"],
        [
            ["outliers" if r.key == -1 else str(r.key), f"{r.runs:,}", f"{r.settled:,}", _share(r.unsettled_share),
             _step(r.median_entry_step), _short(report.medoid_texts.get(r.key), 50)]
            for r in by_cluster
        ],
        {0, 1, 2, 3, 4},
    )
    prompts = _table(
        ["initial prompt", "runs", "unsettled", "most runs end in", "share", "median entry step"],
        [
            [_short(str(r.key), 40), f"{r.runs:,}", _share(r.unsettled_share), "outliers" if r.top_end == -1 else str(r.top_end),
             _share(r.top_end_share), _step(r.median_entry_step)]
            for r in by_prompt
        ],
        {1, 2, 3, 4, 5},
    )
    more = len(t.by_cluster) - limit
    tail = f"\n… {more} more end cluster(s); --limit 0 shows all" if limit and more > 0 else ""
    return f"{head}\n\nwhere runs end\n{clusters}{tail}\n\nper initial prompt\n{prompts}"


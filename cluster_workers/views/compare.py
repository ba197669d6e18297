"""Do the models agree? ``compare``: ARI and AMI between results, read from the database, as tables and JSON.

The database side is :mod:`cluster_workers.db.memberships`; the arithmetic is
:mod:`cluster_workers.analysis.agreement`. Compared results are each model's *latest*
result at a downsample (``results`` lists older ones).
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import sqlalchemy as sa

from cluster_workers.analysis.agreement import Agreement, NoSharedInvocations, agreement, align
from cluster_workers.db.catalog import ResultSummary, find_result, list_results
from cluster_workers.db.connect import Database, as_database
from cluster_workers.db.experiment import text_positions, texts_of
from cluster_workers.db.memberships import Labelled, labelled
from cluster_workers.errors import ClusterWorkersError
from cluster_workers.views.tables import clip, text_table


@dataclass(frozen=True)
class Comparison:
    a: ResultSummary
    b: ResultSummary
    downsample: int | None
    agreement: Agreement | None  # None: the pair could not be compared (see ``note``)
    medoid_texts_a: dict[int, str | None]  # rank -> medoid text of model a's matched clusters
    note: str = ""

    def as_dict(self) -> dict:
        agree = self.agreement
        return {
            "model_a": self.a.model,
            "model_b": self.b.model,
            "result_a": str(self.a.id),
            "result_b": str(self.b.id),
            "downsample": self.downsample,
            "n": agree.n if agree else 0,
            "ari": agree.ari if agree else None,
            "ami": agree.ami if agree else None,
            "note": self.note or None,
            "matches": [
                {**vars(m), "medoid_text_a": self.medoid_texts_a.get(m.cluster_a)} for m in (agree.matches if agree else [])
            ],
        }


@dataclass(frozen=True)
class CompareReport:
    comparisons: list[Comparison]
    left_out: list[tuple[ResultSummary, str]]  # results not compared, and why

    def as_dict(self) -> dict:
        return {
            "comparisons": [c.as_dict() for c in self.comparisons],
            "left_out": [{"result": str(r.id), "model": r.model, "reason": why} for r, why in self.left_out],
        }


def comparable_key(r: ResultSummary) -> tuple:
    """What two results must share to be compared: downsample, the clustering parameters and the engine."""
    p = r.parameters or {}
    requested = p.get("requested") or {
        k: p.get(k) for k in ("min_cluster_size", "min_samples", "cluster_selection_epsilon", "allow_single_cluster", "engine")
    }
    return (p.get("downsample"), tuple(sorted((k, str(v)) for k, v in requested.items())))


def latest_by_downsample(rows: list[ResultSummary]) -> dict[int | None, list[ResultSummary]]:
    """Each model's newest result per downsample (``rows`` newest first, as ``list_results`` gives them)."""
    chosen: dict[tuple[int | None, str], ResultSummary] = {}
    for r in rows:
        chosen.setdefault(((r.parameters or {}).get("downsample"), r.model), r)
    grouped: dict[int | None, list[ResultSummary]] = {}
    for (downsample, _), r in sorted(chosen.items(), key=lambda kv: (kv[0][0] is None, kv[0][0] or 0, kv[0][1])):
        grouped.setdefault(downsample, []).append(r)
    return grouped


def comparable_groups(rows: list[ResultSummary]) -> tuple[dict[tuple, list[ResultSummary]], list[tuple[ResultSummary, str]]]:
    """Each model's newest current result per comparison key (downsample, parameters, engine); what was left out."""
    left_out: list[tuple[ResultSummary, str]] = []
    chosen: dict[tuple, dict[str, ResultSummary]] = {}
    for r in rows:  # newest first
        if r.stale:
            left_out.append((r, "stale: the database's sample for these parameters has changed since"))
            continue
        per_model = chosen.setdefault(comparable_key(r), {})
        if r.model in per_model:
            continue  # an older result of the same model and parameters
        per_model[r.model] = r
    groups = {}
    for key, per_model in chosen.items():
        if len(per_model) >= 2:
            groups[key] = [per_model[m] for m in sorted(per_model)]
        else:
            only = next(iter(per_model.values()))
            left_out.append((only, "no other model has a result with the same downsample, parameters and engine"))
    return groups, left_out


def _compare_pair(conn, a, b, get) -> Comparison:  # type: ignore[no-untyped-def]
    downsample = (a.parameters or {}).get("downsample")
    la, lb = get(a), get(b)
    try:
        agree = agreement(*align(la.invocation_ids, la.clusters, lb.invocation_ids, lb.clusters))
    except NoSharedInvocations:
        return Comparison(a, b, downsample, None, {}, "no clustered invocation in common")
    medoids = [la.medoids[m.cluster_a] for m in agree.matches if m.cluster_a in la.medoids]
    texts = texts_of(conn, medoids)
    return Comparison(a, b, downsample, agree, {m.cluster_a: texts.get(la.medoids.get(m.cluster_a)) for m in agree.matches})


def compare_in(
    conn: sa.Connection, downsample: int | None = None, cache: dict | None = None, positions: dict | None = None,
    results: list[str] | None = None, check_stale: bool = True, experiment: str | None = None,
) -> CompareReport:  # fmt: skip
    """Every pair of models whose newest current results share downsample, parameters and engine (or only at
    ``downsample``); or the two ``results`` named. A pair that cannot be compared is reported in its row.

    ``cache`` (result id -> :class:`Labelled`) and ``positions`` (:func:`text_positions`) are reused when given.
    """
    cache = {} if cache is None else cache

    def get(r: ResultSummary) -> Labelled:
        nonlocal positions
        if r.id not in cache:
            positions = text_positions(conn) if positions is None else positions
            cache[r.id] = labelled(conn, r.id, positions, experiment)
        return cache[r.id]

    if results:
        if len(results) != 2:
            raise ClusterWorkersError("--result takes exactly two results (give it twice)")
        a, b = (find_result(conn, r) for r in results)
        return CompareReport([_compare_pair(conn, a, b, get)], [])
    rows = list_results(conn)
    if check_stale:
        from cluster_workers.views.tables import mark_stale

        rows = mark_stale(conn, rows)
    if downsample is not None:
        rows = [r for r in rows if (r.parameters or {}).get("downsample") == downsample]
    groups, left_out = comparable_groups(rows)
    if not groups:
        where = f"at downsample {downsample}" if downsample is not None else ""
        raise ClusterWorkersError(
            f"nothing to compare: no two models have current results {where} with the same downsample, parameters and engine".replace(
                "  ", " "
            )
        )
    out = [_compare_pair(conn, a, b, get) for key in sorted(groups, key=str) for a, b in itertools.combinations(groups[key], 2)]
    return CompareReport(out, left_out)


def compare(
    db: str | Database,
    downsample: int | None = None,
    results: list[str] | None = None,
    experiment: str | None = None,
) -> CompareReport:
    return as_database(db).read(lambda conn: compare_in(conn, downsample, results=results, experiment=experiment))


def _name(r: ResultSummary, same_model: bool) -> str:
    """A result as the compare table names it: its model, or -- two results of one model -- model, algorithm and layer."""
    if not same_model:
        return r.model
    return f"{r.model} {(r.algorithm or '').split(' ')[0]}/{r.layer} {r.id.hex[:8]}"


def compare_table(report: CompareReport) -> str:
    comparisons = report.comparisons

    def names(c: Comparison) -> tuple[str, str]:
        same = c.a.model == c.b.model
        return _name(c.a, same), _name(c.b, same)

    def cells(c: Comparison) -> list[str]:
        a, b = names(c)
        if c.agreement is None:
            return [a, b, str(c.downsample), "0", "-", "-", c.note]
        return [a, b, str(c.downsample), f"{c.agreement.n:,}", f"{c.agreement.ari:.3f}", f"{c.agreement.ami:.3f}", c.note]

    head = text_table(
        ["result a", "result b", "downsample", "n", "ARI", "AMI", "note"], [cells(c) for c in comparisons], {2, 3, 4, 5}
    )
    parts = [head]
    for r, why in report.left_out:
        parts.append(f"left out: {r.id.hex[:8]} ({r.model}): {why}")
    for c in comparisons:
        if c.agreement is None:
            continue
        a, b = names(c)
        if not c.agreement.matches:
            parts.append(f"\n{a} -> {b} (downsample {c.downsample}): {a} has no cluster among the shared invocations")
            continue
        rows = [
            [
                str(m.cluster_a),
                f"{m.size_a:,}",
                "-" if m.cluster_b is None else str(m.cluster_b),
                f"{m.size_b:,}",
                f"{m.jaccard:.2f}",
                clip(c.medoid_texts_a.get(m.cluster_a), 50),
            ]
            for m in c.agreement.matches
        ]
        parts.append(
            f"\n{a} -> {b} (downsample {c.downsample}): best match of {a}'s largest clusters\n"
            + text_table(["a #", "size", "b #", "size", "Jaccard", "a's medoid text"], rows, {0, 1, 2, 3, 4})
        )
    return "\n".join(parts)

"""Results as tables and JSON, read back without writing SQL."""

from __future__ import annotations

import dataclasses

import sqlalchemy as sa

from cluster_workers.db import experiment
from cluster_workers.db.catalog import ClusterSummary, ResultSummary, cluster_summaries, find_result, list_results
from cluster_workers.db.connect import Database, as_database

TEXT_WIDTH = 70


def mark_stale(conn: sa.Connection, rows: list[ResultSummary]) -> list[ResultSummary]:
    """Compare each result's sample fingerprint with the database's sample now (one count per sample rule:
    downsample, offset and experiment)."""
    current: dict[tuple, dict[str, dict]] = {}
    marked = []
    for r in rows:
        p = r.parameters or {}
        sample, downsample = p.get("sample"), p.get("downsample")
        if not sample or not downsample:
            marked.append(r)
            continue
        rule = (downsample, int(p.get("offset", 0)), p.get("experiment"))
        if rule not in current:
            current[rule] = experiment.counts(conn, downsample, None, rule[2], rule[1])[2]
        marked.append(dataclasses.replace(r, stale=current[rule].get(r.model) != sample))
    return marked


def load_results(db: str | Database, check_stale: bool = True) -> list[ResultSummary]:
    return as_database(db).read(lambda conn: mark_stale(conn, list_results(conn)) if check_stale else list_results(conn))


def load_clusters(db: str | Database, result_id: str) -> tuple[ResultSummary, list[ClusterSummary]]:
    def fn(conn: sa.Connection):  # type: ignore[no-untyped-def]
        summary = find_result(conn, result_id)
        return summary, with_parents(conn, summary.id, cluster_summaries(conn, summary.id))

    return as_database(db).read(fn)


def with_parents(conn: sa.Connection, result_id, clusters: list[ClusterSummary]) -> list[ClusterSummary]:  # type: ignore[no-untyped-def]
    """An evoc layer's clusters with their place in the layer tree: (layer, rank) of the coarser cluster holding each."""
    from cluster_workers.db.attached import layer_tree

    tree = layer_tree(conn, result_id)
    if tree is None:
        return clusters
    ranks: dict = {}
    for parent_id in {parent for _, parent, _ in tree.values()}:
        real = [c.medoid_embedding_id for c in cluster_summaries(conn, parent_id) if c.medoid_embedding_id is not None]
        ranks[parent_id] = {medoid: i + 1 for i, medoid in enumerate(real)}  # show's ranks: outliers apart
    out = []
    for c in clusters:
        place = tree.get(c.medoid_embedding_id) if c.medoid_embedding_id is not None else None
        if place is not None:
            layer, parent_id, medoid = place
            c = dataclasses.replace(c, parent=(layer, ranks[parent_id][medoid]))
        out.append(c)
    return out


def clip(text: str | None, width: int = TEXT_WIDTH) -> str:
    text = " ".join((text or "").split())
    return text if len(text) <= width else text[: width - 1] + "…"


def text_table(headers: list[str], rows: list[list[str]], right: set[int]) -> str:
    widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(headers)]

    def line(cells: list[str]) -> str:
        return "  ".join(c.rjust(w) if i in right else c.ljust(w) for i, (c, w) in enumerate(zip(cells, widths))).rstrip()

    return "\n".join([line(headers), line(["-" * w for w in widths]), *(line(r) for r in rows)])


def _params_brief(p: dict) -> str:
    keys = (
        "downsample",
        "offset",
        "min_cluster_size",
        "min_samples",
        "cluster_selection_epsilon",
        "engine",
        "base_min_cluster_size",
        "noise_level",
        "layers",
        "persistence",
    )  # the last four: EVoC layers (theirs, ours)
    recut = f" recut_from={str((p.get('recut') or {}).get('from', ''))[:8]}" if p.get("recut") else ""
    a = p.get("assign") or {}
    assigned = (f" assigned_from={str(p['assigned_from'])[:8]} frozen={a.get('frozen', 0):,} assigned={a.get('assigned', 0):,}"
                if p.get("assigned_from") else "")  # fmt: skip

    def value(v: object) -> str:
        return f"{v:.5g}" if isinstance(v, float) else str(v)

    return " ".join(f"{k}={value(p[k])}" for k in keys if k in p and not (k == "offset" and not p[k])) + recut + assigned


def results_json(rows: list[ResultSummary]) -> list[dict]:
    return [
        {
            "id": str(r.id),
            "model": r.model,
            "created_at": r.created_at.isoformat() if r.created_at else None,
            "sample_count": r.sample_count,
            "clusters": r.clusters,
            "outliers": r.outliers,
            "outlier_share": round(r.outlier_share, 6),
            "duration_s": r.duration_s,
            "algorithm": r.algorithm,
            "layer": r.layer,
            "made_by": r.made_by,
            "gone": r.gone,
            "stale": r.stale,
            "parameters": r.parameters,
        }
        for r in rows
    ]


def results_table(rows: list[ResultSummary]) -> str:
    if not rows:
        return "no clustering results yet (run `cluster-workers cluster`)"
    body = [
        [
            r.id.hex[:8],
            r.model,
            (r.algorithm or "").split(" ")[0],
            str(r.layer),
            r.made_by,
            r.created_at.strftime("%Y-%m-%d %H:%M") if r.created_at else "",
            f"{r.sample_count:,}" + (f" ({r.gone:,} gone)" if r.gone else ""),
            str(r.clusters),
            f"{r.outlier_share:.1%}",
            _duration(r),
            SAMPLE_NOW[r.stale],
            _params_brief(r.parameters or {}),
        ]
        for r in rows
    ]
    table = text_table(
        [
            "id",
            "model",
            "algorithm",
            "layer",
            "made by",
            "created",
            "members",
            "clusters",
            "outliers",
            "duration",
            "sample now",
            "parameters",
        ],
        body,
        {3, 6, 7, 8, 9},
    )
    if not all(r.ours for r in rows):
        table += (
            "\nmade by application: the experiment application's own results, in its own tables (read like any "
            "other; changed only by `delete ID` and `publish`)"
        )
    if any(r.gone for r in rows):
        table += "\ngone: members whose embeddings the application has deleted since; commands use the rest"
    if any(r.stale for r in rows):
        table += "\nsample now CHANGED: the database's sample for these parameters has changed since (cluster again to update)"
    if any(r.stale is None for r in rows) or any(_duration(r) == UNKNOWN for r in rows):
        table += "\nunknown: not recorded (the application's own results keep no sample or duration) or not checked"
    return table


UNKNOWN = "unknown"
SAMPLE_NOW = {True: "CHANGED", False: "same", None: UNKNOWN}  # stale, current, not known


def _duration(r: ResultSummary) -> str:
    """The clustering's wall time; unknown where it was not recorded (the application stamps start = end)."""
    seconds = r.duration_s
    if seconds is None or (not r.ours and seconds == 0):
        return UNKNOWN
    return f"{seconds:.1f}s"


def clusters_json(summary: ResultSummary, clusters: list[ClusterSummary], limit: int = 0) -> dict:
    real = [c for c in clusters if c.medoid_embedding_id is not None]
    outliers = sum(c.size for c in clusters if c.medoid_embedding_id is None)
    shown = real[:limit] if limit else real
    return {
        "result": results_json([summary])[0],
        "outliers": outliers,
        "clusters": [
            {
                "rank": i + 1,
                "size": c.size,
                "medoid_embedding_id": str(c.medoid_embedding_id),
                "medoid_text": c.medoid_text,
                **({"parent": {"layer": c.parent[0], "rank": c.parent[1]}} if c.parent else {}),
            }
            for i, c in enumerate(shown)
        ],
    }


def clusters_table(summary: ResultSummary, clusters: list[ClusterSummary], limit: int = 0) -> str:
    data = clusters_json(summary, clusters, limit)
    head = (
        f"result {summary.id}  model {summary.model}  {summary.sample_count:,} embeddings, "
        f"{summary.clusters} clusters, {data['outliers']:,} outliers ({summary.outlier_share:.1%})"
    )
    layered = any(c.parent for c in clusters)
    body = [
        [str(c["rank"]), f"{c['size']:,}", *([_parent_cell(c)] if layered else []), clip(c["medoid_text"])]
        for c in data["clusters"]
    ]
    more = summary.clusters - len(body)
    tail = f"\n… {more} more cluster(s); use --limit 0 to see all" if more > 0 else ""
    if layered:
        tail += "\nin: the coarser layer's cluster (layer/#rank) that holds it, from the evoc layer tree"
    headers = ["#", "size", *(["in"] if layered else []), "medoid text"]
    return head + "\n" + text_table(headers, body, {0, 1}) + tail


def _parent_cell(cluster: dict) -> str:
    parent = cluster.get("parent")
    return f"{parent['layer']}/#{parent['rank']}" if parent else "-"


def sweep_table(summary: ResultSummary, rows: list, plateaus: list | None = None) -> str:
    """``sweep``'s table: one row per setting (``views.sweep.SweepRow``)."""
    head = f"sweep of {summary.id.hex[:8]} ({summary.model}, {summary.sample_count:,} points, min_samples {summary.parameters.get('min_samples')})"
    body = [[str(r.min_cluster_size), f"{r.cluster_selection_epsilon:g}", r.cluster_selection_method, str(r.clusters),
             f"{r.outlier_share:.1%}", f"{r.largest_share:.1%}", f"{r.ari_vs_stored:.3f}"] for r in rows]  # fmt: skip
    table = (
        head
        + "\n"
        + text_table(
            ["min_cluster_size", "epsilon", "method", "clusters", "outliers", "largest", "ARI vs stored"],
            body,
            {0, 1, 3, 4, 5, 6},
        )
    )
    for p in plateaus or []:
        table += (
            f"\nflattest at epsilon {p.epsilon:g}: min_cluster_size {p.min_cluster_size_from}-{p.min_cluster_size_to} "
            f"({p.clusters[0]}-{p.clusters[1]} clusters, {p.outlier_share[0]:.1%}-{p.outlier_share[1]:.1%} outliers)"
        )
    return table


def stability_table(report) -> str:  # type: ignore[no-untyped-def]
    """``stability``'s table: per model each sample, then every pair's agreement and the worst."""
    lines = [f"stability at downsample {report.downsample}, offsets 0-{report.offsets - 1}, engine {report.engine}"]
    for m in report.models:
        lines.append("")
        lines.append(f"{m.model}: " + ", ".join(f"offset {s['offset']}: {s['points']:,} points, {s['clusters']} clusters, "
                                                  f"{s['outlier_share']:.1%} outliers" for s in m.samples))  # fmt: skip
        lines.append(text_table(["points of", "assigned to", "points", "ARI", "outliers own", "outliers assigned"],
                                [[f"offset {p.own}", f"offset {p.other}", f"{p.points:,}", f"{p.ari:.3f}", f"{p.own_outliers:.1%}",
                                  f"{p.assigned_outliers:.1%}"] for p in m.pairs], {2, 3, 4, 5}))  # fmt: skip
        if m.worst is not None:
            lines.append(f"worst pair: offset {m.worst.own} assigned to offset {m.worst.other}, ARI {m.worst.ari:.3f}")
    if report.kept:
        lines.append("\nkept: " + ", ".join(report.kept))
    return "\n".join(lines)

"""A self-contained HTML report of every clustering result (plots as inline SVG, no server needed).

The data comes from :mod:`.report_data`; this module renders it.
"""

from __future__ import annotations

import html
from pathlib import Path

import numpy as np

from cluster_workers import stopping
from cluster_workers.analysis.dynamics import absorption_curve
from cluster_workers.db.catalog import ResultSummary
from cluster_workers.db.connect import Database, as_database
from cluster_workers.views import plots
from cluster_workers.views.compare import Comparison
from cluster_workers.views.dynamics import CORE_PROBABILITY
from cluster_workers.views.report_data import TOP_CLUSTERS, Chains, ClusterMap, Detail, ReportData, report_data

STYLE = """
body { font-family: system-ui, sans-serif; margin: 2rem auto; max-width: 70rem; color: #222; }
h1 { margin-bottom: 0.2rem; } h2 { margin-top: 2.5rem; border-bottom: 1px solid #ccc; }
table { border-collapse: collapse; margin: 0.8rem 0; } td, th { padding: 0.25rem 0.6rem; border-bottom: 1px solid #eee; }
th { text-align: left; background: #f4f4f4; } td.num { text-align: right; font-variant-numeric: tabular-nums; }
.params { color: #555; font-size: 0.9rem; } figure { margin: 0.5rem 0; }
"""


def _dynamics_section(detail: Detail, model: str) -> list[str]:
    if not detail.kinetics:
        return []
    horizon = max((max(k.absorption_times, default=0) for k in detail.kinetics), default=0)
    ccdf = {k.group: tuple(k.dwell_summary()["ccdf"].values()) for k in detail.kinetics}
    absorbed = {k.group: absorption_curve(k.absorption_times, k.runs, horizon) for k in detail.kinetics}
    jumps: dict = {}
    for k in detail.kinetics:
        for pair, n in k.jumps.items():
            jumps[pair] = jumps.get(pair, 0) + n
    note = (
        f" At downsample {detail.downsample} a step is {detail.downsample} texts apart: shorter stays are invisible."
        if detail.downsample > 1
        else ""
    )
    return [
        "<h3>States and dwell times</h3><p class='params'>Core-set milestoning (core: membership probability &ge; "
        f"{CORE_PROBABILITY:g}; <code>cluster-workers kinetics</code>), times in text steps of the run.{note}</p>",
        f"<figure class='dwell'>{plots.dwell_ccdf_plot(ccdf, model)}</figure>",
        f"<figure class='state-graph'>{plots.state_graph(jumps, model)}</figure>",
        f"<figure class='absorption'>{plots.absorption_plot(absorbed, model)}</figure>",
    ]


def _fixed_points_section(report) -> list[str]:  # type: ignore[no-untyped-def]
    e = html.escape
    if report is None or not report.groups:
        return []
    parts = [
        f"<h2>Fixed points</h2><p class='params'>The caption constant to the end of the run for at least {report.min_repeats} "
        "texts, every text step, no clustering (<code>cluster-workers fixed-points</code>).</p><table class='fixed-points'>"
        "<tr><th>network</th><th>runs</th><th>absorbed</th><th>absorbed at step (median)</th><th>most common fixed point</th></tr>"
    ]
    for g in report.groups:
        top = f"{e(g.top_captions[0][0])} &times;{g.top_captions[0][1]}" if g.top_captions else ""
        median = "" if g.time_to_absorption["median"] is None else f"{g.time_to_absorption['median']:g}"
        parts.append(
            f"<tr><td>{e(str(g.group))}</td><td class='num'>{g.runs}</td><td class='num'>{g.absorbed} "
            f"({g.absorbed_share:.0%})</td><td class='num'>{median}</td><td>{top}</td></tr>"
        )
    parts.append("</table>")
    return parts


def _heatmap(downsample: int | None, comparisons: list[Comparison]) -> str:
    models = sorted({c.a.model for c in comparisons} | {c.b.model for c in comparisons})
    ari = np.eye(len(models))
    for c in comparisons:
        i, j = models.index(c.a.model), models.index(c.b.model)
        ari[i, j] = ari[j, i] = c.agreement.ari if c.agreement else np.nan
    return plots.agreement_heatmap(models, ari, downsample)


def _agreement_section(comparisons: dict[int | None, list[Comparison]], left_out: list | None = None) -> list[str]:
    e = html.escape
    if not comparisons:
        return []
    parts = [
        "<h2 id='agreement'>Do the models agree?</h2><p class='params'>Each model's newest current result, paired only "
        "with results of the same downsample, parameters and engine, on the invocations both clustered; outliers "
        "count as one group.</p>"
    ]
    if left_out:
        parts.append(
            "<p class='params'>Not compared: "
            + "; ".join(f"{e(r.model)} {r.id.hex[:8]} ({e(why)})" for r, why in left_out)
            + "</p>"
        )
    for downsample, comps in comparisons.items():
        parts.append("<table><tr><th>model a</th><th>model b</th><th>downsample</th><th>shared</th><th>ARI</th><th>AMI</th></tr>")
        for c in comps:
            if c.agreement is None:
                parts.append(
                    f"<tr><td>{e(c.a.model)}</td><td>{e(c.b.model)}</td><td class='num'>{downsample}</td>"
                    f"<td colspan='3'>{e(c.note)}</td></tr>"
                )
                continue
            parts.append(
                f"<tr><td>{e(c.a.model)}</td><td>{e(c.b.model)}</td><td class='num'>{downsample}</td>"
                f"<td class='num'>{c.agreement.n:,}</td><td class='num'>{c.agreement.ari:.3f}</td>"
                f"<td class='num'>{c.agreement.ami:.3f}</td></tr>"
            )
        parts.append(f"</table><figure>{_heatmap(downsample, comps)}</figure>")
    return parts


def _chains_section(c: Chains, model: str) -> list[str]:
    parts = []
    if c.transitions.any():
        parts.append(
            "<h3>Transitions</h3><p class='params'>Consecutive sampled texts of each run, outliers dropped first "
            "(<code>cluster-workers transitions</code>).</p>"
            f"<figure class='transitions'>{plots.transition_heatmap(c.transitions, c.ranks, model)}</figure>"
        )
    if c.stretch_lengths.size:
        parts.append(
            "<h3>Run lengths</h3><p class='params'>How long a run stays in one cluster "
            "(<code>cluster-workers run-lengths</code>).</p>"
            f"<figure class='run-lengths'>{plots.run_length_histogram(c.stretch_lengths, model)}</figure>"
        )
    if c.networks and c.grid.any():
        parts.append(
            f"<h3>Networks</h3><figure class='networks'>{plots.network_grid(c.networks, c.grid_columns, c.grid, model)}</figure>"
        )
    return parts


def _map_figure(m: ClusterMap, model: str, library: dict) -> str:
    """The explorable plotly map (plotly.js inlined once per page), or the static SVG map without plotly."""
    interactive = plots.interactive_map(m.points, m.clusters, m.hover, m.medoids, m.axes, model, not library.get("done"))
    if interactive is not None:
        library["done"] = True
        return f"<figure class='map interactive'>{interactive}</figure>"
    return f"<figure class='map'>{plots.cluster_map(m.points, m.clusters, m.medoids, m.axes, model)}</figure>"


def _detail_section(detail: Detail, model: str, library: dict | None = None) -> list[str]:
    e = html.escape
    t = detail.trajectories
    o = t.trajectories.overall
    share = "-" if o.unsettled_share is None else f"{o.unsettled_share:.0%}"
    parts = [
        f"<h3>Where runs end</h3><p>{o.runs:,} runs; {share} never settle (their last {t.trajectories.last_k} sampled "
        f"texts span more than one cluster; {o.short:,} shorter runs not judged).</p>"
        "<table class='ends'><tr><th>cluster</th><th>runs ending</th><th>unsettled</th><th>median entry step</th>"
        "<th>medoid text</th></tr>"
    ]
    for row in t.trajectories.by_cluster[:TOP_CLUSTERS]:
        unsettled = "-" if row.unsettled_share is None else f"{row.unsettled_share:.0%}"
        step = "-" if row.median_entry_step is None else f"{row.median_entry_step:g}"
        name = "outliers" if row.key == -1 else str(row.key)
        parts.append(
            f"<tr><td class='num'>{name}</td><td class='num'>{row.runs:,}</td><td class='num'>{unsettled}</td>"
            f"<td class='num'>{step}</td><td>{e(t.medoid_texts.get(row.key) or '')}</td></tr>"
        )
    parts.append("</table>")
    if detail.panel_runs:
        parts.append(f"<figure class='trajectories'>{plots.trajectory_panel(detail.panel_runs, model)}</figure>")
    if detail.sweep:
        rows = detail.sweep
        parts.append(
            "<h3>Other epsilons, from the stored tree</h3><p class='params'>Re-cut without reclustering "
            "(<code>cluster-workers sweep</code> / <code>recut</code>).</p>"
            f"<figure class='sweep'>{plots.sweep_panel([r.cluster_selection_epsilon for r in rows], [r.clusters for r in rows], [r.outlier_share for r in rows], model, rows[0].min_cluster_size)}</figure>"
        )
    if detail.size_sweep:
        rows, flat = detail.size_sweep, detail.plateaus[0] if detail.plateaus else None
        where = (
            (
                f" Flattest: min_cluster_size {flat.min_cluster_size_from}-{flat.min_cluster_size_to} "
                f"({flat.clusters[0]}-{flat.clusters[1]} clusters, {flat.outlier_share[0]:.0%}-{flat.outlier_share[1]:.0%} outliers)."
            )
            if flat
            else ""
        )
        parts.append(
            f"<h3>Outliers against min_cluster_size, from the stored tree</h3><p class='params'>At epsilon "
            f"{rows[0].cluster_selection_epsilon:g} (<code>cluster-workers sweep --min-cluster-size A:B:logK</code>).{where}</p>"
            f"<figure class='size-sweep'>{plots.size_sweep_panel(rows, flat, model)}</figure>"
        )
    if detail.density is not None:
        d = detail.density
        dip = (
            f"Hartigan's dip test ({d.dip.library}) on the log core distance: D = {d.dip.statistic:.4f}, p = {d.dip.p_value:.3g}: {d.dip.verdict}."
            if d.dip
            else ""
        )
        parts.append(
            f"<h3>Density</h3><p class='params'>Core distance = distance to the k-th nearest other point, "
            f"k = {d.min_samples} (hdbscan's min_samples); small is dense (<code>cluster-workers density</code>). {html.escape(dip)}</p>"
            f"<figure class='density'>{plots.density_panel(d, model)}</figure>"
        )
    if detail.chains is not None:
        parts.extend(_chains_section(detail.chains, model))
    parts.extend(_dynamics_section(detail, model))
    if detail.cluster_map is not None:
        parts.append(_map_figure(detail.cluster_map, model, library if library is not None else {}))
    return parts


# Longer than 50 lines on purpose: the page top to bottom, in the order it reads.
def render(data: ReportData, source: str) -> str:
    """The whole page as one HTML string."""
    e = html.escape
    entries = data.entries
    latest: dict[str, ResultSummary] = {}
    for summary, _ in entries:
        if summary.model not in latest:  # newest first
            latest[summary.model] = summary
    parts = [
        "<!doctype html><html><head><meta charset='utf-8'><title>cluster_workers report</title>",
        f"<style>{STYLE}</style></head><body>",
        "<h1>Clustering results</h1>",
        f"<p class='params'>database {e(source)} &middot; {len(entries)} result(s)</p>",
    ]
    if not entries:
        parts.append("<p>No clustering results yet.</p></body></html>")
        return "".join(parts)
    parts.append(
        "<h2>Models side by side (latest result each)</h2><table><tr><th>model</th><th>samples</th>"
        "<th>clusters</th><th>outliers</th><th>largest cluster</th><th>duration</th><th>downsample</th></tr>"
    )
    for summary, clusters in entries:
        if latest.get(summary.model) is not summary:
            continue
        largest = max((c.size for c in clusters if c.medoid_embedding_id is not None), default=0)
        parts.append(
            f"<tr><td>{e(summary.model)}</td><td class='num'>{summary.sample_count:,}</td>"
            f"<td class='num'>{summary.clusters}</td><td class='num'>{summary.outlier_share:.1%}</td>"
            f"<td class='num'>{largest:,}</td><td class='num'>{(summary.duration_s or 0):.1f} s</td>"
            f"<td class='num'>{e(str(summary.parameters.get('downsample', '')))}</td></tr>"
        )
    parts.append("</table>")
    parts.append(f"<figure>{plots.comparison_plot(list(latest.values()))}</figure>")
    library: dict = {}  # plotly.js goes into the page once, with the first map
    parts.extend(_agreement_section(data.comparisons, data.left_out))
    parts.extend(_fixed_points_section(data.fixed_points))
    for summary, clusters in entries:
        params = ", ".join(f"{k}={v}" for k, v in summary.parameters.items() if not isinstance(v, dict) and k != "run_key")
        sizes = (
            f"<figure>{plots.size_plot(summary, clusters)}</figure>"
            if summary.clusters
            else "<p>No clusters: every embedding is an outlier.</p>"
        )
        parts.append(
            f"<h2 id='r{summary.id.hex}'>{e(summary.model)} &middot; result {summary.id.hex[:8]}</h2>"
            f"<p>{summary.sample_count:,} embeddings, {summary.clusters} clusters, "
            f"{summary.outliers:,} outliers ({summary.outlier_share:.1%}), {(summary.duration_s or 0):.1f} s, "
            f"made {summary.created_at:%Y-%m-%d %H:%M} UTC</p><p class='params'>{e(params)}</p>{sizes}"
            "<table><tr><th>#</th><th>size</th><th>medoid text</th></tr>"
        )
        real = [c for c in clusters if c.medoid_embedding_id is not None]
        for rank, c in enumerate(real[:TOP_CLUSTERS], 1):
            parts.append(f"<tr><td class='num'>{rank}</td><td class='num'>{c.size:,}</td><td>{e(c.medoid_text or '')}</td></tr>")
        parts.append("</table>")
        if summary.id in data.details and summary.clusters:
            parts.extend(_detail_section(data.details[summary.id], summary.model, library))
    parts.append("</body></html>")
    return "".join(parts)


def write_report(db: str | Database, output_dir: Path) -> Path:
    """Read every result and write ``output_dir/report.html``; returns its path."""
    db = as_database(db)
    data = db.read(report_data)
    from cluster_workers.db.connect import describe

    page = render(data, describe(db.url))
    stopping.check("while building the report", "no report was written")
    output_dir.mkdir(parents=True, exist_ok=True)
    path = output_dir / "report.html"
    path.write_text(page, encoding="utf-8")
    return path

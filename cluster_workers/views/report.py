"""A self-contained HTML report of every clustering result (plots as inline SVG, no server needed).

What it shows is read first, in one pass over the database (:func:`report_data`: a plain
:class:`ReportData`), then rendered in reading order; the figures are :mod:`.plots`.
"""

from __future__ import annotations

import html
import uuid
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import sqlalchemy as sa

from cluster_workers import stopping
from cluster_workers.analysis import sequences
from cluster_workers.analysis.dynamics import absorption_curve, milestone
from cluster_workers.analysis.projection import pca_2d, umap_2d
from cluster_workers.db.attached import load_source, read_tree
from cluster_workers.db.catalog import ClusterSummary, ResultSummary, cluster_summaries, list_results
from cluster_workers.db.connect import Database, as_database
from cluster_workers.db.experiment import embedding_details, text_positions, vectors_of
from cluster_workers.db.memberships import Labelled, labelled, sample_embedding_ids
from cluster_workers.errors import ClusterWorkersError
from cluster_workers.views import plots
from cluster_workers.views.compare import Comparison, compare_in, latest_by_downsample
from cluster_workers.views.density import result_density
from cluster_workers.views.dynamics import CORE_PROBABILITY, fixed_points_in, group_kinetics
from cluster_workers.views.sweep import flattest, parse_values, sweep_source
from cluster_workers.views.trajectories import TrajectoryReport, trajectories_in

# What the HTML report shows, read in one pass over the database: per result its details, the agreements, the
# fixed points. No HTML here: :mod:`.report` renders it.

TOP_CLUSTERS = 10
MAP_SAMPLE = 3_000  # points per 2-D map
PANEL_RUNS = 40  # runs per trajectory panel
SWEEP_EPSILONS = [0.0, 0.1, 0.2, 0.3, 0.5, 0.75, 1.0]  # the sweep panel's x axis
SWEEP_SIZES = 20  # min_cluster_size settings of the size panel


@dataclass(frozen=True)
class ClusterMap:
    points: np.ndarray  # (n, 2)
    clusters: np.ndarray  # (n,) rank, -1 outlier
    medoids: dict[int, np.ndarray]  # rank -> (2,)
    axes: tuple[str, str]
    hover: list[str] = field(default_factory=list)  # per point: its cluster, run and text (HTML-escaped)


@dataclass(frozen=True)
class Chains:
    """The application's own measures for one result: transitions, run lengths, and where each network's runs end."""

    ranks: list[int]  # the top clusters, 1..k
    transitions: np.ndarray  # (k, k) counts from -> to, outliers dropped first
    stretch_lengths: np.ndarray  # every stretch's length, outliers dropped first
    networks: list[str]  # rows of the grid, most runs first
    grid_columns: list[int]  # top clusters, then -1 (outliers)
    grid: np.ndarray  # (networks, columns): runs ending there


@dataclass(frozen=True)
class Detail:
    """The heavier panels, for each model's latest result at each downsample."""

    trajectories: TrajectoryReport
    panel_runs: list  # RunPath, the sampled runs shown
    cluster_map: ClusterMap | None
    sweep: list = field(default_factory=list)  # SweepRow per epsilon on the stored tree; empty without a tree
    chains: Chains | None = None
    kinetics: list = field(default_factory=list)  # analysis.dynamics.Kinetics per network
    downsample: int = 1
    size_sweep: list = field(default_factory=list)  # SweepRow per min_cluster_size on the stored tree
    plateaus: list = field(default_factory=list)  # views.sweep.Plateau of size_sweep
    density: object = None  # analysis.density.Density of the result's core distances (None without them)


@dataclass
class ReportData:
    entries: list[tuple[ResultSummary, list[ClusterSummary]]]
    comparisons: dict[int | None, list[Comparison]] = field(default_factory=dict)
    left_out: list = field(default_factory=list)  # (result, why) not compared
    details: dict[uuid.UUID, Detail] = field(default_factory=dict)
    fixed_points: object = None  # views.dynamics.FixedPointReport, per network


def _panel_runs(report: TrajectoryReport, limit: int = PANEL_RUNS, seed: int = 0) -> list:
    """A seeded sample of runs with at least two sampled texts, ordered by where and when they settle."""
    runs = [p for p in report.trajectories.runs if len(p.clusters) >= 2]
    if len(runs) > limit:
        pick = np.random.default_rng(seed).choice(len(runs), size=limit, replace=False)
        runs = [runs[i] for i in sorted(pick.tolist())]
    return sorted(runs, key=lambda p: (p.end == -1, p.end, p.entry_step))


def _cluster_map(conn: sa.Connection, result_id: uuid.UUID, medoid_ids: dict[int, uuid.UUID], seed: int = 0) -> ClusterMap | None:
    sample = sample_embedding_ids(conn, result_id, MAP_SAMPLE, seed)
    top = {rank: mid for rank, mid in medoid_ids.items() if rank <= TOP_CLUSTERS}
    vectors = vectors_of(conn, [emb for emb, _ in sample] + list(top.values()))
    if not vectors:
        return None
    dim = Counter(len(v) for v in vectors.values()).most_common(1)[0][0]
    rank_of = {mid: rank for rank, mid in medoid_ids.items()}
    rows = [(emb, rank_of.get(medoid, -1)) for emb, medoid in sample if len(vectors.get(emb, ())) == dim]
    details = embedding_details(conn, [emb for emb, _ in rows])
    tops = [(rank, mid) for rank, mid in sorted(top.items()) if len(vectors.get(mid, ())) == dim]
    stacked = np.stack([vectors[emb] for emb, _ in rows] + [vectors[mid] for _, mid in tops])
    points = umap_2d(stacked, seed)
    if points is None:
        points, share = pca_2d(stacked)
        axes = (f"PC1 ({share[0]:.0%} of variance)", f"PC2 ({share[1]:.0%})")
    else:
        axes = ("UMAP 1", "UMAP 2")
    n = len(rows)
    hover = [_hover(rank, details.get(emb)) for emb, rank in rows]
    return ClusterMap(
        points[:n],
        np.array([r for _, r in rows], dtype=np.int64),
        {rank: points[n + i] for i, (rank, _) in enumerate(tops)},
        axes,
        hover,
    )


def _hover(rank: int, detail: tuple | None) -> str:
    """A map point's hover text: cluster, run and step, and the text wrapped (HTML-escaped)."""
    import textwrap

    run_id, seq, text = detail if detail is not None else (None, None, None)
    head = f"<b>{'outlier' if rank == -1 else f'cluster {rank}'}</b> · run {str(run_id)[:8]} step {seq}"
    body = "<br>".join(html.escape(line) for line in textwrap.wrap(text or "", 70)[:6])
    return f"{head}<br>{body}"


GRID_NETWORKS = 12  # networks shown in the grid


def _chains(data: Labelled, ends: list) -> Chains:
    """Transitions between the top clusters, stretch lengths, and the network x end-cluster grid."""
    ranks = [r for r in range(1, TOP_CLUSTERS + 1) if r in data.medoids]
    network_of = dict(zip(data.run_ids.tolist(), data.networks.tolist()))
    prompt_of = dict(zip(data.run_ids.tolist(), data.prompts.tolist()))
    counts = sequences.transitions(data.run_ids, data.text_index, data.clusters).get(None, Counter())
    matrix = np.zeros((len(ranks), len(ranks)), dtype=np.int64)
    for (a, b), c in counts.items():
        if a in ranks and b in ranks:
            matrix[a - 1, b - 1] = c
    stretches = sequences.run_lengths(data.run_ids, data.text_index, data.clusters, network_of, prompt_of)
    runs_of = Counter(network_of.get(p.run_id) or "?" for p in ends)
    networks = [name for name, _ in runs_of.most_common(GRID_NETWORKS)]
    columns = ranks + [-1]
    grid = np.zeros((len(networks), len(columns)), dtype=np.int64)
    for p in ends:
        net = network_of.get(p.run_id) or "?"
        if net in networks and p.end in columns:
            grid[networks.index(net), columns.index(p.end)] += 1
    return Chains(ranks, matrix, np.array([s.length for s in stretches], dtype=np.int64), networks, columns, grid)


def _sweep(conn: sa.Connection, result: ResultSummary) -> list:
    """The result's epsilon sweep at its own min_cluster_size, from its stored tree (empty without one)."""
    if read_tree(conn, result.id) is None:
        return []
    return sweep_source(load_source(conn, result.id.hex), SWEEP_EPSILONS, [])


def _size_sweep(conn: sa.Connection, result: ResultSummary) -> tuple[list, list]:
    """Clusters and outliers along min_cluster_size (log-spaced up to a tenth of the sample) at the result's epsilon,
    and where they are flattest; empty without a tree."""
    if read_tree(conn, result.id) is None or result.sample_count < 20:
        return [], []
    sizes = parse_values(f"2:{max(3, result.sample_count // 10)}:log{SWEEP_SIZES}", int)
    rows = sweep_source(load_source(conn, result.id.hex), [], sizes)
    return rows, flattest(rows)


def _density(conn: sa.Connection, result: ResultSummary) -> object:
    if read_tree(conn, result.id) is None or result.sample_count < 20:
        return None
    return result_density(conn, result.id.hex)[1]


def report_data(conn: sa.Connection) -> ReportData:
    """Everything the page shows, read in one connection."""
    data = ReportData([(r, cluster_summaries(conn, r.id)) for r in list_results(conn)])
    cache: dict[uuid.UUID, Labelled] = {}
    latest = latest_by_downsample([r for r, _ in data.entries])
    positions = text_positions(conn) if latest else None
    try:  # like with like: the same downsample, parameters and engine; stale results left out
        compared = compare_in(conn, cache=cache, positions=positions)
        for c in compared.comparisons:
            data.comparisons.setdefault(c.downsample, []).append(c)
        data.left_out = compared.left_out
    except ClusterWorkersError:
        pass  # nothing comparable
    for _downsample, results in latest.items():
        for r in results:
            if r.id not in cache:
                cache[r.id] = labelled(conn, r.id, positions)
            traj = trajectories_in(conn, r, data=cache[r.id])
            data.details[r.id] = Detail(
                traj,
                _panel_runs(traj),
                _cluster_map(conn, r.id, cache[r.id].medoids),
                _sweep(conn, r),
                _chains(cache[r.id], traj.trajectories.runs),
                *_kinetics(conn, r, positions),
                *_size_sweep(conn, r),
                _density(conn, r),
            )
    if data.entries:
        data.fixed_points = fixed_points_in(conn)
    return data


def _kinetics(conn: sa.Connection, result: ResultSummary, positions: dict) -> tuple[list, int]:
    """The result's kinetics per network at the default core threshold (``cluster-workers kinetics``)."""
    data = labelled(conn, result.id, positions, with_probabilities=True)
    runs = milestone(data.run_ids, data.text_index, data.clusters, data.stored_probabilities, CORE_PROBABILITY)
    downsample = int((result.parameters or {}).get("downsample") or 1)
    return group_kinetics(data, runs, "network", downsample, tail_test=False), downsample


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


# Reads in one piece: the page top to bottom, in the order it reads.
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


def write_report(db: str | Database, output: Path) -> Path:
    """Read every result and write the report to ``output`` when it names an ``.html`` file, else to
    ``output/report.html``; returns its path."""
    db = as_database(db)
    data = db.read(report_data)
    from cluster_workers.db.connect import describe

    page = render(data, describe(db.url))
    stopping.check("while building the report", "no report was written")
    output = Path(output)
    path = output if output.suffix.lower() in (".html", ".htm") else output / "report.html"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(page, encoding="utf-8")
    return path

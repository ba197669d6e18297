"""The report's figures (matplotlib, rendered to inline SVG): pure, data in, SVG text out."""

from __future__ import annotations

import io

import numpy as np

from cluster_workers.analysis.trajectories import RunPath
from cluster_workers.db.catalog import ClusterSummary, ResultSummary
from cluster_workers.errors import ClusterWorkersError

TOP_COLOURS = 10  # clusters 1..10 get their own colour; others are grey, outliers pale


def _pyplot():
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise ClusterWorkersError("the report needs matplotlib: pip install 'cluster-workers[report]'") from None
    return plt


def _integer_ticks():  # type: ignore[no-untyped-def]
    from matplotlib.ticker import MaxNLocator

    return MaxNLocator(integer=True)


def _svg(fig) -> str:  # type: ignore[no-untyped-def]
    buf = io.StringIO()
    fig.savefig(buf, format="svg", bbox_inches="tight", dpi=110)
    _pyplot().close(fig)
    text = buf.getvalue()
    return text[text.index("<svg") :]


def size_plot(summary: ResultSummary, clusters: list[ClusterSummary]) -> str:
    plt = _pyplot()
    sizes = sorted((c.size for c in clusters if c.medoid_embedding_id is not None), reverse=True)
    fig, ax = plt.subplots(figsize=(6, 2.8))
    ax.bar(range(1, len(sizes) + 1), sizes, color="#3b75af", width=1.0, rasterized=len(sizes) > 200)
    ax.set_yscale("log")
    from matplotlib.ticker import FuncFormatter, LogLocator

    ax.yaxis.set_major_locator(LogLocator(subs=(1.0, 2.0, 5.0)))
    ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:,.0f}" if v >= 1 else ""))
    ax.yaxis.set_minor_formatter(FuncFormatter(lambda v, _: ""))
    ax.set_xlabel("cluster rank")
    ax.xaxis.set_major_locator(_integer_ticks())
    ax.set_ylabel("members (log)")
    ax.set_title(f"{summary.model}: {len(sizes)} clusters, {summary.outlier_share:.1%} outliers", fontsize=10)
    return _svg(fig)


def comparison_plot(latest: list[ResultSummary]) -> str:
    plt = _pyplot()
    fig, (a, b) = plt.subplots(1, 2, figsize=(8, 2.8))
    names = [r.model for r in latest]
    a.bar(names, [r.clusters for r in latest], color="#3b75af")
    a.set_title("clusters", fontsize=10)
    b.bar(names, [100 * r.outlier_share for r in latest], color="#d9822b")
    b.set_title("outliers (%)", fontsize=10)
    a.yaxis.set_major_locator(_integer_ticks())
    for ax in (a, b):
        ax.tick_params(axis="x", labelrotation=20)
    return _svg(fig)


def _cluster_colours(clusters: np.ndarray) -> np.ndarray:
    """RGBA per label: tab10 for ranks 1..10, grey for the rest, pale for outliers (-1)."""
    plt = _pyplot()
    tab = plt.get_cmap("tab10")
    out = np.tile(np.array([0.55, 0.55, 0.55, 0.6]), (len(clusters), 1))
    out[clusters == -1] = (0.85, 0.85, 0.85, 0.5)
    for rank in range(1, TOP_COLOURS + 1):
        out[clusters == rank] = tab(rank - 1)
    return out


def agreement_heatmap(models: list[str], ari: np.ndarray, downsample: int | None) -> str:
    """Models x models adjusted Rand index, values written in the cells."""
    plt = _pyplot()
    size = 1.2 + 0.7 * len(models)
    fig, ax = plt.subplots(figsize=(size + 1.2, size))
    image = ax.imshow(ari, vmin=0, vmax=1, cmap="viridis")
    ax.set_xticks(range(len(models)), models, rotation=30, ha="right")
    ax.set_yticks(range(len(models)), models)
    for i in range(len(models)):
        for j in range(len(models)):
            ax.text(j, i, f"{ari[i, j]:.2f}", ha="center", va="center", color="white" if ari[i, j] < 0.6 else "black", fontsize=9)
    fig.colorbar(image, ax=ax, label="ARI")
    ax.set_title(f"model agreement (ARI), downsample {downsample}", fontsize=10)
    return _svg(fig)


def trajectory_panel(paths: list[RunPath], model: str) -> str:
    """Runs as rows, their sampled texts as columns, coloured by cluster (outliers pale, no text white)."""
    plt = _pyplot()
    width = max(len(p.clusters) for p in paths)
    colours = np.ones((len(paths), width, 4))
    for row, p in enumerate(paths):
        colours[row, : len(p.clusters)] = _cluster_colours(p.clusters)
    fig, ax = plt.subplots(figsize=(7, 0.5 + 0.14 * len(paths)))
    ax.imshow(colours, aspect="auto", interpolation="nearest")
    ax.set_xlabel("sampled text of the run (0 = first)")
    ax.set_ylabel("run")
    ax.xaxis.set_major_locator(_integer_ticks())
    ax.set_yticks([])
    ax.set_title(
        f"{model}: {len(paths)} runs, coloured by cluster (1-{TOP_COLOURS} in colour, grey other, pale outlier)", fontsize=9
    )
    return _svg(fig)


def cluster_map(
    points: np.ndarray, clusters: np.ndarray, medoids: dict[int, np.ndarray], axes: tuple[str, str], model: str
) -> str:
    """A 2-D map of a sample coloured by cluster, the top clusters' medoids marked with their rank."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6, 5))
    order = np.argsort(clusters != -1, kind="stable")  # outliers underneath
    # thousands of dots: drawn as one embedded image inside the SVG (fast to write, small, still self-contained)
    ax.scatter(points[order, 0], points[order, 1], s=5, c=_cluster_colours(clusters[order]), linewidths=0, rasterized=True)
    for rank, (x, y) in sorted(medoids.items()):
        ax.scatter([x], [y], s=60, marker="X", c="black")
        ax.annotate(str(rank), (x, y), xytext=(4, 4), textcoords="offset points", fontsize=9, weight="bold")
    ax.set_xlabel(axes[0])
    ax.set_ylabel(axes[1])
    ax.set_title(f"{model}: {len(points):,} sampled embeddings, medoids of clusters 1-{len(medoids)} marked", fontsize=9)
    return _svg(fig)


def sweep_panel(
    epsilons: list[float], clusters: list[int], outlier_shares: list[float], model: str, min_cluster_size: int
) -> str:
    """Clusters and outlier share against epsilon, from the result's stored tree (no reclustering)."""
    plt = _pyplot()
    fig, (a, b) = plt.subplots(1, 2, figsize=(8, 2.6))
    a.plot(epsilons, clusters, marker="o", color="#3b75af")
    a.set_title(f"{model}: clusters against epsilon (mcs {min_cluster_size})", fontsize=10)
    a.yaxis.set_major_locator(_integer_ticks())
    b.plot(epsilons, [100 * s for s in outlier_shares], marker="o", color="#d9822b")
    b.set_title("outliers (%)", fontsize=10)
    for ax in (a, b):
        ax.set_xlabel("cluster_selection_epsilon")
    return _svg(fig)


def size_sweep_panel(rows: list, flat, model: str) -> str:  # type: ignore[no-untyped-def]
    """Clusters and outlier share against min_cluster_size (log axis), the flattest window shaded."""
    plt = _pyplot()
    sizes = [r.min_cluster_size for r in rows]
    fig, (a, b) = plt.subplots(1, 2, figsize=(8, 2.6))
    a.plot(sizes, [r.clusters for r in rows], marker="o", color="#3b75af")
    a.set_title(f"{model}: clusters against min_cluster_size", fontsize=10)
    b.plot(sizes, [100 * r.outlier_share for r in rows], marker="o", color="#d9822b")
    b.set_title("outliers (%)", fontsize=10)
    for ax in (a, b):
        ax.set_xscale("log")
        ax.set_xlabel("min_cluster_size")
        if flat is not None:
            ax.axvspan(flat.min_cluster_size_from, flat.min_cluster_size_to, color="#999999", alpha=0.2, lw=0)
    return _svg(fig)


def density_panel(d, model: str) -> str:  # type: ignore[no-untyped-def]
    """The core-distance histogram (log axis) and the outlier share per density decile."""
    plt = _pyplot()
    fig, (a, b) = plt.subplots(1, 2, figsize=(8, 2.6))
    edges = 10 ** np.asarray(d.histogram["log10_edges"])
    a.stairs(d.histogram["counts"], edges, fill=True, color="#3b75af", alpha=0.8)
    a.set_xscale("log")
    from matplotlib.ticker import NullFormatter

    a.xaxis.set_minor_formatter(NullFormatter())  # the minor labels of a short log axis overlap
    a.set_xlabel("core distance")
    a.set_title(f"{model}: core distances ({d.points:,} points)", fontsize=10)
    deciles = d.deciles
    b.bar([r["decile"] for r in deciles], [100 * r["outlier_share"] for r in deciles], color="#d9822b")
    b.set_xlabel("density decile (1 = densest)")
    b.set_title("outliers per decile (%)", fontsize=10)
    b.set_xticks([r["decile"] for r in deciles])
    return _svg(fig)


def _count_heatmap(ax, counts: np.ndarray) -> None:  # type: ignore[no-untyped-def]
    """Counts as a heatmap with each non-zero count written in its cell."""
    image = ax.imshow(counts, cmap="Blues", aspect="auto")
    high = counts.max() if counts.size else 0
    for (i, j), v in np.ndenumerate(counts):
        if v:
            ax.text(j, i, f"{int(v)}", ha="center", va="center", fontsize=7, color="white" if v > high / 2 else "black")
    ax.figure.colorbar(image, ax=ax, shrink=0.8)


def transition_heatmap(counts: np.ndarray, ranks: list[int], model: str) -> str:
    """(from, to) transition counts between the top clusters (rows: from, columns: to; outliers dropped first)."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(5.5, 4.5))
    _count_heatmap(ax, counts)
    ax.set_xticks(range(len(ranks)), [str(r) for r in ranks])
    ax.set_yticks(range(len(ranks)), [str(r) for r in ranks])
    ax.set_xlabel("to cluster")
    ax.set_ylabel("from cluster")
    ax.set_title(f"{model}: transitions between clusters 1-{len(ranks)}", fontsize=9)
    return _svg(fig)


def run_length_histogram(lengths: np.ndarray, model: str) -> str:
    """How many stretches have each length (sampled texts in a row in one cluster)."""
    plt = _pyplot()
    values, counts = np.unique(lengths, return_counts=True)
    fig, ax = plt.subplots(figsize=(6, 2.6))
    ax.bar(values, counts, color="#3b75af", width=0.8)
    wide = counts.max() > 50 * counts.min()
    if wide:
        ax.set_yscale("log")
    ax.set_xlabel("stretch length (sampled texts in a row in one cluster)")
    ax.set_ylabel("stretches (log)" if wide else "stretches")
    ax.xaxis.set_major_locator(_integer_ticks())
    ax.set_title(f"{model}: {len(lengths):,} stretches, median {np.median(lengths):g}, longest {lengths.max()}", fontsize=9)
    return _svg(fig)


def network_grid(networks: list[str], columns: list[int], counts: np.ndarray, model: str) -> str:
    """Runs of each network (rows) ending in each top cluster (columns; -1: outliers)."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7, 0.9 + 0.35 * len(networks)))
    _count_heatmap(ax, counts)
    ax.set_xticks(range(len(columns)), ["out" if c == -1 else str(c) for c in columns])
    ax.set_yticks(range(len(networks)), networks, fontsize=8)
    ax.set_xlabel("cluster the run ends in")
    ax.set_title(f"{model}: where each network's runs end", fontsize=9)
    return _svg(fig)


def interactive_map(
    points: np.ndarray, clusters: np.ndarray, hover: list[str], medoids: dict[int, np.ndarray], axes: tuple[str, str],
    model: str, include_library: bool,
) -> str | None:  # fmt: skip
    """The 2-D map as a plotly figure (zoom, pan; hover shows text, cluster and run), self-contained HTML;
    None when plotly is not installed. ``include_library``: inline plotly.js (once per page)."""
    try:
        import plotly.graph_objects as go
    except ImportError:
        return None
    from matplotlib.colors import to_hex

    fig = go.Figure()
    present = set(clusters.tolist())
    groups = [(f"cluster {r}", clusters == r, r) for r in range(1, TOP_COLOURS + 1) if r in present]
    groups += [("other clusters", clusters > TOP_COLOURS, TOP_COLOURS + 1), ("outliers", clusters == -1, -1)]
    for name, mask, rank in groups:
        rows = np.flatnonzero(mask)
        if not rows.size:
            continue
        fig.add_trace(go.Scattergl(
            x=points[rows, 0], y=points[rows, 1], mode="markers", name=name,
            marker={"size": 5, "color": to_hex(_cluster_colours(np.array([rank]))[0], keep_alpha=False)},  # as in the static plots
            text=[hover[i] for i in rows], hovertemplate="%{text}<extra></extra>",
        ))  # fmt: skip
    if medoids:
        order = sorted(medoids)
        fig.add_trace(go.Scatter(
            x=[medoids[r][0] for r in order], y=[medoids[r][1] for r in order], mode="markers+text", name="medoids",
            text=[str(r) for r in order], textposition="top right", marker={"symbol": "x", "size": 10, "color": "black"},
            hovertemplate="medoid of cluster %{text}<extra></extra>",
        ))  # fmt: skip
    fig.update_layout(
        title={"text": f"{model}: {len(points):,} sampled embeddings (hover for the text; drag to zoom)", "font": {"size": 13}},
        xaxis_title=axes[0], yaxis_title=axes[1], width=760, height=560, template="plotly_white",
        margin={"l": 50, "r": 10, "t": 40, "b": 40},
    )  # fmt: skip
    return fig.to_html(full_html=False, include_plotlyjs=bool(include_library), config={"displaylogo": False})


def dwell_ccdf_plot(curves: dict[str, tuple[list[float], list[float]]], model: str) -> str:
    """Per network the dwell-time survival P(stay > t) (Kaplan-Meier, censored last stays), log-log."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6, 3.2))
    for group, (t, survival) in curves.items():
        keep = [(a, b) for a, b in zip(t, survival) if a > 0 and b > 0]
        if keep:
            ax.step([a for a, _ in keep], [b for _, b in keep], where="post", label=group)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("dwell time t (text steps)")
    ax.set_ylabel("P(stay > t)")
    ax.set_title(f"{model}: dwell times per network (complementary CDF)", fontsize=10)
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=7)
    return _svg(fig)


def absorption_plot(curves: dict[str, tuple[list[int], list[float]]], model: str) -> str:
    """Per network the share of runs absorbed by text step t."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6, 3.0))
    if not any(share and share[-1] > 0 for _, share in curves.values()):
        ax.text(0.5, 0.5, "no run absorbed", ha="center", va="center", transform=ax.transAxes)
    for group, (t, share) in curves.items():
        ax.step(t, share, where="post", label=group)
    ax.set_ylim(0, 1)
    ax.set_xlabel("text step t")
    ax.set_ylabel("runs absorbed by t")
    ax.set_title(f"{model}: absorption per network", fontsize=10)
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=7)
    return _svg(fig)


def state_graph(jumps: dict[tuple[int, int], int], model: str, top: int = 8) -> str:
    """The jump graph of the heaviest jumps (at most ``top`` states): nodes on a circle, arrows as wide as their counts."""
    plt = _pyplot()
    states: list[int] = []
    for (a, b), _ in sorted(jumps.items(), key=lambda kv: (-kv[1], kv[0])):
        new = [s for s in (a, b) if s not in states]
        if len(states) + len(new) > top:
            continue
        states += new
    states.sort()
    fig, ax = plt.subplots(figsize=(4.2, 4.2))
    ax.set_axis_off()
    if not states:
        ax.text(0.5, 0.5, "no jumps between states", ha="center", va="center")
        return _svg(fig)
    angle = np.linspace(0, 2 * np.pi, len(states), endpoint=False)
    at = {s: (np.cos(a), np.sin(a)) for s, a in zip(states, angle)}
    most = max(n for (a, b), n in jumps.items() if a in at and b in at) if any(a in at and b in at for a, b in jumps) else 1
    for (a, b), n in jumps.items():
        if a in at and b in at:
            ax.annotate(
                "",
                xy=at[b],
                xytext=at[a],
                arrowprops={
                    "arrowstyle": "-|>",
                    "lw": 0.5 + 3.5 * n / most,
                    "color": "#3b75af",
                    "alpha": 0.7,
                    "connectionstyle": "arc3,rad=0.15",
                    "shrinkA": 12,
                    "shrinkB": 12,
                },
            )
    for s, (x, y) in at.items():
        ax.scatter([x], [y], s=420, color="#f4f4f4", edgecolors="#333", zorder=3)
        ax.text(x, y, str(s), ha="center", va="center", fontsize=9, zorder=4)
    ax.set_xlim(-1.3, 1.3)
    ax.set_ylim(-1.3, 1.3)
    ax.set_title(f"{model}: the heaviest jumps between states", fontsize=10)
    return _svg(fig)

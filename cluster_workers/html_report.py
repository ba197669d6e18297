"""A self-contained HTML report of every clustering result (plots as inline SVG, no server needed)."""

from __future__ import annotations

import html
import io
from pathlib import Path

from cluster_workers.db.results import ClusterSummary, ResultSummary
from cluster_workers.errors import ClusterWorkersError
from cluster_workers.report import load_all_clusters

TOP_CLUSTERS = 10

STYLE = """
body { font-family: system-ui, sans-serif; margin: 2rem auto; max-width: 70rem; color: #222; }
h1 { margin-bottom: 0.2rem; } h2 { margin-top: 2.5rem; border-bottom: 1px solid #ccc; }
table { border-collapse: collapse; margin: 0.8rem 0; } td, th { padding: 0.25rem 0.6rem; border-bottom: 1px solid #eee; }
th { text-align: left; background: #f4f4f4; } td.num { text-align: right; font-variant-numeric: tabular-nums; }
.params { color: #555; font-size: 0.9rem; } figure { margin: 0.5rem 0; }
"""


def _pyplot():
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise ClusterWorkersError("the report needs matplotlib: pip install 'cluster-workers[report]'") from None
    return plt


def _svg(fig) -> str:  # type: ignore[no-untyped-def]
    buf = io.StringIO()
    fig.savefig(buf, format="svg", bbox_inches="tight")
    _pyplot().close(fig)
    text = buf.getvalue()
    return text[text.index("<svg") :]


def size_plot(summary: ResultSummary, clusters: list[ClusterSummary]) -> str:
    plt = _pyplot()
    sizes = sorted((c.size for c in clusters if c.medoid_embedding_id is not None), reverse=True)
    fig, ax = plt.subplots(figsize=(6, 2.8))
    ax.bar(range(1, len(sizes) + 1), sizes, color="#3b75af", width=1.0)
    ax.set_yscale("log")
    ax.set_xlabel("cluster rank")
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
    for ax in (a, b):
        ax.tick_params(axis="x", labelrotation=20)
    return _svg(fig)


def render(entries: list[tuple[ResultSummary, list[ClusterSummary]]], source: str) -> str:
    """The whole page as one HTML string."""
    e = html.escape
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
    parts.append("<h2>Models side by side (latest result each)</h2><table><tr><th>model</th><th>samples</th>"
                 "<th>clusters</th><th>outliers</th><th>largest cluster</th><th>duration</th><th>downsample</th></tr>")
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
    parts.append(f"<figure>{comparison_plot(list(latest.values()))}</figure>")
    for summary, clusters in entries:
        params = ", ".join(
            f"{k}={v}" for k, v in summary.parameters.items() if not isinstance(v, dict) and k != "run_key"
        )
        parts.append(
            f"<h2 id='r{summary.id.hex}'>{e(summary.model)} &middot; result {summary.id.hex[:8]}</h2>"
            f"<p>{summary.sample_count:,} embeddings, {summary.clusters} clusters, "
            f"{summary.outliers:,} outliers ({summary.outlier_share:.1%}), {(summary.duration_s or 0):.1f} s, "
            f"made {summary.created_at:%Y-%m-%d %H:%M} UTC</p><p class='params'>{e(params)}</p>"
            f"<figure>{size_plot(summary, clusters)}</figure>"
            "<table><tr><th>#</th><th>size</th><th>medoid text</th></tr>"
        )
        real = [c for c in clusters if c.medoid_embedding_id is not None]
        for rank, c in enumerate(real[:TOP_CLUSTERS], 1):
            parts.append(f"<tr><td class='num'>{rank}</td><td class='num'>{c.size:,}</td><td>{e(c.medoid_text or '')}</td></tr>")
        parts.append("</table>")
    parts.append("</body></html>")
    return "".join(parts)


def write_report(url: str, output_dir: Path, busy_timeout: float = 30.0) -> Path:
    """Read every result and write ``output_dir/report.html``; returns its path."""
    entries = load_all_clusters(url, busy_timeout)
    from cluster_workers.db.connect import describe

    output_dir.mkdir(parents=True, exist_ok=True)
    path = output_dir / "report.html"
    path.write_text(render(entries, describe(url)), encoding="utf-8")
    return path

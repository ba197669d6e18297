"""The HTML report: numbers match the database; a real headless browser renders it."""

from __future__ import annotations

import json
import re
import shutil
import subprocess

import numpy as np
import pytest

from cluster_workers.db.connect import read_with
from cluster_workers.run.config import Settings
from cluster_workers.run.coordinator import run_clustering
from cluster_workers.views.compare import compare
from cluster_workers.views.report import report_data
from tests.helpers import run_cli

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


def load_all_clusters(db: str) -> list:
    """Every result (newest first) with its clusters, read straight through the catalog."""
    from cluster_workers.db.catalog import cluster_summaries, list_results

    return read_with(f"sqlite:///{db}", 30.0, lambda conn: [(r, cluster_summaries(conn, r.id)) for r in list_results(conn)])


@pytest.fixture()
def clustered(demo_db):
    run_clustering(Settings(database_url=f"sqlite:///{demo_db}", downsample=2, workers=2))
    return demo_db


def test_report_numbers_match_the_database(clustered, tmp_path):
    out = run_cli("report", "-d", str(clustered), "--output", str(tmp_path))
    assert out.returncode == 0, out.stderr
    page = (tmp_path / "report.html").read_text()
    entries = load_all_clusters(str(clustered))
    assert len(entries) == 4
    static = re.sub(r"<script\b.*?</script>", "", page, flags=re.S)  # plotly.js itself spells "<svg" too
    assert static.count("<svg") == expected_plots(clustered)
    for name in DETAIL_FIGURES:
        assert page.count(f"<figure class='{name}'>") == maps_expected(clustered), name
    assert page.count("<figure class='map interactive'>") == maps_expected(clustered)
    assert page.count("window.PlotlyConfig") == 1  # plotly.js inlined once, with the first map
    # self-contained: no script loaded from elsewhere, no external link, image or stylesheet outside the inline scripts
    assert not re.search(r"<script[^>]*\bsrc\s*=", page)
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:)?//|<link\b|@import""", static)
    for summary, clusters in entries:
        section = page.split(f"id='r{summary.id.hex}'")[1].split("<h2")[0].split("<h3>")[0]  # up to "Where runs end"
        assert f"{summary.sample_count:,} embeddings, {summary.clusters} clusters" in section
        assert f"({summary.outlier_share:.1%})" in section
        top = [c for c in clusters if c.medoid_embedding_id is not None][:10]
        rows = re.findall(r"<tr><td class='num'>(\d+)</td><td class='num'>([\d,]+)</td>", section)
        assert [int(size.replace(",", "")) for _, size in rows] == [c.size for c in top]


DETAIL_FIGURES = (
    "trajectories",
    "transitions",
    "run-lengths",
    "networks",
    "sweep",
    "size-sweep",
    "density",
    "dwell",
    "state-graph",
    "absorption",
)  # static SVG per model's latest result


def expected_plots(db) -> int:
    """Static SVG plots, counted from the database (not from the report's own data): per result with clusters its
    size plot and (each model has one result here) the DETAIL_FIGURES; the comparison bars; one heatmap."""
    entries = load_all_clusters(str(db))
    with_clusters = [r for r, _ in entries if r.clusters]
    assert (
        len({r.model for r in with_clusters}) == len(with_clusters) and len({r.parameters["downsample"] for r, _ in entries}) == 1
    )
    return (1 + len(DETAIL_FIGURES)) * len(with_clusters) + 1 + 1


def maps_expected(db) -> int:
    return sum(1 for r, _ in load_all_clusters(str(db)) if r.clusters)


def test_report_shows_agreement_and_where_runs_end(clustered, tmp_path):
    out = run_cli("report", "-d", str(clustered), "--output", str(tmp_path))
    assert out.returncode == 0, out.stderr
    page = (tmp_path / "report.html").read_text()
    agreement = page.split("id='agreement'")[1].split("<h2")[0]
    comparisons = compare(str(clustered)).comparisons
    assert len(comparisons) == 6  # 4 models at downsample 2
    for c in comparisons:
        assert (
            f"<tr><td>{c.a.model}</td><td>{c.b.model}</td><td class='num'>2</td>"
            f"<td class='num'>{c.agreement.n:,}</td><td class='num'>{c.agreement.ari:.3f}</td>"
        ) in agreement
    data = read_with(str(clustered), 30.0, report_data)
    for summary, _ in data.entries:
        section = page.split(f"id='r{summary.id.hex}'")[1].split("<h2")[0]
        if not summary.clusters:
            assert "No clusters" in section and "Where runs end" not in section
            continue
        detail = data.details[summary.id]
        assert f"{detail.trajectories.trajectories.overall.runs:,} runs;" in section
        top = detail.trajectories.trajectories.by_cluster[0]
        assert f"<td class='num'>{top.runs:,}</td>" in section.split("class='ends'")[1]
        assert "class='trajectories'" in section and "class='map interactive'" in section
        assert detail.cluster_map is not None and len(detail.cluster_map.points) == summary.sample_count  # < 3,000: all
        assert len(detail.cluster_map.hover) == summary.sample_count and "run " in detail.cluster_map.hover[0]
        # the report's transitions and run lengths are the commands' own (read independently, through the CLI)
        rows = json.loads(run_cli("transitions", summary.id.hex, "-d", str(clustered), "--json").stdout)
        top = detail.chains.ranks
        want = sum(r["count"] for r in rows if r["from_cluster"] in top and r["to_cluster"] in top)
        assert detail.chains.transitions.sum() == want > 0
        stretches = json.loads(run_cli("run-lengths", summary.id.hex, "-d", str(clustered), "--json").stdout)
        assert sorted(detail.chains.stretch_lengths.tolist()) == sorted(s["length"] for s in stretches)
        assert detail.chains.grid.sum() <= detail.trajectories.trajectories.overall.runs
        # the dynamics panels are the kinetics command's own numbers
        kin = {
            g["group"]: g
            for g in json.loads(run_cli("kinetics", summary.id.hex, "-d", str(clustered), "--json").stdout)["groups"]
        }
        assert {k.group: (k.runs, k.absorbed, sum(k.jumps.values())) for k in detail.kinetics} == {
            g: (v["runs"], v["absorbed"], sum(j["count"] for j in v["jumps"])) for g, v in kin.items()
        }
    fixed = json.loads(run_cli("fixed-points", "-d", str(clustered), "--json").stdout)
    table = page.split("class='fixed-points'>")[1].split("</table>")[0]
    for g in fixed["groups"]:
        assert f"<td class='num'>{g['runs']}</td><td class='num'>{g['absorbed']} ({g['absorbed_share']:.0%})</td>" in table


def test_report_without_results(demo_db, tmp_path):
    out = run_cli("report", "-d", str(demo_db), "--output", str(tmp_path))
    assert out.returncode == 0 and "No clustering results yet" in (tmp_path / "report.html").read_text()


@pytest.mark.skipif(
    CHROMIUM is None, reason="no chromium installed (CI=true bin/test installs it; on a terminal bin/test asks first)"
)
def test_report_renders_in_a_headless_browser(clustered, tmp_path):
    """The browser parses *this* report (its DOM holds every result and plot) and paints it (not blank)."""
    import matplotlib.image

    assert run_cli("report", "-d", str(clustered), "--output", str(tmp_path)).returncode == 0
    flags = [
        CHROMIUM,
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        f"--user-data-dir={tmp_path / 'profile'}",
    ]
    url = (tmp_path / "report.html").as_uri()
    dom = subprocess.run([*flags, "--dump-dom", url], capture_output=True, text=True, timeout=120, check=False).stdout
    entries = load_all_clusters(str(clustered))
    assert "<h1>Clustering results</h1>" in dom
    for name in DETAIL_FIGURES:
        assert dom.count(f'<figure class="{name}">') == maps_expected(clustered), name
    drawn = re.sub(r"<script\b.*?</script>", "", dom, flags=re.S)
    assert len(re.findall(r'<div [^>]*class="[^"]*\bjs-plotly-plot\b', drawn)) == maps_expected(
        clustered
    )  # plotly.js ran: each map drawn
    assert "Do the models agree?" in dom and "Where runs end" in dom
    for summary, clusters in entries:
        assert f"result {summary.id.hex[:8]}" in dom  # every result's own section, as the browser built it
        top = next((c for c in clusters if c.medoid_embedding_id is not None), None)
        assert top is None or top.medoid_text.split()[0] in dom
    shot = tmp_path / "shot.png"
    subprocess.run(
        [*flags, f"--screenshot={shot}", "--window-size=1200,1600", url], capture_output=True, timeout=120, check=False
    )
    assert shot.exists(), "chromium wrote no screenshot"
    pixels = matplotlib.image.imread(shot)
    assert pixels.shape[0] > 500 and pixels.std() > 0.05  # not a blank page
    dark = (pixels[..., :3].mean(axis=2) < 0.5).mean()
    assert 0.005 < dark < 0.5  # text and plots drawn on a light page
    blank = tmp_path / "blank.html"
    blank.write_text("<!doctype html><html><body><h1>Clustering results</h1></body></html>")
    other = tmp_path / "other.png"
    subprocess.run(
        [*flags, f"--screenshot={other}", "--window-size=1200,1600", blank.as_uri()],
        capture_output=True,
        timeout=120,
        check=False,
    )
    assert np.abs(matplotlib.image.imread(other)[..., :3] - pixels[..., :3]).mean() > 0.01  # the report, not just a heading

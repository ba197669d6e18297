"""What the HTML report shows, read in one pass over the database: per result its details, the agreements, the
fixed points. No HTML here: :mod:`.report` renders it."""

from __future__ import annotations

import html
import uuid
from collections import Counter
from dataclasses import dataclass, field

import numpy as np
import sqlalchemy as sa

from cluster_workers.analysis import sequences
from cluster_workers.analysis.dynamics import milestone
from cluster_workers.analysis.projection import pca_2d, umap_2d
from cluster_workers.db.catalog import ClusterSummary, ResultSummary, cluster_summaries, list_results
from cluster_workers.db.memberships import Labelled, labelled, sample_embedding_ids
from cluster_workers.db.sources import load_source
from cluster_workers.db.texts import embedding_details, text_positions, vectors_of
from cluster_workers.db.trees import read_tree
from cluster_workers.errors import ClusterWorkersError
from cluster_workers.views.compare import Comparison, compare_in, latest_by_downsample
from cluster_workers.views.density import result_density
from cluster_workers.views.dynamics import CORE_PROBABILITY, fixed_points_in, group_kinetics
from cluster_workers.views.sweep import flattest, parse_values, sweep_source
from cluster_workers.views.trajectories import TrajectoryReport, trajectories_in

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
    """The users' own measures for one result: transitions, run lengths, and where each network's runs end."""

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

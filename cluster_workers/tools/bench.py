"""The benchmark: the real workflow under a hard wall-clock limit, optionally beside the baseline.

``run_benchmark`` runs counts -> workers -> one commit exactly as ``cluster``
does (with ``force``, so it always does the work), bounded by ``timeout``
seconds. The commit writes every row and is then rolled back: a bench never
changes the database's results, so it is safe on the application's own database (the
measured commit leaves out only the final COMMIT's flush). On expiry every worker is killed, nothing is written, and the error
names the model and phase still running. With ``baseline`` it then clusters
the same samples the straightforward way -- one process, models one after
another, ``hdbscan.HDBSCAN`` with the same parameters -- and reports the time
ratio and the adjusted Rand index between the two labelings per model.
"""

from __future__ import annotations

import datetime as dt
import json
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from loguru import logger
from sqlalchemy import make_url

from cluster_workers.db.connect import describe, normalise_url
from cluster_workers.engines.memory import peak_bytes
from cluster_workers.errors import ClusterWorkersError, Interrupted
from cluster_workers.run.config import Settings
from cluster_workers.run.coordinator import RunReport, run_clustering
from cluster_workers.run.dispatch import cluster_models
from cluster_workers.run.worker import ModelResult, peak_rss_mb
from cluster_workers.tools.provenance import machine_info, source_commit


def adjusted_rand(a: ModelResult, b: ModelResult) -> float:
    """ARI between two labelings of the same embeddings, aligned by embedding id."""
    from sklearn.metrics import adjusted_rand_score

    def by_id(r: ModelResult) -> np.ndarray:
        keys = r.embedding_ids.view(np.dtype((np.void, 16))).ravel()
        return r.labels[np.argsort(keys, kind="stable")]

    if a.n != b.n:
        raise ClusterWorkersError(f"{a.model}: the two labelings cover {a.n} and {b.n} embeddings")
    return float(adjusted_rand_score(by_id(a), by_id(b)))


@dataclass
class BenchResult:
    status: str
    settings: dict
    machine: dict
    database: str = ""  # which database (kind and URL, password masked)
    report: RunReport | None = None
    baseline: dict[str, ModelResult] = field(default_factory=dict)
    baseline_wall_s: float = 0.0
    error: str = ""
    started: str = ""

    # Reads in one piece: one flat JSON record, field by field.
    def as_json(self) -> dict:
        out: dict = {
            "status": self.status,
            "error": self.error,
            "started": self.started,
            "commit": source_commit(),
            "database": self.database,
            "settings": self.settings,
            "machine": self.machine,
        }
        if self.report is None:
            return out
        r = self.report
        out["counts"] = {"before": r.embeddings, "after": r.sampled}
        out["skipped"] = r.skipped
        out["models"] = []
        for res in sorted(r.results, key=lambda x: x.model):
            row = {
                "model": res.model,
                "sampled": res.n,
                "fetch_s": round(res.timings["fetch_s"], 3),
                "cluster_s": round(res.timings["cluster_s"], 3),
                "clusters": res.n_clusters,
                "outlier_share": round(res.outlier_share, 4),
                "worker_peak_rss_mb": round(res.peak_rss_mb, 1),
                "engine": res.parameters.get("engine"),
                "min_cluster_size": res.parameters.get("min_cluster_size"),
                "fidelity": res.parameters.get("fidelity"),
                "steps_s": {k: round(v, 3) for k, v in res.timings.items()},
                "mst_searched_points": res.parameters.get("engine_info", {}).get("mst_searched_points"),
                "plan_peak_mb": round(
                    peak_bytes(
                        res.parameters.get("engine") or "fast",
                        res.n,
                        res.parameters.get("dimension") or 0,
                        (res.parameters.get("engine_parameters") or {}).get("min_samples", 1),
                    )
                    / 2**20,
                    1,
                ),
                "certificate": (res.parameters.get("engine_info") or {}).get("certificate"),
                "copies": (res.parameters.get("engine_info") or {}).get("copies"),
            }
            base = self.baseline.get(res.model)
            if base is not None:
                row["baseline_cluster_s"] = round(base.timings["cluster_s"], 3)
                row["baseline_clusters"] = base.n_clusters
                row["speedup"] = round(base.timings["cluster_s"] / max(res.timings["cluster_s"], 1e-9), 2)
                row["ari_vs_baseline"] = round(adjusted_rand(res, base), 4)
            out["models"].append(row)
        rows = r.written.get("memberships", 0)
        commit_s = r.timings.get("commit_s", 0.0)
        out["totals"] = {
            "counts_s": round(r.timings.get("counts_s", 0.0), 3),
            "clustering_wall_s": round(r.timings.get("clustering_wall_s", 0.0), 3),
            "commit_s": round(commit_s, 3),
            "total_s": round(r.timings.get("total_s", 0.0), 3),
            "rows_committed": rows,
            "rows_per_s": round(rows / commit_s) if commit_s else None,
            "coordinator_peak_rss_mb": round(r.peak_rss_mb, 1),
            "threads_per_worker": r.threads_per_worker,
        }
        if self.baseline:
            out["totals"]["baseline_wall_s"] = round(self.baseline_wall_s, 3)
            out["totals"]["ratio_total_vs_baseline"] = round(
                self.baseline_wall_s / max(r.timings.get("clustering_wall_s", 1e-9), 1e-9), 2
            )
        return out


def format_table(data: dict) -> str:
    """The benchmark as a plain-text table (what the closing notes quote)."""
    s = data["settings"]
    lines = [
        f"benchmark: downsample={s['downsample']} engine={s['engine']} workers={s['workers'] or 'auto'} "
        f"timeout={s['timeout']:g}s status={data['status']}",
        f"machine: {data['machine']['cores']} cores, {data['machine']['cpu']}, BLAS "
        + ", ".join(f"{b['internal_api']} {b.get('architecture') or ''}".strip() for b in data["machine"]["blas"]),
    ]
    if data.get("database"):
        lines.insert(1, f"database: {data['database']}")
    if data.get("error"):
        lines.append(f"error: {data['error']}")
    if "models" not in data:
        return "\n".join(lines)
    has_base = any("baseline_cluster_s" in m for m in data["models"])
    head = (
        f"{'model':<12} {'sampled':>9} {'fetch s':>8} {'cluster s':>10} {'clusters':>8} {'outliers':>8} {'peak MiB':>9} "
        f"{'plan MiB':>9} {'core=':>7} {'certified':>10}"
    )
    if has_base:
        head += f" {'base s':>9} {'speedup':>8} {'ARI':>6}"
    lines += [head, "-" * len(head)]
    for m in data["models"]:
        line = (
            f"{m['model']:<12} {m['sampled']:>9,} {m['fetch_s']:>8.2f} {m['cluster_s']:>10.2f} {m['clusters']:>8} "
            f"{m['outlier_share']:>8.1%} {m['worker_peak_rss_mb']:>9.0f} {m.get('plan_peak_mb', 0):>9.0f} "
            + (f"{m['fidelity']['exactly_equal']:>7.1%}" if m.get("fidelity") else f"{'-':>7}")
            + (
                f" {m['certificate']['certified'] / max(m['certificate']['rows'], 1):>10.1%}"
                if m.get("certificate")
                else f" {'-':>10}"
            )
        )
        if has_base:
            line += f" {m.get('baseline_cluster_s', float('nan')):>9.2f} {m.get('speedup', float('nan')):>7.1f}x {m.get('ari_vs_baseline', float('nan')):>6.3f}"
        lines.append(line)
    for model, why in data.get("skipped", {}).items():
        lines.append(f"{model:<12} skipped: {why}")
    t = data["totals"]
    lines.append(
        f"counts {t['counts_s']:.2f} s | clustering {t['clustering_wall_s']:.2f} s | commit {t['commit_s']:.2f} s "
        f"({t['rows_committed']:,} rows, {t['rows_per_s'] or 0:,} rows/s) | total {t['total_s']:.2f} s | "
        f"coordinator peak {t['coordinator_peak_rss_mb']:.0f} MiB | {t['threads_per_worker']} thread(s)/worker"
    )
    lines.append(
        "core= : share of 1,000 sampled core distances exactly equal to brute force (float64); certified: share of "
        "distinct vectors whose core distance is proven (screen or float64 recomputation); plan MiB: the memory "
        "plan's estimate of the worker's peak"
    )
    if "baseline_wall_s" in t:
        lines.append(
            f"baseline (one process, hdbscan, models in turn): {t['baseline_wall_s']:.2f} s "
            f"-> ours is {t['ratio_total_vs_baseline']:.2f}x faster (clustering wall time)"
        )
    return "\n".join(lines)


def run_benchmark(settings: Settings, timeout: float, baseline: bool = False, heartbeat_s: float = 30.0) -> BenchResult:
    """Run the workflow (forced) under ``timeout`` seconds; then the baseline if asked."""
    # the bench's limit is the run's: a model may use all of it (the config's per-model timeout would cut a long
    # benchmark short, as it cut a downsample 3 run at 3,600 s)
    settings = settings.replace(force=True, rollback=True, timeout=timeout)
    bench = BenchResult(
        status="ok",
        settings={
            k: getattr(settings, k)
            for k in (
                "downsample",
                "engine",
                "workers",
                "timeout",
                "min_cluster_size",
                "min_samples",
                "epsilon",
                "allow_single_cluster",
            )
        },
        machine=machine_info(),
        database=f"{make_url(normalise_url(settings.database_url)).get_backend_name()}: {describe(settings.database_url)}",
        started=dt.datetime.now().isoformat(timespec="seconds"),
    )
    deadline = time.monotonic() + timeout
    try:
        bench.report = run_clustering(settings, deadline=deadline, heartbeat_s=heartbeat_s)
    except Interrupted:
        raise  # exit 130 with its message, no table
    except ClusterWorkersError as exc:
        bench.status, bench.error = "failed", str(exc)
        return bench
    if baseline and bench.report.results:
        logger.info("baseline: the same samples, one process, hdbscan.HDBSCAN, models one after another")
        base_settings = settings.replace(engine="reference", workers=1)
        t0 = time.perf_counter()
        try:
            results, _ = cluster_models(
                base_settings,
                [r.model for r in bench.report.results],
                bench.report.sampled,
                deadline=time.monotonic() + timeout,
                heartbeat_s=heartbeat_s,
            )
        except Interrupted:
            raise
        except ClusterWorkersError as exc:
            bench.status, bench.error = "baseline failed", str(exc)
            return bench
        bench.baseline_wall_s = time.perf_counter() - t0
        bench.baseline = {r.model: r for r in results}
    bench.report.peak_rss_mb = max(bench.report.peak_rss_mb, peak_rss_mb())
    return bench


def default_output_dir() -> Path:
    """The user's cache folder for benchmark JSON (never the checkout: a benchmark run leaves the tree clean)."""
    import os

    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "cluster_workers" / "bench"


def save(data: dict, out_dir: Path) -> Path:
    out_dir.mkdir(parents=True, exist_ok=True)
    stamp = dt.datetime.now().strftime("%Y%m%d_%H%M%S")
    path = out_dir / f"bench_ds{data['settings']['downsample']}_{data['settings']['engine']}_{stamp}.json"
    path.write_text(json.dumps(data, indent=2, default=str))
    return path

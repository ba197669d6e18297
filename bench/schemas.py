"""The schema layer's cost: the same data in the legacy and the current schema, clustered in the same run.

    .venv/bin/python bench/schemas.py --embeddings 150000 --downsample 1 --work /tmp/schemas \
        --json docs/benchmarks/schemas_150k_<date>.json

Builds the twin databases (``demo-db`` with the same seed, one 256-d model; the current one also holds
the users' own EVoC-style layers), then for each schema in turn (``--rounds`` times, alternating; ratios from the last round) runs the real workflow (counts ->
worker -> one commit, forced, *committed*: the reading path below needs the result) and prints the
bench table; then the analysis reading path: ``show`` and a CSV ``export`` of the 150k-membership
result, on the current schema without and with ``cluster-workers index`` (which adds the index their
migrations lack on ``embedding_clusters.clustering_result_id``), and on the legacy schema (whose
own result table is indexed there from the start). Ratios are current / legacy, same run.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.append(str(HERE.parent))

MODEL = "Nomic256"


def _timed(fn):  # type: ignore[no-untyped-def]
    t0 = time.perf_counter()
    value = fn()
    return value, time.perf_counter() - t0


def cluster_once(url: str, downsample: int, timeout: float) -> dict:
    """The workflow as ``bench`` runs it, but committed; its bench JSON record."""
    from cluster_workers.run.config import Settings
    from cluster_workers.run.coordinator import run_clustering
    from cluster_workers.tools.bench import BenchResult, machine_info

    settings = Settings(database_url=url, downsample=downsample, force=True, timeout=timeout)
    bench = BenchResult(status="ok", settings={k: getattr(settings, k) for k in ("downsample", "engine", "workers", "timeout",
                        "min_cluster_size", "min_samples", "epsilon", "allow_single_cluster")},
                        machine=machine_info(), database=url, started=dt.datetime.now().isoformat(timespec="seconds"))
    bench.report = run_clustering(settings, deadline=time.monotonic() + timeout)
    return bench.as_json()


def reading_path(url: str, result_id: str, out_dir: Path) -> dict:
    """Seconds for ``show`` (every cluster with its medoid text) and a CSV ``export`` of one result."""
    from cluster_workers.views.export import export_result
    from cluster_workers.views.report import load_clusters

    (_, clusters), show_s = _timed(lambda: load_clusters(url, result_id))
    rows, export_s = _timed(lambda: export_result(url, result_id, out_dir / f"{result_id[:8]}.csv"))
    return {"show_s": round(show_s, 3), "export_s": round(export_s, 3), "clusters": len(clusters), "rows": rows}


# Longer than 50 lines on purpose: one measured sequence, step by step, as the docstring lists it.
def main() -> None:
    from cluster_workers.db.indexes import build_indexes
    from cluster_workers.tools.bench import format_table, machine_info, source_commit
    from cluster_workers.tools.demo import build_demo_database
    from cluster_workers.views.report import load_results

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--embeddings", type=int, default=150_000)
    ap.add_argument("--downsample", type=int, default=1)
    ap.add_argument("--timeout", type=float, default=3600)
    ap.add_argument("--work", type=Path, default=None, help="where the twin databases are built (default: a temporary folder)")
    ap.add_argument("--rounds", type=int, default=2, help="runs per schema, alternating (the first round also warms the JIT)")
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args()
    work = args.work or Path(tempfile.mkdtemp(prefix="cw_schemas_"))
    work.mkdir(parents=True, exist_ok=True)
    out: dict = {"date": dt.date.today().isoformat(), "commit": source_commit(), "machine": machine_info(),
                 "embeddings": args.embeddings, "downsample": args.downsample, "model": f"{MODEL} (256-d)", "schemas": {}}
    for schema in ("legacy", "current"):
        path = work / f"{schema}.db"
        if not path.exists():
            _, build_s = _timed(lambda: build_demo_database(str(path), embeddings=args.embeddings, seed=0, schema=schema,
                                                            models=(MODEL,), dim=256, user_results=schema == "current"))
            out.setdefault("build_s", {})[schema] = round(build_s, 1)
    rounds: dict[str, list[dict]] = {"legacy": [], "current": []}
    for k in range(args.rounds):
        for schema in ("legacy", "current"):
            record = cluster_once(f"sqlite:///{work / f'{schema}.db'}", args.downsample, args.timeout)
            print(f"--- {schema} schema, round {k + 1}")
            print(format_table(record))
            rounds[schema].append(record)
    for schema in ("legacy", "current"):
        url = f"sqlite:///{work / f'{schema}.db'}"
        record = rounds[schema][-1]
        result = next(r for r in load_results(url, check_stale=False) if r.ours and r.model == MODEL)
        entry = {"bench": record, "earlier_rounds": rounds[schema][:-1], "result": str(result.id), "reading": {}}
        entry["reading"]["before_index"] = reading_path(url, str(result.id), work)
        if schema == "current":
            theirs = next(r for r in load_results(url, check_stale=False) if not r.ours and r.layer == 0)
            entry["reading"]["users_layer0_before_index"] = reading_path(url, str(theirs.id), work)
            changes, index_s = _timed(lambda: build_indexes(url, {"busy_timeout": 30.0, "statement_timeout": 3600.0, "connect_timeout": 10.0}))
            entry["index"] = {"seconds": round(index_s, 2), "created": [c.name for c in changes if c.action == "created"]}
            entry["reading"]["after_index"] = reading_path(url, str(result.id), work)
            entry["reading"]["users_layer0_after_index"] = reading_path(url, str(theirs.id), work)
        out["schemas"][schema] = entry
    legacy, current = (out["schemas"][s]["bench"] for s in ("legacy", "current"))  # the last round of each
    phases = {}
    for key in ("counts_s", "commit_s", "total_s", "clustering_wall_s"):
        phases[key] = round(current["totals"][key] / max(legacy["totals"][key], 1e-9), 3)
    for key in ("fetch_s", "cluster_s"):
        phases[key] = round(current["models"][0][key] / max(legacy["models"][0][key], 1e-9), 3)
    phases["rows_per_s"] = round(current["totals"]["rows_per_s"] / max(legacy["totals"]["rows_per_s"], 1), 3)
    out["ratio_current_over_legacy"] = phases
    print("\nphase                 legacy      current   current/legacy")
    for key in ("counts_s", "fetch_s", "cluster_s", "commit_s", "total_s"):
        where = "totals" if key in legacy["totals"] else None
        a = legacy["totals"][key] if where else legacy["models"][0][key]
        b = current["totals"][key] if where else current["models"][0][key]
        print(f"{key:<20} {a:>9.2f} s {b:>9.2f} s {phases[key]:>10.3f}")
    print(f"{'commit rows/s':<20} {legacy['totals']['rows_per_s']:>11,} {current['totals']['rows_per_s']:>11,} {phases['rows_per_s']:>10.3f}")
    print(f"{'worker peak MiB':<20} {legacy['models'][0]['worker_peak_rss_mb']:>11.0f} {current['models'][0]['worker_peak_rss_mb']:>11.0f}")
    print("\nreading path (s)      show     export")
    for schema, entry in out["schemas"].items():
        for case, r in entry["reading"].items():
            print(f"{schema + ' ' + case:<40} {r['show_s']:>7.2f} {r['export_s']:>8.2f}  ({r['rows']:,} rows, {r['clusters']} clusters)")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(out, indent=2, default=str))
        print(f"wrote {args.json}")


if __name__ == "__main__":
    main()

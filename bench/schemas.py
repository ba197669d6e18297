"""The schema layer's cost: the same data in the legacy and the current schema, clustered in the same run.

    .venv/bin/python bench/schemas.py --embeddings 150000 --downsample 1 --work /tmp/schemas \
        --json docs/benchmarks/schemas_150k_<date>.json

Builds the twin databases (``demo-db`` with the same seed, one 256-d model; the current one also holds
the users' own EVoC-style layers). After a warm-up on small twins (numba's compile cache), each case
runs on a fresh copy of each database, in a fresh process (so worker peaks are its own): the real
workflow (counts -> worker -> one commit, *committed*: the reading path needs the result) and its
bench table, then ``show`` and a CSV ``export`` of the 150k-membership result (and of the users'
finest EVoC layer). Cases: the databases as built (their own indexes only), and after ``cluster-workers
index`` (the covering indexes on both, and on the current schema the index their migrations lack on
``embedding_clusters.clustering_result_id``). Ratios are current / legacy, same run.
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
sys.path.append(str(HERE.parent))  # a PYTHONPATH checkout first, else this one (one way in every script)

MODEL = "Nomic256"


def _timed(fn):  # type: ignore[no-untyped-def]
    t0 = time.perf_counter()
    value = fn()
    return value, time.perf_counter() - t0


def cluster_once(url: str, downsample: int, timeout: float) -> dict:
    """The workflow as ``bench`` runs it, but committed; its bench JSON record."""
    from cluster_workers.run.config import Settings
    from cluster_workers.run.coordinator import run_clustering
    from cluster_workers.tools.bench import BenchResult
    from cluster_workers.tools.provenance import machine_info

    settings = Settings(database_url=url, downsample=downsample, force=True, timeout=timeout)
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
        database=url,
        started=dt.datetime.now().isoformat(timespec="seconds"),
    )
    bench.report = run_clustering(settings, deadline=time.monotonic() + timeout)
    return bench.as_json()


def reading_path(url: str, result_id: str, out_dir: Path) -> dict:
    """Seconds for ``show`` (every cluster with its medoid text) and a CSV ``export`` of one result."""
    from cluster_workers.views.export import export_result
    from cluster_workers.views.tables import load_clusters

    (_, clusters), show_s = _timed(lambda: load_clusters(url, result_id))
    rows, export_s = _timed(lambda: export_result(url, result_id, out_dir / f"{result_id[:8]}.csv"))
    return {"show_s": round(show_s, 3), "export_s": round(export_s, 3), "clusters": len(clusters), "rows": rows}


def child(url: str, downsample: int, timeout: float) -> None:
    """``--child``: one clustering in this fresh process (its own workers: peaks not carried over), JSON on stdout."""
    print("@@JSON@@" + json.dumps(cluster_once(url, downsample, timeout), default=str))


def in_child(url: str, downsample: int, timeout: float) -> dict:
    import subprocess

    out = subprocess.run(
        [sys.executable, __file__, "--child", url, "--downsample", str(downsample), "--timeout", str(timeout)],
        capture_output=True,
        text=True,
        timeout=timeout + 120,
    )
    if out.returncode != 0:
        raise SystemExit(f"child run failed on {url}: {out.stderr[-2000:]}")
    return json.loads(out.stdout.split("@@JSON@@", 1)[1])


LIMITS = {"busy_timeout": 30.0, "statement_timeout": 3600.0, "connect_timeout": 10.0}


# Longer than 50 lines on purpose: one measured sequence, step by step, as the docstring lists it.
def main() -> None:
    import shutil

    from cluster_workers.db.indexes import build_indexes
    from cluster_workers.tools.bench import format_table
    from cluster_workers.tools.demo import build_demo_database
    from cluster_workers.tools.provenance import machine_info, source_commit
    from cluster_workers.views.tables import load_results

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--embeddings", type=int, default=150_000)
    ap.add_argument("--downsample", type=int, default=1)
    ap.add_argument("--timeout", type=float, default=3600)
    ap.add_argument("--work", type=Path, default=None, help="where the twin databases are built (default: a temporary folder)")
    ap.add_argument("--json", type=Path, default=None)
    ap.add_argument("--child", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        return child(args.child, args.downsample, args.timeout)
    work = args.work or Path(tempfile.mkdtemp(prefix="cw_schemas_"))
    work.mkdir(parents=True, exist_ok=True)
    out: dict = {
        "date": dt.date.today().isoformat(),
        "commit": source_commit(),
        "machine": machine_info(),
        "embeddings": args.embeddings,
        "downsample": args.downsample,
        "model": f"{MODEL} (256-d)",
        "cases": {},
    }
    for schema in ("legacy", "current"):
        for size, name in ((args.embeddings, f"{schema}.db"), (3_000, f"warm_{schema}.db")):
            path = work / name
            if not path.exists():
                _, build_s = _timed(
                    lambda: build_demo_database(
                        str(path),
                        embeddings=size,
                        seed=0,
                        schema=schema,
                        models=(MODEL,),
                        dim=256,
                        user_results=schema == "current",
                    )
                )
                out.setdefault("build_s", {})[name] = round(build_s, 1)
    for schema in ("legacy", "current"):  # warm-up: numba's compile cache filled before anything is timed
        in_child(f"sqlite:///{work / f'warm_{schema}.db'}", args.downsample, args.timeout)
    for case in ("as built", "after index"):
        for schema in ("legacy", "current"):
            copy = work / f"{schema}_{case.replace(' ', '_')}.db"
            shutil.copy(work / f"{schema}.db", copy)  # a fresh copy: every commit inserts into the same database
            url = f"sqlite:///{copy}"
            if case == "after index":
                build_indexes(url, LIMITS)
            record = in_child(url, args.downsample, args.timeout)
            print(f"--- {schema} schema, {case}")
            print(format_table(record))
            entry = {"bench": record}
            result = next(r for r in load_results(url, check_stale=False) if r.ours and r.model == MODEL)
            entry["reading"] = {"ours": reading_path(url, str(result.id), work)}
            if schema == "current":
                theirs = next(r for r in load_results(url, check_stale=False) if not r.ours and r.layer == 0)
                entry["reading"]["users_layer0"] = reading_path(url, str(theirs.id), work)
            out["cases"].setdefault(case, {})[schema] = entry
    print("\nphase (s)                  legacy   current  current/legacy")
    ratios: dict = {}
    for case, pair in out["cases"].items():
        legacy, current = pair["legacy"]["bench"], pair["current"]["bench"]
        rows = [(k, legacy["totals"][k], current["totals"][k]) for k in ("counts_s", "commit_s", "total_s")]
        rows += [(k, legacy["models"][0][k], current["models"][0][k]) for k in ("fetch_s", "cluster_s", "worker_peak_rss_mb")]
        rows.append(("rows_per_s", legacy["totals"]["rows_per_s"], current["totals"]["rows_per_s"]))
        ratios[case] = {}
        for key, a, b in rows:
            ratios[case][key] = round(b / max(a, 1e-9), 3)
            print(f"{case + ': ' + key:<26} {a:>9.2f} {b:>9.2f} {ratios[case][key]:>10.3f}")
    out["ratio_current_over_legacy"] = ratios
    print("\nreading path (s)                              show   export")
    for case, pair in out["cases"].items():
        for schema, entry in pair.items():
            for which, r in entry["reading"].items():
                print(
                    f"{case + ', ' + schema + ', ' + which:<44} {r['show_s']:>6.2f} {r['export_s']:>8.2f}  ({r['rows']:,} rows)"
                )
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(out, indent=2, default=str))
        print(f"wrote {args.json}")


if __name__ == "__main__":
    main()

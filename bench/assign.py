"""Density, a 50-setting sweep, assign and stability at the production shape, per model.

    .venv/bin/python bench/assign.py -d /data/production.db --downsample 10 --json docs/benchmarks/assign_<date>.json

Needs each model's newest result at the downsample (``cluster --downsample 10`` first). ``assign`` writes one result
per model (the downsample-1 rest against the downsample-10 result; use a scratch copy); ``stability`` writes nothing.
The baseline is the same prediction rule with every new row screened against the whole sample (no group bounds),
timed on the first block of new rows in the same run; the two must give equal labels.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.append(str(HERE.parent))  # a PYTHONPATH checkout first, else this one (one way in every script)


def cli(*args: str) -> tuple[dict, float]:
    """Run the CLI in a fresh process; its JSON and wall time."""
    t0 = time.perf_counter()
    out = subprocess.run([sys.executable, "-m", "cluster_workers", *args, "--json"], capture_output=True, text=True, check=True)
    return json.loads(out.stdout), time.perf_counter() - t0


def baseline_ratio(url: str, result_id: str, rows: int) -> dict:
    """Pruned against full-scan prediction on the first ``rows`` new rows: seconds, rows/s, labels equal."""
    import numpy as np

    from cluster_workers.db.connect import read_with
    from cluster_workers.db.experiment import iter_vector_blocks
    from cluster_workers.engines import l2_normalise
    from cluster_workers.engines.predict import approximate_predict
    from cluster_workers.run.assign import freeze

    def read(conn):  # type: ignore[no-untyped-def]
        frozen = freeze(conn, result_id)
        sample = np.ascontiguousarray(frozen.source.embedding_ids).view("V16").ravel()
        for block in iter_vector_blocks(conn, frozen.source.summary.model, 1, block_rows=4 * rows):
            new = ~np.isin(np.ascontiguousarray(block.ids).view("V16").ravel(), sample)
            return frozen, l2_normalise(np.ascontiguousarray(block.data[new][:rows]))

    frozen, data = read_with(url, 30.0, read)
    timed = {}
    for name, prune in (("pruned", True), ("full_scan", False)):
        t0 = time.perf_counter()
        p = approximate_predict(data, frozen.index, frozen.prediction_cores, frozen.tree, frozen.params.min_samples, prune=prune)
        timed[name] = {
            "seconds": round(time.perf_counter() - t0, 2),
            "rows_per_s": round(data.shape[0] / (time.perf_counter() - t0)),
            "read_share": round(p.read_share, 4),
            "labels": p.labels,
        }
    same = bool(np.array_equal(timed["pruned"].pop("labels"), timed["full_scan"].pop("labels")))
    return {
        "rows": int(data.shape[0]),
        **timed,
        "labels_equal": same,
        "speedup": round(timed["full_scan"]["seconds"] / max(timed["pruned"]["seconds"], 1e-9), 2),
    }


def main() -> None:
    from cluster_workers.tools.provenance import machine_info, source_commit
    from cluster_workers.views.sweep import parse_values
    from cluster_workers.views.tables import load_results

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("-d", "--database", required=True)
    ap.add_argument("--downsample", type=int, default=10)
    ap.add_argument("--models", nargs="*", default=None, help="default: every model with a result at the downsample")
    ap.add_argument("--assign-models", nargs="*", default=None, help="default: the same models")
    ap.add_argument("--stability-models", nargs="*", default=None, help="default: the same models")
    ap.add_argument("--baseline-rows", type=int, default=8192)
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args()
    url = args.database if "://" in args.database else f"sqlite:///{args.database}"
    out: dict = {
        "date": dt.date.today().isoformat(),
        "commit": source_commit(),
        "machine": machine_info(),
        "database": args.database,
        "downsample": args.downsample,
        "models": {},
    }
    latest: dict = {}
    for r in load_results(url, check_stale=False):
        if (
            r.ours
            and r.parameters.get("downsample") == args.downsample
            and not r.parameters.get("assigned_from")
            and not r.parameters.get("offset")
            and r.model not in latest
        ):
            latest[r.model] = r
    models = args.models or sorted(m for m, r in latest.items() if r.sample_count > 1000)
    sizes = ",".join(str(v) for v in parse_values("5:2000:log50", int))
    for model in models:
        rid = str(latest[model].id)
        m: dict = {"result": rid, "sample": latest[model].sample_count}
        _, m["density_s"] = cli("density", rid, "-d", args.database)
        sweep, m["sweep_s"] = cli("sweep", rid, "-d", args.database, "--min-cluster-size", sizes)
        m["sweep_settings"], m["flattest"] = len(sweep["settings"]), sweep["flattest"]
        if args.assign_models is not None and model not in args.assign_models:
            print(
                f"{model}: density {m['density_s']:.1f} s, sweep of {m['sweep_settings']} settings {m['sweep_s']:.1f} s",
                flush=True,
            )
            out["models"][model] = m
            save(args.json, out)
            continue
        m["baseline"] = baseline_ratio(url, rid, args.baseline_rows)
        done, m["assign_wall_s"] = cli("assign", rid, "-d", args.database, "--downsample", "1", "--force")
        m["assign"] = done
        m["assign_rows_per_s"] = round(done["assigned"] / max(done["timings"]["predict_s"], 1e-9))
        print(
            f"{model}: density {m['density_s']:.1f} s, sweep of {m['sweep_settings']} settings {m['sweep_s']:.1f} s, "
            f"assign {done['assigned']:,} rows in {m['assign_wall_s']:.0f} s ({m['assign_rows_per_s']:,} rows/s predicting, "
            f"peak {done['peak_rss_mb']:,.0f} MiB); first {m['baseline']['rows']:,} rows: pruned {m['baseline']['pruned']['seconds']} s "
            f"against full scan {m['baseline']['full_scan']['seconds']} s (x{m['baseline']['speedup']}, labels equal: "
            f"{m['baseline']['labels_equal']})",
            flush=True,
        )
        out["models"][model] = m
        save(args.json, out)  # after every model: a long run stopped early keeps what it measured
    for model in args.stability_models if args.stability_models is not None else models:
        found, seconds = cli("stability", model, "-d", args.database, "--downsample", str(args.downsample), "--offsets", "3")
        out["models"].setdefault(model, {})["stability"] = {"seconds": round(seconds, 1), **found["models"][0]}
        worst = found["models"][0]["worst"]
        print(
            f"{model}: stability K=3 in {seconds:.0f} s, worst pair ARI {worst['ari']:.3f} "
            f"(offset {worst['own']} assigned to {worst['other']})",
            flush=True,
        )
        save(args.json, out)
    print(
        f"\n{'model':<12} {'density s':>9} {'sweep s':>8} {'assign rows':>12} {'assign s':>9} {'rows/s':>8} {'peak MiB':>9} "
        f"{'x full scan':>11} {'stability s':>11} {'worst ARI':>9}"
    )
    for model, m in out["models"].items():
        st = m.get("stability") or {}
        a = m.get("assign") or {}
        print(
            f"{model:<12} {m.get('density_s', 0):>9.1f} {m.get('sweep_s', 0):>8.1f} {a.get('assigned', 0):>12,} "
            f"{m.get('assign_wall_s', 0):>9.0f} {m.get('assign_rows_per_s', 0):>8,} {a.get('peak_rss_mb', 0):>9,.0f} "
            f"{(m.get('baseline') or {}).get('speedup', 0):>11} {st.get('seconds', 0):>11} {(st.get('worst') or {}).get('ari', float('nan')):>9.3f}"
        )
    save(args.json, out)
    if args.json:
        print(f"wrote {args.json}")


def save(path: Path | None, out: dict) -> None:
    if path:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(out, indent=2, default=str))


if __name__ == "__main__":
    main()

"""Symbolic dynamics at the production shape: ``fixed-points`` over every text, ``states`` + ``kinetics`` per model,
and the core-probability threshold measured (what share of steps is core, how many states and stays, at each).

    .venv/bin/python bench/dynamics.py -d /data/production.db --downsample 10 --json docs/benchmarks/dynamics_<date>.json

Needs each model's newest result at the downsample (``cluster --downsample 10`` first). Reads only.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.append(str(HERE.parent))  # a PYTHONPATH checkout first, else this one (one way in every script)

THRESHOLDS = (0.0, 0.1, 0.3, 0.5, 0.7, 0.9, 1.0)


def main() -> None:
    import numpy as np

    from cluster_workers.analysis.dynamics import kinetics, milestone
    from cluster_workers.db.connect import read_with
    from cluster_workers.db.memberships import labelled
    from cluster_workers.tools.provenance import machine_info, source_commit
    from cluster_workers.views.dynamics import load_fixed_points, load_kinetics, load_states
    from cluster_workers.views.tables import load_results

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("-d", "--database", required=True)
    ap.add_argument("--downsample", type=int, default=10)
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
    t0 = time.perf_counter()
    fixed = load_fixed_points(url)
    out["fixed_points"] = {
        "seconds": round(time.perf_counter() - t0, 2),
        "runs": len(fixed.runs),
        "texts": sum(r.texts for r in fixed.runs),
        "absorbed": sum(r.absorbed for r in fixed.runs),
    }
    print(
        f"fixed-points: {out['fixed_points']['texts']:,} texts in {out['fixed_points']['runs']:,} runs, "
        f"{out['fixed_points']['seconds']:.1f} s ({out['fixed_points']['absorbed']:,} runs absorbed)"
    )
    latest: dict = {}
    for r in load_results(url, check_stale=False):
        if r.ours and r.parameters.get("downsample") == args.downsample and r.model not in latest:
            latest[r.model] = r
    print(f"\n{'model':<12} {'states s':>9} {'kinetics s':>11} {'runs':>6} {'steps':>9}")
    for model, result in sorted(latest.items()):
        t0 = time.perf_counter()
        load_states(url, str(result.id))
        states_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        kin = load_kinetics(url, str(result.id), by="network")
        kinetics_s = time.perf_counter() - t0
        data = read_with(url, 30.0, lambda conn: labelled(conn, result.id, with_probabilities=True))
        members = data.probabilities[data.clusters >= 0]
        sweep = []
        for threshold in THRESHOLDS:
            runs = milestone(data.run_ids, data.text_index, data.clusters, data.probabilities, threshold)
            k = kinetics(runs, None, args.downsample, tail_test=False)
            d = k.dwell_summary()
            sweep.append(
                {
                    "core_probability": threshold,
                    "core_share": round(k.core_steps / max(k.steps, 1), 4),
                    "initial_transit_share": round(k.initial_transit_steps / max(k.steps, 1), 4),
                    "runs_without_core": k.runs_without_core,
                    "jumps": int(sum(k.jumps.values())),
                    "stays": d["stays"],
                    "dwell_median": d["completed"]["median"],
                    "states": len(k.dwell),
                }
            )
        out["models"][model] = {
            "result": str(result.id),
            "states_s": round(states_s, 2),
            "kinetics_s": round(kinetics_s, 2),
            "runs": sum(g.runs for g in kin.groups),
            "steps": sum(g.steps for g in kin.groups),
            "member_probability_quantiles": {
                q: float(np.quantile(members, q)) if members.size else None for q in (0.05, 0.25, 0.5, 0.75)
            },
            "members_at_probability_1": round(float(np.mean(members >= 1.0)), 4) if members.size else None,
            "threshold_sweep": sweep,
        }
        m = out["models"][model]
        print(f"{model:<12} {states_s:>9.2f} {kinetics_s:>11.2f} {m['runs']:>6,} {m['steps']:>9,}")
    print("\ncore threshold: share of sampled steps that are core / initial transit / stays / median dwell (text steps)")
    for model, m in sorted(out["models"].items()):
        if m["members_at_probability_1"] is None:
            print(f"{model}: no cluster members")
            continue
        print(
            f"{model}: member probability quantiles {m['member_probability_quantiles']}, "
            f"{m['members_at_probability_1']:.1%} of members at 1.0"
        )
        for row in m["threshold_sweep"]:
            print(
                f"  >= {row['core_probability']:<4} core {row['core_share']:6.1%}  initial transit {row['initial_transit_share']:6.1%}  "
                f"no-core runs {row['runs_without_core']:4}  jumps {row['jumps']:6,}  stays {row['stays']:6,}  "
                f"median dwell {row['dwell_median']}"
            )
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(out, indent=2, default=str))
        print(f"wrote {args.json}")


if __name__ == "__main__":
    main()

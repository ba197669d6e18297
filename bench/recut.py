"""Re-cut and sweep on stored trees, timed against the clustering that made each tree.

    python bench/recut.py -d /data/production.db --downsample 10 --json docs/benchmarks/recut_ds10_<date>.json

For each model's newest result at the downsample (it must have a tree): the
tree's storage, ``recut`` to another epsilon and min_cluster_size (tree part and
medoid part apart, medoids kept or recomputed), and a ``sweep`` of 20 settings,
each as a ratio of the result's own clustering time (``duration`` in
``results``). Each recut is computed, medoids and all, inside a transaction
that is then rolled back: the database keeps only what it had.
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

EPSILONS = [0.0, 0.1, 0.2, 0.3, 0.5]
SIZES_FACTORS = [1, 2, 4, 8]  # x the result's min_cluster_size


def main() -> None:
    import numpy as np
    import sqlalchemy as sa

    from cluster_workers.db.attached import load_source
    from cluster_workers.db.catalog import list_results
    from cluster_workers.db.connect import make_engine
    from cluster_workers.db.schema import LEGACY_SCHEMA

    clustering_tree = LEGACY_SCHEMA.clustering_tree
    from cluster_workers.run.params import requested_params
    from cluster_workers.run.recut import recut_result
    from cluster_workers.tools.provenance import machine_info, source_commit
    from cluster_workers.views.sweep import sweep_source

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("-d", "--database", required=True)
    ap.add_argument("--downsample", type=int, default=10)
    ap.add_argument("--epsilon", type=float, default=0.2, help="The recut's new epsilon.")
    ap.add_argument(
        "--size-factor", type=int, default=2, help="The recut's min_cluster_size as a multiple of the result's (1: keep it)."
    )
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    url = args.database if "://" in args.database else f"sqlite:///{args.database}"
    engine = make_engine(url)
    rows = []
    print(f"{'model':<12} {'points':>9} {'tree MB':>8} {'cluster s':>9} {'load s':>7} {'cut s':>6} {'medoid s':>8} "
          f"{'kept/new':>9} {'recut s':>8} {'ratio':>6} {'sweep20 s':>9}")  # fmt: skip
    with engine.connect() as conn:
        latest: dict[str, object] = {}
        for r in list_results(conn):
            if (r.parameters or {}).get("downsample") == args.downsample and "recut" not in r.parameters:
                latest.setdefault(r.model, r)
        for model, summary in sorted(latest.items()):
            stored = conn.execute(
                sa.select(sa.func.length(clustering_tree.c.edges) + sa.func.length(clustering_tree.c.positions)
                          + sa.func.length(clustering_tree.c.probabilities) + sa.func.length(clustering_tree.c.outlier_scores))
                .where(clustering_tree.c.clustering_result_id == summary.id)
            ).scalar()  # fmt: skip
            if stored is None or summary.sample_count < 100:
                continue
            conn.rollback()  # end the reads' transaction: what follows is undone as one
            t0 = time.perf_counter()
            source = load_source(conn, summary.id.hex)
            load_s = time.perf_counter() - t0
            wanted = requested_params(source, {"cluster_selection_epsilon": args.epsilon,
                                               "min_cluster_size": args.size_factor * int(source.parameters["min_cluster_size"])})  # fmt: skip
            t0 = time.perf_counter()
            result = recut_result(conn, source, wanted)
            recut_s = load_s + time.perf_counter() - t0
            conn.rollback()  # the recut wrote nothing yet, but whatever it read or staged goes
            mcs = int(source.parameters["min_cluster_size"])
            t0 = time.perf_counter()
            swept = sweep_source(source, EPSILONS, [mcs * f for f in SIZES_FACTORS])
            sweep_s = time.perf_counter() - t0
            recut_info = result.parameters["recut"]
            row = {
                "model": model, "result": str(summary.id), "points": source.n, "tree_bytes": int(stored),
                "cluster_s": summary.duration_s, "load_s": round(load_s, 3), "tree_s": recut_info["tree_s"],
                "medoid_s": recut_info["medoid_s"], "medoids_kept": recut_info["medoids_kept"],
                "medoids_computed": recut_info["medoids_computed"], "recut_s": round(recut_s, 3),
                "recut_over_cluster": round(recut_s / summary.duration_s, 4) if summary.duration_s else None,
                "sweep_settings": len(swept), "sweep_s": round(sweep_s, 3),
                "recut_clusters": int(np.max(result.labels)) + 1, "vectors_read": recut_info.get("vectors_read"),
            }  # fmt: skip
            rows.append(row)
            print(f"{model:<12} {source.n:>9,} {stored / 1e6:>8.1f} {summary.duration_s or 0:>9.1f} {load_s:>7.2f} "
                  f"{recut_info['tree_s']:>6.2f} {recut_info['medoid_s']:>8.2f} "
                  f"{recut_info['medoids_kept']:>4}/{recut_info['medoids_computed']:<4} {recut_s:>8.2f} "
                  f"{row['recut_over_cluster'] or 0:>6.3f} {sweep_s:>9.2f}")  # fmt: skip
    engine.dispose()
    if args.json:
        rows = [{**r, "epsilon": args.epsilon, "size_factor": args.size_factor} for r in rows]
        commit = source_commit()
        out = {"date": dt.date.today().isoformat(), "commit": commit, "machine": machine_info(), "downsample": args.downsample,
               "epsilons": EPSILONS, "size_factors": SIZES_FACTORS, "rows": rows}  # fmt: skip
        args.json.write_text(json.dumps(out, indent=1))
        print(f"wrote {args.json}")


if __name__ == "__main__":
    main()

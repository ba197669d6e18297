"""The engine on a dense region of the users' kind of data, against a baseline in the same run.

    python bench/dense_region.py --database production.db --model Nomic --size 60000 --min-samples 365 \
        --threads 2 --repeat 2 --json docs/benchmarks/dense_region.json
    git worktree add /tmp/before COMMIT
    python bench/dense_region.py --database production.db --against-tree /tmp/before --json ...

The data: a dense region of one model's vectors (every third stored vector, as
downsample 3 keeps; the ``size`` nearest to a random one), where most core
distances go to the float64 recomputation as at downsample 3. Each case runs
in a fresh process. The baseline is either OpenBLAS's default spin (default:
``OPENBLAS_THREAD_TIMEOUT=28``, its compiled-in 2^28 cycles, against the
package's 2^4; OpenBLAS reads it when it loads) or, with ``--against-tree``,
the package as it is in another checkout (an earlier commit). Cases
alternate; labels must be identical.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import sqlite3
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.append(str(HERE.parent))  # a PYTHONPATH checkout first, else this one (one way in every script)

CASE = """
import hashlib, json, sys, time
import cluster_workers
import numpy as np, numba
from threadpoolctl import threadpool_limits
from cluster_workers.engines import HDBSCANParams
from cluster_workers.engines.fast import cluster
path, threads, ms = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
x = np.load(path)
numba.set_num_threads(threads)
with threadpool_limits(threads):
    cluster(x[:3000].copy(), HDBSCANParams(ms, ms), fidelity=False)  # compiled before the clock starts
    t = time.perf_counter()
    c = cluster(x, HDBSCANParams(ms, ms), fidelity=False)
    seconds = time.perf_counter() - t
print(json.dumps({"seconds": round(seconds, 2), "timings": c.info["timings"], "certificate": c.info["certificate"],
                  "labels_sha1": hashlib.sha1(c.labels.tobytes()).hexdigest(), "clusters": int(c.labels.max() + 1)}))
"""


def region(database: str, model: str, size: int, seed: int) -> np.ndarray:
    """The ``size`` vectors nearest to a random one, among every third stored vector of ``model`` (unit rows)."""
    con = sqlite3.connect(f"file:{database}?mode=ro", uri=True)
    blobs = [r[0] for r in con.execute("SELECT vector FROM embedding WHERE embedding_model = ? AND rowid % 3 = 0", (model,))]
    con.close()
    x = np.frombuffer(b"".join(blobs), dtype="<f4").reshape(len(blobs), -1).copy()
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    anchor = np.random.default_rng(seed).integers(x.shape[0])
    keep = np.argpartition(-(x @ x[anchor]), size)[:size]
    return x[np.sort(keep)]


def main() -> None:
    from cluster_workers.tools.provenance import machine_info, source_commit

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--database", required=True, help="SQLite file of the production shape (cluster-workers demo-db)")
    ap.add_argument("--model", default="Nomic")
    ap.add_argument("--size", type=int, default=60_000)
    ap.add_argument("--min-samples", type=int, default=365)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeat", type=int, default=2)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--against-tree", type=Path, help="a checkout of an earlier commit: the baseline is its package")
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    baseline = "before" if args.against_tree else "default"
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "region.npy"
        x = region(args.database, args.model, args.size, args.seed)
        np.save(path, x)
        print(f"{x.shape[0]:,} x {x.shape[1]} vectors of {args.model}, min_samples {args.min_samples}, {args.threads} thread(s)")
        print(f"{'case':<8} {'seconds':>8} {'neighbours':>11} {'MST':>7} {'recomputed':>11}")
        for rep in range(args.repeat):
            for case in (baseline, "ours"):
                env = {k: v for k, v in os.environ.items() if k not in ("OPENBLAS_THREAD_TIMEOUT", "PYTHONPATH")}
                if case == "default":
                    env["OPENBLAS_THREAD_TIMEOUT"] = "28"
                tree = args.against_tree if case == "before" else HERE.parent
                env["PYTHONPATH"] = str(tree.resolve())
                out = subprocess.run([sys.executable, "-c", CASE, str(path), str(args.threads), str(args.min_samples)],
                                     capture_output=True, text=True, env=env, check=True, timeout=3600)  # fmt: skip
                row = {"case": case, "repeat": rep, **json.loads(out.stdout.strip().splitlines()[-1])}
                rows.append(row)
                t = row["timings"]
                print(f"{case:<8} {row['seconds']:>8.1f} {t['neighbours_s']:>11.1f} {t['mst_s']:>7.1f} "
                      f"{row['certificate']['recomputed']:>11,}", flush=True)  # fmt: skip
    assert len({r["labels_sha1"] for r in rows}) == 1, "labels differ between cases"
    best = {c: min(r["seconds"] for r in rows if r["case"] == c) for c in (baseline, "ours")}
    neigh = {c: min(r["timings"]["neighbours_s"] for r in rows if r["case"] == c) for c in (baseline, "ours")}
    print(
        f"best of {args.repeat}: {baseline} {best[baseline]:.1f} s, ours {best['ours']:.1f} s "
        f"({best[baseline] / best['ours']:.2f}x; neighbours {neigh[baseline] / neigh['ours']:.2f}x); labels identical"
    )
    if args.json:
        commit = source_commit()
        meta = {"date": dt.date.today().isoformat(), "commit": commit, "machine": machine_info(), "model": args.model,
                "size": int(x.shape[0]), "min_samples": args.min_samples, "threads": args.threads, "seed": args.seed,
                "baseline": baseline, "baseline_commit": source_commit(args.against_tree) if args.against_tree else commit}  # fmt: skip
        args.json.write_text(
            json.dumps({"meta": meta, "rows": rows, "best_s": best, "speedup": round(best[baseline] / best["ours"], 3)}, indent=1)
        )


if __name__ == "__main__":
    main()

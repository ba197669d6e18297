"""The fast engine against hdbscan on the users' kind of data: blobs of near-copies and exact copies.

    python bench/near_copies.py --json docs/benchmarks/near_copies_<date>.json

Blobs of near-identical vectors (distances 1e-6..1e-3, closer than float32 can
tell apart), a fifth of each blob exact copies, looser halos, background noise
(``tests/engines/datasets.near_copy_data``, 3,500 x 384). Per seed and setting:
hdbscan's clusters, hdbscan against itself on shuffled rows (how much its own
tie order moves), the fast engine's clusters and ARI against hdbscan, the
share of sampled core distances equal to brute force, and the certificate.
Run it with ``PYTHONPATH`` at another checkout to measure that code instead.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.append(str(HERE.parent))  # a PYTHONPATH checkout first, else this one (one way in every script)


def _datasets():  # type: ignore[no-untyped-def]
    """This checkout's test data generators, whichever package is measured."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("datasets", HERE.parent / "tests" / "engines" / "datasets.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


SETTINGS = [  # (name, min_cluster_size, min_samples in hdbscan's convention, epsilon, allow_single_cluster)
    ("users' defaults (mcs 3, ms 3)", 3, 2, 0.5, True),
    ("mcs 25, ms 26", 25, 25, 0.0, False),
]


def main() -> None:
    import hdbscan
    from sklearn.metrics import adjusted_rand_score

    import cluster_workers
    from cluster_workers.engines import HDBSCANParams, fast
    from cluster_workers.tools.provenance import source_commit

    near_copy_data = _datasets().near_copy_data

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--blobs", type=int, default=14)
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    rows = []
    print(
        f"{'seed':>4} {'setting':<30} {'hdbscan':>8} {'itself':>7} {'fast':>5} {'ARI':>7} {'core=':>6} {'recomputed':>10} {'s':>6}"
    )
    for seed in (int(s) for s in args.seeds.split(",")):
        data = near_copy_data(seed=seed, blobs=args.blobs)
        perm = np.random.default_rng(1).permutation(len(data))
        for name, mcs, ms, eps, single in SETTINGS:
            kw = dict(min_cluster_size=mcs, min_samples=ms, cluster_selection_epsilon=eps, allow_single_cluster=single)
            ref = hdbscan.HDBSCAN(**kw).fit(data.astype(np.float64)).labels_
            shuffled = np.empty_like(ref)
            shuffled[perm] = hdbscan.HDBSCAN(**kw).fit(data[perm].astype(np.float64)).labels_
            t0 = time.perf_counter()
            ours = fast.cluster(data.copy(), HDBSCANParams(mcs, ms, eps, single))
            seconds = time.perf_counter() - t0
            row = {
                "seed": seed, "setting": name, "hdbscan_clusters": int(ref.max() + 1),
                "hdbscan_vs_shuffled_ari": round(adjusted_rand_score(ref, shuffled), 4),
                "fast_clusters": int(ours.labels.max() + 1), "ari": round(adjusted_rand_score(ref, ours.labels), 4),
                "core_exactly_equal": ours.info["fidelity"]["exactly_equal"],
                "recomputed": (ours.info.get("certificate") or {}).get("recomputed"), "seconds": round(seconds, 2),
            }  # fmt: skip
            rows.append(row)
            print(f"{seed:>4} {name:<30} {row['hdbscan_clusters']:>8} {row['hdbscan_vs_shuffled_ari']:>7.4f} {row['fast_clusters']:>5} "
                  f"{row['ari']:>7.4f} {row['core_exactly_equal']:>6.1%} {str(row['recomputed']):>10} {seconds:>6.1f}", flush=True)  # fmt: skip
    if args.json:
        code = Path(cluster_workers.__file__).resolve().parent.parent
        commit = source_commit()  # of the checkout cluster_workers is imported from: ``code``
        meta = {"date": dt.date.today().isoformat(), "commit": commit, "code": str(code), "blobs": args.blobs}
        args.json.write_text(json.dumps({"meta": meta, "rows": rows}, indent=1))


if __name__ == "__main__":
    main()

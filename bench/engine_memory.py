"""The fast engine's peak memory and time on generated vectors, against the formula the coordinator plans with.

    python bench/engine_memory.py --cases 120000x384:2,120000x384:1000 --json docs/benchmarks/engine_memory.json

Each case runs in its own process (peak RSS = that process's high-water mark,
``ru_maxrss``, the vectors included), prints one row and adds it to the JSON.
``ms`` is min_samples in hdbscan's convention.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import multiprocessing as mp
import platform
import resource
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.append(str(HERE.parent))  # a PYTHONPATH checkout first, else this one (one way in every script)


def one_case(n: int, dim: int, ms: int, collapse: bool, copy_share: float, queue: mp.Queue) -> None:
    from cluster_workers.engines import HDBSCANParams, fast
    from cluster_workers.tools.synthetic import attractor_vectors

    data = attractor_vectors(n, dim, copy_share=copy_share)
    t0 = time.perf_counter()
    result = fast.cluster(data, HDBSCANParams(max(2, ms), ms), fidelity=False, options=fast.FastOptions(collapse_copies=collapse))
    seconds = time.perf_counter() - t0
    queue.put({
        "seconds": round(seconds, 2),
        "peak_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "clusters": int(result.labels.max() + 1),
        "timings": result.info["timings"],
        "certificate": result.info["certificate"],
        "copies": result.info["copies"],
    })  # fmt: skip


def main() -> None:
    from cluster_workers.engines.memory import fast_peak_bytes
    from cluster_workers.tools.provenance import source_commit

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cases", required=True, help="NxDIM:MS,... e.g. 120000x384:2,120000x384:1000")
    ap.add_argument("--no-collapse", action="store_true", help="cluster every copy (the baseline for the copies speedup)")
    ap.add_argument("--copy-share", type=float, default=0.1, help="share of rows that are exact copies of another row")
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    rows = []
    print(f"{'n':>9} {'dim':>5} {'ms':>6} {'seconds':>8} {'peak MiB':>9} {'formula MiB':>12} {'recomputed':>11} {'copies':>8}")
    for case in args.cases.split(","):
        size, ms = case.split(":")
        n, dim = (int(v) for v in size.split("x"))
        queue: mp.Queue = mp.get_context("spawn").Queue()
        proc = mp.get_context("spawn").Process(
            target=one_case, args=(n, dim, int(ms), not args.no_collapse, args.copy_share, queue)
        )
        proc.start()
        row = queue.get()
        proc.join()
        row.update(n=n, dim=dim, min_samples=int(ms), formula_mib=round(fast_peak_bytes(n, dim, int(ms)) / 2**20, 1),
                   collapse_copies=not args.no_collapse, copy_share=args.copy_share)  # fmt: skip
        rows.append(row)
        print(f"{n:>9,} {dim:>5} {ms:>6} {row['seconds']:>8.1f} {row['peak_mib']:>9.0f} {row['formula_mib']:>12.0f} "
              f"{row['certificate']['recomputed']:>11,} {row['copies']:>8,}", flush=True)  # fmt: skip
    if args.json:
        commit = source_commit()
        meta = {"date": dt.date.today().isoformat(), "commit": commit, "machine": platform.processor() or platform.machine(),
                "cpus": __import__("os").cpu_count(), "collapse_copies": not args.no_collapse, "copy_share": args.copy_share}  # fmt: skip
        args.json.write_text(json.dumps({"meta": meta, "rows": rows}, indent=1))


if __name__ == "__main__":
    main()

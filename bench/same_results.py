"""Do two databases hold the same results? For each model's latest result at a downsample, in both:
the same sampled embeddings, the same partition (ARI) and the same medoids.

    .venv/bin/python bench/same_results.py --downsample 100 sqlite:///prod.db postgresql://…/prod

Used to check that PostgreSQL and SQLite give identical runs on the same generated data.
"""

from __future__ import annotations

import argparse
import json

from sklearn.metrics import adjusted_rand_score

from cluster_workers.db.catalog import list_results
from cluster_workers.db.connect import read_with
from cluster_workers.db.memberships import labelled
from cluster_workers.views.compare import latest_by_downsample


def memberships(url: str, downsample: int) -> dict[str, dict[str, int]]:
    """model -> {invocation id (hex): its medoid's embedding id (hex), None for an outlier}, latest result at ``downsample``."""

    def read(conn):  # type: ignore[no-untyped-def]
        out = {}
        for r in latest_by_downsample(list_results(conn)).get(downsample, []):
            data = labelled(conn, r.id)
            medoid_hex = {rank: m.hex for rank, m in data.medoids.items()}
            out[r.model] = {
                str(i).replace("-", ""): (medoid_hex.get(int(c)) if c > 0 else None)
                for i, c in zip(data.invocation_ids, data.clusters)
            }
        return out

    return read_with(url, 30.0, read)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--downsample", type=int, required=True)
    parser.add_argument("a")
    parser.add_argument("b")
    args = parser.parse_args()
    a, b = memberships(args.a, args.downsample), memberships(args.b, args.downsample)
    rows = []
    for model in sorted(set(a) | set(b)):
        ma, mb = a.get(model, {}), b.get(model, {})
        same_sample = set(ma) == set(mb)
        keys = sorted(set(ma) & set(mb))
        la = [ma[k] or "-" for k in keys]
        lb = [mb[k] or "-" for k in keys]
        rows.append(
            {
                "model": model,
                "n_a": len(ma),
                "n_b": len(mb),
                "same_sample": same_sample,
                "ari": adjusted_rand_score(la, lb) if keys else None,
                "same_medoids": la == lb,
            }
        )
        print(
            f"{model:<14} {len(ma):>9,} {len(mb):>9,}  same sample: {same_sample}  ARI {rows[-1]['ari']}  same medoids: {la == lb}"
        )
    print(json.dumps(rows))


if __name__ == "__main__":
    main()

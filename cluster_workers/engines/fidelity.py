"""The fidelity figure: an engine's core distances checked against brute force on a seeded sample."""

from __future__ import annotations

import numpy as np

from cluster_workers.engines.neighbours import brute_force_core_distances

SAMPLE = 1000
SEED = 0


def core_distance_fidelity(data: np.ndarray, core: np.ndarray, min_samples: int, sample: int = SAMPLE) -> dict:
    """Share of sampled core distances exactly equal to brute force, and the worst relative error."""
    n = data.shape[0]
    rows = np.arange(n) if n <= sample else np.sort(np.random.default_rng(SEED).choice(n, sample, replace=False))
    truth = brute_force_core_distances(data, rows, min_samples)
    ours = core[rows]
    rel = np.abs(ours - truth) / np.maximum(truth, 1e-300)
    rel[(truth == 0) & (ours == 0)] = 0.0
    return {
        "checked": int(rows.size),
        "exactly_equal": round(float(np.mean(ours == truth)), 6),
        "max_relative_error": float(rel.max()) if rows.size else 0.0,
    }

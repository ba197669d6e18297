"""Generated unit vectors for engine tests: attractors, a diffuse cloud, and blobs of near-copies.

The near-copy blobs are the users' own kind of data: chains that collapse onto
one caption return it hundreds of times, as identical vectors (one embedding
batch) or as copies closer than float32 can tell apart (different batches).
"""

from __future__ import annotations

import numpy as np

from cluster_workers.engines import l2_normalise


def attractor_data(n: int = 2500, dim: int = 96, clusters: int = 12, seed: int = 0) -> np.ndarray:
    """Unit vectors around attractors of very different sizes and tightness, plus noise and duplicates."""
    rng = np.random.default_rng(seed)
    centres = l2_normalise(rng.standard_normal((clusters, dim)))
    weights = 1.0 / np.arange(1, clusters + 1)
    which = rng.choice(clusters, size=int(n * 0.9), p=weights / weights.sum())
    spread = rng.uniform(0.15, 0.35, clusters)[which, None]
    points = centres[which] + spread * rng.standard_normal((which.size, dim)) / np.sqrt(dim) * 3
    noise = rng.standard_normal((n - which.size, dim))
    data = np.vstack([points, noise])
    data[-20:] = data[:20]  # exact duplicates
    return l2_normalise(data.astype(np.float32))


def diffuse_data(n: int = 2000, dim: int = 64, seed: int = 0) -> np.ndarray:
    """Real-text-like: a few weak directions in a diffuse cloud, near-duplicates (converged runs)."""
    rng = np.random.default_rng(seed)
    topics = rng.standard_normal((6, dim))
    mix = rng.dirichlet(np.full(6, 0.3), size=n)
    data = mix @ topics + 0.9 * rng.standard_normal((n, dim))
    data[n // 2 : n // 2 + 60] = data[:60] + 1e-4 * rng.standard_normal((60, dim))  # near-duplicate texts
    return l2_normalise(data.astype(np.float32))


def near_copy_data(n: int = 3500, dim: int = 384, blobs: int = 40, exact_share: float = 0.2, seed: int = 0) -> np.ndarray:
    """Blobs of near-identical vectors (pairwise distances 1e-6 to 1e-3), a share of each blob exact copies,
    each blob with a looser halo, plus background noise; rows shuffled.

    Blob sizes follow a Zipf-like law from about 20 to several hundred, so the
    largest are far larger than any neighbour count an engine keeps.
    """
    rng = np.random.default_rng(seed)
    centres = l2_normalise(rng.standard_normal((blobs, dim)).astype(np.float64))
    weights = 1.0 / np.arange(1, blobs + 1) ** 0.8
    core_n = int(n * 0.6)
    sizes = np.maximum(20, np.round(core_n * weights / weights.sum())).astype(int)
    parts = []
    for b, size in enumerate(sizes):
        scale = 10.0 ** rng.uniform(-6, -3, size)[:, None] / np.sqrt(dim)  # distance to the centre ~1e-6..1e-3
        blob = centres[b] + scale * rng.standard_normal((size, dim))
        copies = int(size * exact_share)
        blob[:copies] = blob[0]  # identical vectors (one embedding batch)
        halo = centres[b] + rng.uniform(0.05, 0.25) * rng.standard_normal((size // 3, dim)) / np.sqrt(dim)
        parts += [blob, halo]
    data = np.vstack(parts)
    noise = rng.standard_normal((max(0, n - data.shape[0]), dim))
    data = np.vstack([data, noise])[rng.permutation(data.shape[0] + noise.shape[0])]
    return l2_normalise(data.astype(np.float32))

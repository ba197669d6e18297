"""Generated unit vectors shaped like the experiment's embeddings, for engine-only benchmarks (no database).

Attractors of Zipf-distributed popularity, each a tight core of near-copies
(distances 1e-6 to 1e-3, as copies embedded in different batches are) with a
share of exact copies (one batch), a looser halo of chains on their way in,
and a long tail of vectors that never converge.
"""

from __future__ import annotations

import numpy as np


def attractor_vectors(
    n: int, dim: int = 768, attractors: int = 400, copy_share: float = 0.1, tail_share: float = 0.3, seed: int = 0
) -> np.ndarray:
    """``n`` float32 unit rows (shuffled); ``copy_share`` of them exact copies of another row."""
    rng = np.random.default_rng(seed)
    shared = rng.standard_normal(dim)  # sentence embeddings share a direction
    centres = rng.standard_normal((attractors, dim)) + 2.0 * shared
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    popularity = 1.0 / np.arange(1, attractors + 1) ** 1.1
    n_tail = int(n * tail_share)
    which = rng.choice(attractors, size=n - n_tail, p=popularity / popularity.sum())
    out = np.empty((n, dim), dtype=np.float32)
    step = 65_536
    for s in range(0, which.size, step):
        w = which[s : s + step]
        near = rng.random(w.size) < 0.5  # half in the tight core, half in the halo
        scale = np.where(near, 10.0 ** rng.uniform(-6, -3, w.size), rng.uniform(0.05, 0.4, w.size)) / np.sqrt(dim)
        block = centres[w] + scale[:, None] * rng.standard_normal((w.size, dim))
        out[s : s + w.size] = block / np.linalg.norm(block, axis=1, keepdims=True)
    for s in range(which.size, n, step):
        stop = min(n, s + step)
        block = rng.standard_normal((stop - s, dim)) + 0.8 * shared
        out[s:stop] = block / np.linalg.norm(block, axis=1, keepdims=True)
    copies = int(n * copy_share)
    out[rng.choice(n, copies, replace=False)] = out[rng.integers(0, n, copies)]
    return out[rng.permutation(n)]

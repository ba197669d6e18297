"""A 2-D map of a sample of vectors: UMAP whenever umap-learn is installed, PCA otherwise."""

from __future__ import annotations

import numpy as np


def pca_2d(vectors: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(points (n, 2), explained variance share of each axis)`` of the L2-normalised vectors."""
    x = np.asarray(vectors, dtype=np.float64)
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    x = x / np.where(norms > 0, norms, 1.0)
    x = x - x.mean(axis=0)
    if x.shape[0] < 2:
        return np.zeros((x.shape[0], 2)), np.zeros(2)
    from scipy.linalg import eigh

    cov = x.T @ x  # (d, d): only the top two eigenvectors are needed
    k = min(2, cov.shape[0])
    values, vectors = eigh(cov, subset_by_index=[cov.shape[0] - k, cov.shape[0] - 1])
    values, vectors = values[::-1], vectors[:, ::-1]
    points = np.zeros((x.shape[0], 2))
    points[:, :k] = x @ vectors
    total = float(np.trace(cov))
    share = np.zeros(2)
    share[:k] = np.clip(values, 0, None) / total if total > 0 else 0.0
    return points, share


def umap_2d(vectors: np.ndarray, seed: int = 0) -> np.ndarray | None:
    """UMAP's 2-D embedding (cosine), or None when umap-learn is not installed."""
    try:
        import umap  # type: ignore[import-not-found]
    except ImportError:
        return None
    return umap.UMAP(n_components=2, metric="cosine", random_state=seed).fit_transform(np.asarray(vectors, dtype=np.float32))

"""Transitions and run lengths along each run, as the researchers' own analysis code defines them.

A run's *sequence* is the cluster of each of its sampled texts in text order.
By default outliers (``-1``) are dropped from a sequence first, so a chain
that passes through noise links the clusters on either side.

- **transitions**: per group, the count of every ``(from, to)`` over
  consecutive entries of each run's sequence, self-transitions included;
- **run lengths**: the run-length encoding of each sequence -- one *stretch*
  per maximal block of equal clusters, with its length (how long a chain stays
  in an attractor).

Groups are the run's ``network`` (its chain of models, joined by "→") or its
initial prompt, or none (every run together).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import Hashable, Iterator

import numpy as np

OUTLIER = -1


@dataclass(frozen=True)
class Stretch:
    run_id: Hashable
    network: str | None
    initial_prompt: str | None
    cluster: int
    length: int


def run_sequences(
    run_ids: np.ndarray, steps: np.ndarray, clusters: np.ndarray, include_outliers: bool = False
) -> Iterator[tuple[Hashable, np.ndarray]]:
    """``(run_id, clusters in text order)`` for every run (runs sorted by id), outliers dropped unless asked."""
    keep = np.ones(clusters.size, dtype=bool) if include_outliers else clusters != OUTLIER
    runs = np.asarray([str(r) for r in run_ids], dtype=object)
    order = np.lexsort((steps, runs))
    order = order[keep[order]]
    sorted_runs = runs[order]
    if not order.size:
        return
    starts = np.r_[0, np.flatnonzero(sorted_runs[1:] != sorted_runs[:-1]) + 1, order.size]
    for a, b in zip(starts[:-1], starts[1:]):
        yield run_ids[order[a]], clusters[order[a:b]]


def transitions(
    run_ids: np.ndarray, steps: np.ndarray, clusters: np.ndarray, groups: dict | None = None, include_outliers: bool = False
) -> dict[object, Counter]:
    """Per group (``groups``: run id -> group; None: one group ``None``): Counter of ``(from, to)``."""
    out: dict[object, Counter] = {}
    for run_id, seq in run_sequences(run_ids, steps, clusters, include_outliers):
        group = groups.get(run_id) if groups is not None else None
        counter = out.setdefault(group, Counter())
        counter.update(zip(seq[:-1].tolist(), seq[1:].tolist()))
    return out


def run_lengths(
    run_ids: np.ndarray, steps: np.ndarray, clusters: np.ndarray, networks: dict, prompts: dict, include_outliers: bool = False
) -> list[Stretch]:
    """Every stretch of every run, in run and text order."""
    out: list[Stretch] = []
    for run_id, seq in run_sequences(run_ids, steps, clusters, include_outliers):
        if not seq.size:
            continue
        edges = np.r_[0, np.flatnonzero(seq[1:] != seq[:-1]) + 1, seq.size]
        for a, b in zip(edges[:-1], edges[1:]):
            out.append(Stretch(run_id, networks.get(run_id), prompts.get(run_id), int(seq[a]), int(b - a)))
    return out


def stretch_summary(stretches: list[Stretch]) -> list[tuple[int, int, float, int]]:
    """Per cluster: ``(cluster, stretches, median length, max length)``, most stretches first."""
    by: dict[int, list[int]] = {}
    for s in stretches:
        by.setdefault(s.cluster, []).append(s.length)
    rows = [(c, len(v), float(np.median(v)), max(v)) for c, v in by.items()]
    return sorted(rows, key=lambda r: (-r[1], r[0]))

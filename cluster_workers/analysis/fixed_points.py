"""Fixed points by exact caption repetition -- no clustering, every text step of every run.

A run's caption becomes a *fixed point* at text step ``t`` (0, 1, 2, ... among the run's text
outputs) when ``t`` is the first step from which the caption is the same string to the end of
the run, and that tail holds at least ``min_repeats`` texts. ``t`` is the run's time to
absorption. A run also counts how many of its texts repeat an earlier text of the same run.
Strings are compared exactly by default; ``fold`` compares them with whitespace collapsed and
case folded.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import Hashable, Iterable

import numpy as np

NORMALISATIONS = ("exact", "fold")


def normalise(text: str | None, how: str = "exact") -> str | None:
    if text is None or how == "exact":
        return text
    return " ".join(text.split()).casefold()


@dataclass(frozen=True)
class RunFixedPoint:
    run_id: Hashable
    network: str | None
    initial_prompt: str | None
    texts: int  # text steps in the run
    fixed_at: int | None  # first text step of the constant tail (None: no fixed point)
    repeats: int  # length of the constant tail when it is a fixed point, else 0
    caption: str | None  # the fixed point's caption (as first written)
    repeated_texts: int  # texts equal to an earlier text of the run

    @property
    def absorbed(self) -> bool:
        return self.fixed_at is not None


def run_fixed_point(
    run_id: Hashable, network: str | None, prompt: str | None, texts: list[str | None], min_repeats: int = 3, how: str = "exact"
) -> RunFixedPoint:
    """One run's fixed point from its texts in step order (``None`` texts never match anything)."""
    keys = [normalise(t, how) for t in texts]
    n = len(keys)
    tail = 0
    if n and keys[-1] is not None:
        tail = 1
        while tail < n and keys[n - 1 - tail] == keys[-1]:
            tail += 1
    seen: set[str] = set()
    repeated = 0
    for k in keys:
        if k is None:
            continue
        if k in seen:
            repeated += 1
        seen.add(k)
    if tail >= max(1, min_repeats):
        return RunFixedPoint(run_id, network, prompt, n, n - tail, tail, texts[n - tail], repeated)
    return RunFixedPoint(run_id, network, prompt, n, None, 0, None, repeated)


def quartiles(values: Iterable[float]) -> dict[str, float | None]:
    """``{"q1", "median", "q3"}`` of ``values`` (None when empty)."""
    data = np.asarray(list(values), dtype=np.float64)
    if not data.size:
        return {"q1": None, "median": None, "q3": None}
    q1, med, q3 = np.percentile(data, [25, 50, 75])
    return {"q1": float(q1), "median": float(med), "q3": float(q3)}


@dataclass(frozen=True)
class FixedPointGroup:
    group: str | None
    runs: int
    absorbed: int
    time_to_absorption: dict[str, float | None]  # quartiles of fixed_at over the absorbed runs, text steps
    top_captions: list[tuple[str, int]]  # most common fixed-point captions, with their run counts
    repeated_texts: int

    @property
    def absorbed_share(self) -> float:
        return self.absorbed / self.runs if self.runs else 0.0


def summarise(runs: list[RunFixedPoint], by: str, top: int = 5) -> list[FixedPointGroup]:
    """Per network (``by="network"``) or initial prompt (``"prompt"``): runs absorbed, time to absorption, captions."""
    groups: dict[str | None, list[RunFixedPoint]] = {}
    for r in runs:
        groups.setdefault(r.network if by == "network" else r.initial_prompt, []).append(r)
    out = []
    for group in sorted(groups, key=lambda g: (g is None, str(g))):
        members = groups[group]
        absorbed = [r for r in members if r.absorbed]
        captions = Counter(r.caption for r in absorbed).most_common(top)
        out.append(
            FixedPointGroup(
                group,
                len(members),
                len(absorbed),
                quartiles(r.fixed_at for r in absorbed),
                [(str(c), n) for c, n in captions],
                sum(r.repeated_texts for r in members),
            )
        )
    return out

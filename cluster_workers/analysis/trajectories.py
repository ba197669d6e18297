"""Where runs end and when they settle, from one result's labels.

A run's *trajectory* is the cluster of each of its sampled texts, in text order
(``text_index``: the text's position among the run's text invocations). For each
run:

- its **end cluster** is the cluster of its last sampled text (``-1``: outliers);
- it **enters it for good** at the first sampled text after which every sampled
  text is in the end cluster (``entry_step``, a ``text_index``; at downsample N it
  is known to within N steps);
- it **never settles** when its last ``last_k`` sampled texts span more than one
  cluster (outliers count as a cluster of their own). Runs with fewer than
  ``last_k`` sampled texts are *short*: they count where they end, but are not
  judged settled or not.

Medians of entry steps are over the settled runs. Runs are also grouped by a
label of the run: its initial prompt, or its network (the chain of models).
"""

from __future__ import annotations

from collections import Counter, defaultdict
from dataclasses import asdict, dataclass
from typing import Hashable

import numpy as np

LAST_K = 3


@dataclass(frozen=True)
class RunPath:
    run_id: Hashable
    group: str | None  # the run's initial prompt or network, as grouped
    steps: np.ndarray  # text_index of each sampled text, increasing
    clusters: np.ndarray
    end: int
    entry_step: int
    settled: bool | None  # None: short


@dataclass(frozen=True)
class EndRow:
    """Runs grouped by where they end (one cluster), or by their initial prompt or network."""

    key: int | str | None  # the end cluster, or the group
    runs: int
    settled: int
    unsettled: int
    short: int
    median_entry_step: float | None
    top_end: int | None = None  # per group: the most common end cluster
    top_end_share: float | None = None

    @property
    def unsettled_share(self) -> float | None:
        judged = self.settled + self.unsettled
        return self.unsettled / judged if judged else None

    def as_dict(self) -> dict:
        return {**asdict(self), "unsettled_share": self.unsettled_share}


@dataclass(frozen=True)
class Trajectories:
    last_k: int
    runs: list[RunPath]
    by_cluster: list[EndRow]  # most runs first
    by_group: list[EndRow]

    @property
    def overall(self) -> EndRow:
        return _summarise(None, self.runs)


def run_paths(
    run_ids: np.ndarray, groups: np.ndarray, steps: np.ndarray, clusters: np.ndarray, last_k: int = LAST_K
) -> list[RunPath]:
    """One :class:`RunPath` per run, from parallel per-text arrays in any order."""
    if last_k < 1:
        raise ValueError("last_k must be >= 1")
    members: dict[Hashable, list[int]] = defaultdict(list)
    for i, run_id in enumerate(run_ids.tolist()):
        members[run_id].append(i)
    paths = []
    for run_id, rows in members.items():
        idx = np.asarray(rows)
        idx = idx[np.argsort(steps[idx], kind="stable")]
        seq, at = clusters[idx], steps[idx]
        end = int(seq[-1])
        away = np.flatnonzero(seq != end)
        first_for_good = int(away[-1]) + 1 if away.size else 0
        settled = None if seq.size < last_k else bool(np.all(seq[-last_k:] == end))
        paths.append(RunPath(run_id, groups[idx[0]], at, seq, end, int(at[first_for_good]), settled))
    return paths


def _summarise(key: int | str | None, runs: list[RunPath], with_top: bool = False) -> EndRow:
    settled = [r for r in runs if r.settled]
    steps = [r.entry_step for r in settled]
    top = top_share = None
    if with_top and runs:
        top, count = Counter(r.end for r in runs).most_common(1)[0]
        top_share = count / len(runs)
    return EndRow(
        key=key,
        runs=len(runs),
        settled=len(settled),
        unsettled=sum(r.settled is False for r in runs),
        short=sum(r.settled is None for r in runs),
        median_entry_step=float(np.median(steps)) if steps else None,
        top_end=top,
        top_end_share=top_share,
    )


def trajectories(
    run_ids: np.ndarray, groups: np.ndarray, steps: np.ndarray, clusters: np.ndarray, last_k: int = LAST_K
) -> Trajectories:
    """Summaries per end cluster and per group (``groups``: each text's run label, e.g. its initial prompt or
    network; see the module docstring for the definitions)."""
    paths = run_paths(
        np.asarray(run_ids, dtype=object), np.asarray(groups, dtype=object), np.asarray(steps), np.asarray(clusters), last_k
    )
    by_end: dict[int, list[RunPath]] = defaultdict(list)
    by_group: dict[str | None, list[RunPath]] = defaultdict(list)
    for p in paths:
        by_end[p.end].append(p)
        by_group[p.group].append(p)
    clusters_rows = sorted((_summarise(k, v) for k, v in by_end.items()), key=lambda r: (-r.runs, r.key))
    group_rows = sorted((_summarise(k, v, with_top=True) for k, v in by_group.items()), key=lambda r: (-r.runs, str(r.key)))
    return Trajectories(last_k, paths, clusters_rows, group_rows)

"""Symbolic dynamics over cluster labels: core-set milestoning, stays, kinetics and a Markov chain.

Arrays in, plain values out; no database.

- **Core steps.** A sampled text is a *core* step of cluster ``c`` when it is a member of ``c``
  with membership probability >= ``core_probability``. (A result without probabilities -- the
  the application's EVoC layers store none -- counts every member as core.)
- **Milestoning.** Every other step takes the state of the last core visited in its run; the
  steps before a run's first core are its *initial transit* and take no state (``-1``), unless
  ``fill_initial="first"`` gives them the first core's state.
- **Stays.** A stay is a maximal stretch of one state. Times are in text steps of the run (the
  step numbers), never sample positions: a stay lasts from its first step to the first step of
  the next stay; the last stay of a run is *right-censored* and lasts to the run's last sampled
  step plus the sampling interval ``downsample``. At ``downsample`` N, stays shorter than N
  are invisible and every time is a multiple of N.
- **Absorption.** A run is absorbed when its last stay holds at least ``min_stay`` sampled
  steps; its absorption time is that stay's first step.
- **The chain.** Transition counts at a lag of ``lag`` sampled steps over the milestoned
  sequences (self-transitions included), the non-reversible maximum-likelihood transition
  matrix (row-normalised counts; a state with no outgoing count is made absorbing), its
  communicating classes (closed = recurrent/absorbing, the rest transient), the stationary
  distribution of each closed class, mean absorption times and probabilities from the transient
  states, and implied timescales ``-lag * downsample / ln|lambda_k|`` in text steps.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Hashable, Iterator

import numpy as np

from cluster_workers.analysis.fixed_points import quartiles

TRANSIT = -1
FILL_INITIAL = ("none", "first")


@dataclass(frozen=True)
class RunStates:
    """One run's milestoned sequence: per sampled step its text step, state (-1: initial transit) and core flag."""

    run_id: Hashable
    steps: np.ndarray  # (m,) int64 text steps, increasing
    states: np.ndarray  # (m,) int64
    core: np.ndarray  # (m,) bool
    initial_transit: int  # steps before the first core (state -1 unless filled)


def _runs(run_ids: np.ndarray, steps: np.ndarray) -> Iterator[np.ndarray]:
    """Row indices of each run, in step order (runs in id order)."""
    keys = np.asarray([str(r) for r in run_ids], dtype=object)
    order = np.lexsort((steps, keys))
    if not order.size:
        return
    sorted_keys = keys[order]
    bounds = np.r_[0, np.flatnonzero(sorted_keys[1:] != sorted_keys[:-1]) + 1, order.size]
    for a, b in zip(bounds[:-1], bounds[1:]):
        yield order[a:b]


def core_mask(clusters: np.ndarray, probabilities: np.ndarray | None, core_probability: float) -> np.ndarray:
    """Members of a cluster with probability >= ``core_probability`` (no probabilities: every member)."""
    member = clusters >= 0
    if probabilities is None:
        return member
    p = np.where(np.isnan(probabilities), 1.0, probabilities)
    return member & (p >= core_probability)


def milestone(
    run_ids: np.ndarray,
    steps: np.ndarray,
    clusters: np.ndarray,
    probabilities: np.ndarray | None = None,
    core_probability: float = 0.5,
    fill_initial: str = "none",
) -> list[RunStates]:
    """Every run's state sequence by core-set milestoning."""
    if fill_initial not in FILL_INITIAL:
        raise ValueError(f"fill_initial must be one of {FILL_INITIAL}, got {fill_initial!r}")
    core = core_mask(clusters, probabilities, core_probability)
    out = []
    for rows in _runs(run_ids, steps):
        is_core = core[rows]
        labels = np.where(is_core, clusters[rows], TRANSIT)
        idx = np.where(is_core, np.arange(rows.size), -1)
        last = np.maximum.accumulate(idx) if rows.size else idx  # the last core at or before each step
        states = np.where(last >= 0, labels[np.maximum(last, 0)], TRANSIT)
        initial = int(np.argmax(is_core)) if is_core.any() else rows.size
        if fill_initial == "first" and is_core.any():
            states[:initial] = labels[initial]
        out.append(RunStates(run_ids[rows[0]], steps[rows].astype(np.int64), states.astype(np.int64), is_core, initial))
    return out


@dataclass(frozen=True)
class Stay:
    run_id: Hashable
    state: int
    start: int  # first text step
    length: int  # text steps
    samples: int  # sampled steps in the stay
    censored: bool  # the run's last stay: it lasts at least this long


def stays(run: RunStates, downsample: int = 1) -> list[Stay]:
    """The run's stays (initial transit left out), the last one right-censored."""
    keep = run.states != TRANSIT
    steps, states = run.steps[keep], run.states[keep]
    if not states.size:
        return []
    bounds = np.r_[0, np.flatnonzero(states[1:] != states[:-1]) + 1, states.size]
    out = []
    for a, b in zip(bounds[:-1], bounds[1:]):
        last = b == states.size
        end = int(steps[-1]) + downsample if last else int(steps[b])
        out.append(Stay(run.run_id, int(states[a]), int(steps[a]), end - int(steps[a]), int(b - a), bool(last)))
    return out


def kaplan_meier(lengths: np.ndarray, censored: np.ndarray) -> tuple[list[float], list[float]]:
    """The survival function ``P(stay > t)`` at each distinct completed length ``t`` (right-censoring handled)."""
    times = np.unique(lengths[~censored])
    survival, s = [], 1.0
    for t in times:
        at_risk = int(np.sum(lengths >= t))
        ended = int(np.sum((lengths == t) & ~censored))
        if at_risk:
            s *= 1.0 - ended / at_risk
        survival.append(s)
    return [float(t) for t in times], survival


MIN_TAIL_SAMPLE = 50  # completed stays below which the tail test says "undecided (too few stays)"


def tail_verdict(lengths: np.ndarray, significance: float = 0.05) -> dict:
    """Exponential against heavy-tailed, by the ``powerlaw`` package's likelihood-ratio tests on completed stays.

    ``R > 0`` favours the first distribution named; the verdict is heavy-tailed only when both the power-law
    and the lognormal comparisons with the exponential favour the heavy tail at ``significance``, exponential
    when both favour the exponential, undecided otherwise (and always below :data:`MIN_TAIL_SAMPLE` stays).
    """
    data = np.asarray(lengths, dtype=np.float64)
    data = data[data > 0]
    out: dict = {"n": int(data.size), "library": "powerlaw", "verdict": "undecided"}
    if data.size < MIN_TAIL_SAMPLE or np.unique(data).size < 3:
        out["reason"] = f"fewer than {MIN_TAIL_SAMPLE} completed stays or fewer than 3 distinct lengths"
        return out
    try:
        import powerlaw
    except ImportError:
        out["reason"] = "the powerlaw package is not installed: pip install 'cluster-workers[dynamics]'"
        return out
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fit = powerlaw.Fit(data, discrete=True, xmin=float(data.min()), verbose=False)
        r_pl, p_pl = fit.distribution_compare("power_law", "exponential", normalized_ratio=True)
        r_ln, p_ln = fit.distribution_compare("lognormal", "exponential", normalized_ratio=True)
    out.update(
        {
            "power_law_vs_exponential": {"R": float(r_pl), "p": float(p_pl)},
            "lognormal_vs_exponential": {"R": float(r_ln), "p": float(p_ln)},
            "power_law_alpha": float(fit.power_law.alpha),
            "xmin": float(fit.xmin),
        }
    )
    heavy = all(r > 0 and p < significance for r, p in ((r_pl, p_pl), (r_ln, p_ln)))
    light = all(r < 0 and p < significance for r, p in ((r_pl, p_pl), (r_ln, p_ln)))
    out["verdict"] = "heavy-tailed" if heavy else "exponential" if light else "undecided"
    if out["verdict"] == "undecided":
        out["reason"] = f"the likelihood-ratio tests do not agree at p < {significance}"
    return out


@dataclass
class Chain:
    """A Markov chain estimated from milestoned sequences (states are cluster ranks)."""

    states: list[int]
    lag: int  # sampled steps
    counts: np.ndarray  # (k, k) transition counts at the lag
    matrix: np.ndarray  # (k, k) row-stochastic
    absorbing_rows: list[int]  # states with no outgoing count, made absorbing
    closed_classes: list[list[int]]  # recurrent classes (absorbing when of one state)
    transient: list[int]
    stationary: list[dict[int, float]]  # one distribution per closed class
    absorption_steps: dict[int, float]  # transient state -> mean text steps until a closed class
    absorption_probabilities: dict[int, list[float]]  # transient state -> probability of each closed class
    timescales: list[float]  # implied timescales in text steps, largest first

    def as_dict(self) -> dict:
        return {
            "states": self.states,
            "lag": self.lag,
            "counts": self.counts.astype(int).tolist(),
            "matrix": self.matrix.tolist(),
            "absorbing_rows": self.absorbing_rows,
            "closed_classes": self.closed_classes,
            "transient": self.transient,
            "stationary": [{str(k): v for k, v in d.items()} for d in self.stationary],
            "absorption_steps": {str(k): v for k, v in self.absorption_steps.items()},
            "absorption_probabilities": {str(k): v for k, v in self.absorption_probabilities.items()},
            "timescales": self.timescales,
        }


def lagged_counts(runs: list[RunStates], lag: int = 1) -> tuple[list[int], np.ndarray]:
    """States seen (sorted) and counts of ``(state at t, state at t + lag)`` over every run's milestoned steps."""
    pairs: Counter = Counter()
    seen: set[int] = set()
    for run in runs:
        s = run.states[run.states != TRANSIT]
        seen.update(s.tolist())
        if s.size > lag:
            pairs.update(zip(s[:-lag].tolist(), s[lag:].tolist()))
    states = sorted(seen)
    at = {s: i for i, s in enumerate(states)}
    counts = np.zeros((len(states), len(states)), dtype=np.float64)
    for (a, b), n in pairs.items():
        counts[at[a], at[b]] = n
    return states, counts


def stationary_of(matrix: np.ndarray) -> np.ndarray:
    """The stationary distribution of an irreducible row-stochastic matrix (solves pi (T - I) = 0, sum pi = 1)."""
    k = matrix.shape[0]
    a = np.vstack([(matrix - np.eye(k)).T, np.ones(k)])
    b = np.r_[np.zeros(k), 1.0]
    pi, *_ = np.linalg.lstsq(a, b, rcond=None)
    pi = np.clip(pi, 0.0, None)
    return pi / pi.sum()


# Reads in one piece: the chain's estimate and every quantity derived from it, in order.
def markov_chain(runs: list[RunStates], lag: int = 1, downsample: int = 1) -> Chain:
    """The non-reversible maximum-likelihood chain at ``lag`` and what follows from it."""
    from scipy.sparse.csgraph import connected_components

    if lag < 1:
        raise ValueError("lag must be at least 1")
    states, counts = lagged_counts(runs, lag)
    k = len(states)
    rows = counts.sum(axis=1)
    matrix = np.zeros_like(counts)
    absorbing = [states[i] for i in range(k) if rows[i] == 0]
    for i in range(k):
        if rows[i]:
            matrix[i] = counts[i] / rows[i]
        else:
            matrix[i, i] = 1.0
    graph = matrix > 0
    n_classes, label = connected_components(graph, directed=True, connection="strong") if k else (0, np.array([], dtype=int))
    closed, transient = [], []
    for c in range(n_classes):
        members = np.flatnonzero(label == c)
        outside = np.flatnonzero(label != c)
        if graph[np.ix_(members, outside)].any():
            transient += members.tolist()
        else:
            closed.append(members.tolist())
    closed.sort(key=lambda m: states[m[0]])
    stationary = []
    for members in closed:
        pi = stationary_of(matrix[np.ix_(members, members)])
        stationary.append({states[m]: float(p) for m, p in zip(members, pi)})
    absorption_steps: dict[int, float] = {}
    absorption_prob: dict[int, list[float]] = {}
    if transient and closed:
        t = sorted(transient)
        q = matrix[np.ix_(t, t)]
        fundamental = np.linalg.inv(np.eye(len(t)) - q)
        steps = fundamental @ np.ones(len(t)) * lag * downsample
        into = np.column_stack([matrix[np.ix_(t, members)].sum(axis=1) for members in closed])
        probabilities = fundamental @ into
        for i, m in enumerate(t):
            absorption_steps[states[m]] = float(steps[i])
            absorption_prob[states[m]] = [float(p) for p in probabilities[i]]
    eigen = np.sort(np.abs(np.linalg.eigvals(matrix)))[::-1] if k else np.array([])
    timescales = [float(-lag * downsample / np.log(v)) for v in eigen if 1e-12 < v < 1.0 - 1e-12]
    return Chain(
        states,
        lag,
        counts,
        matrix,
        absorbing,
        [[states[m] for m in c] for c in closed],
        [states[m] for m in sorted(transient)],
        stationary,
        absorption_steps,
        absorption_prob,
        timescales,
    )


@dataclass
class Kinetics:
    """One group's kinetics (a network, an initial prompt, or every run)."""

    group: str | None
    runs: int
    steps: int
    core_steps: int
    initial_transit_steps: int
    runs_without_core: int
    jumps: dict[tuple[int, int], int]  # (from, to) with from != to
    dwell: dict[int, list[tuple[int, bool]]]  # state -> [(length in text steps, censored)]
    absorbed: int
    absorption_times: list[int]  # text steps, of the absorbed runs
    chain: Chain | None = None
    tail: dict = field(default_factory=dict)

    @property
    def transit_share(self) -> float:
        """Share of sampled steps that are not core (milestoned, or the initial transit)."""
        return 1.0 - self.core_steps / self.steps if self.steps else 0.0

    def jump_matrix(self) -> tuple[list[int], np.ndarray]:
        """States in the jumps and the row-normalised matrix of jumps (rows without jumps stay zero)."""
        states = sorted({s for pair in self.jumps for s in pair})
        at = {s: i for i, s in enumerate(states)}
        m = np.zeros((len(states), len(states)))
        for (a, b), n in self.jumps.items():
            m[at[a], at[b]] = n
        sums = m.sum(axis=1, keepdims=True)
        return states, np.divide(m, sums, out=np.zeros_like(m), where=sums > 0)

    def dwell_summary(self) -> dict:
        lengths = np.array([steps for v in self.dwell.values() for steps, _ in v], dtype=np.int64)
        censored = np.array([c for v in self.dwell.values() for _, c in v], dtype=bool)
        times, survival = kaplan_meier(lengths, censored) if lengths.size else ([], [])
        return {
            "stays": int(lengths.size),
            "censored": int(censored.sum()),
            "completed": quartiles(lengths[~censored]),
            "ccdf": {"t": times, "survival": survival},
            "tail": self.tail,
        }

    def as_dict(self) -> dict:
        states, matrix = self.jump_matrix()
        absorbed_q = quartiles(self.absorption_times)
        return {
            "group": self.group,
            "runs": self.runs,
            "steps": self.steps,
            "core_steps": self.core_steps,
            "transit_share": self.transit_share,
            "initial_transit_steps": self.initial_transit_steps,
            "runs_without_core": self.runs_without_core,
            "jumps": [{"from": a, "to": b, "count": n} for (a, b), n in sorted(self.jumps.items())],
            "jump_matrix": {"states": states, "matrix": matrix.tolist()},
            "dwell": self.dwell_summary(),
            "dwell_per_state": {
                str(s): {
                    "stays": len(v),
                    "censored": sum(c for _, c in v),
                    "completed": quartiles(steps for steps, c in v if not c),
                }
                for s, v in sorted(self.dwell.items())
            },
            "absorbed": self.absorbed,
            "absorbed_share": self.absorbed / self.runs if self.runs else 0.0,
            "absorption_time": absorbed_q,
            "chain": self.chain.as_dict() if self.chain is not None else None,
        }


def kinetics(
    runs: list[RunStates], group: str | None = None, downsample: int = 1, min_stay: int = 3, lag: int = 1, tail_test: bool = True
) -> Kinetics:
    """The kinetics of a set of runs' milestoned sequences."""
    jumps: Counter = Counter()
    dwell: dict[int, list[tuple[int, bool]]] = {}
    absorbed_times: list[int] = []
    for run in runs:
        s = run.states[run.states != TRANSIT]
        jumps.update((a, b) for a, b in zip(s[:-1].tolist(), s[1:].tolist()) if a != b)
        run_stays = stays(run, downsample)
        for stay in run_stays:
            dwell.setdefault(stay.state, []).append((stay.length, stay.censored))
        if run_stays and run_stays[-1].samples >= min_stay:
            absorbed_times.append(run_stays[-1].start)
    out = Kinetics(
        group,
        len(runs),
        int(sum(r.steps.size for r in runs)),
        int(sum(r.core.sum() for r in runs)),
        int(sum(r.initial_transit for r in runs)),
        int(sum(1 for r in runs if not r.core.any())),
        dict(jumps),
        dwell,
        len(absorbed_times),
        absorbed_times,
    )
    if any((r.states != TRANSIT).any() for r in runs):
        out.chain = markov_chain(runs, lag, downsample)
    if tail_test:
        completed = np.array([steps for v in dwell.values() for steps, c in v if not c], dtype=np.int64)
        out.tail = tail_verdict(completed)
    return out


def absorption_curve(times: list[int], runs: int, horizon: int) -> tuple[list[int], list[float]]:
    """Share of ``runs`` absorbed by text step t, for t = 0 .. horizon (the report's absorption curve)."""
    grid = np.arange(horizon + 1)
    done = np.searchsorted(np.sort(np.asarray(times, dtype=np.int64)), grid, side="right")
    return grid.tolist(), (done / max(runs, 1)).tolist()

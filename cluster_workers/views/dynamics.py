"""``fixed-points``, ``states`` and ``kinetics``: the symbolic dynamics of the runs, read from the database."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import sqlalchemy as sa

from cluster_workers.analysis.dynamics import FILL_INITIAL, Kinetics, RunStates, kinetics, milestone
from cluster_workers.analysis.fixed_points import NORMALISATIONS, FixedPointGroup, RunFixedPoint, run_fixed_point, summarise
from cluster_workers.db.catalog import ResultSummary, find_result
from cluster_workers.db.connect import Database, as_database
from cluster_workers.db.experiment import iter_run_texts
from cluster_workers.db.memberships import Labelled, labelled
from cluster_workers.errors import ConfigError
from cluster_workers.views.tables import clip, text_table

CORE_PROBABILITY = 0.5  # the default core threshold (docs/dynamics.md says why)
GROUPINGS = ("network", "prompt", "all")


@dataclass
class FixedPointReport:
    min_repeats: int
    normalisation: str
    by: str
    runs: list[RunFixedPoint]
    groups: list[FixedPointGroup]

    def as_dict(self) -> dict:
        return {
            "min_repeats": self.min_repeats,
            "normalisation": self.normalisation,
            "by": self.by,
            "groups": [
                {
                    "group": g.group,
                    "runs": g.runs,
                    "absorbed": g.absorbed,
                    "absorbed_share": g.absorbed_share,
                    "time_to_absorption": g.time_to_absorption,
                    "top_captions": g.top_captions,
                    "repeated_texts": g.repeated_texts,
                }
                for g in self.groups
            ],
            "runs": [
                {
                    "run_id": str(r.run_id),
                    "network": r.network,
                    "initial_prompt": r.initial_prompt,
                    "texts": r.texts,
                    "fixed_at": r.fixed_at,
                    "repeats": r.repeats,
                    "caption": r.caption,
                    "repeated_texts": r.repeated_texts,
                }
                for r in self.runs
            ],
        }


def fixed_points_in(
    conn: sa.Connection, min_repeats: int = 3, how: str = "exact", by: str = "network", experiment: str | None = None
) -> FixedPointReport:
    if how not in NORMALISATIONS:
        raise ConfigError(f"--normalise must be one of {', '.join(NORMALISATIONS)}, got {how!r}")
    if by not in ("network", "prompt"):
        raise ConfigError(f"--by must be network or prompt, got {by!r}")
    if min_repeats < 1:
        raise ConfigError("--min-repeats must be at least 1")
    runs = [
        run_fixed_point(r.run_id, r.network, r.initial_prompt, r.texts, min_repeats, how)
        for r in iter_run_texts(conn, experiment)
    ]
    return FixedPointReport(min_repeats, how, by, runs, summarise(runs, by))


def load_fixed_points(
    db: str | Database, min_repeats: int = 3, how: str = "exact", by: str = "network", experiment: str | None = None
) -> FixedPointReport:
    return as_database(db).read(lambda conn: fixed_points_in(conn, min_repeats, how, by, experiment))


def fixed_points_table(report: FixedPointReport, limit: int = 20) -> str:
    body = []
    for g in report.groups[: limit or None]:
        t = g.time_to_absorption
        when = "-" if t["median"] is None else f"{t['median']:g} ({t['q1']:g}–{t['q3']:g})"
        top = f"{clip(g.top_captions[0][0], 50)} ×{g.top_captions[0][1]}" if g.top_captions else ""
        body.append(
            [clip(str(g.group), 40), str(g.runs), f"{g.absorbed} ({g.absorbed_share:.0%})", when, str(g.repeated_texts), top]
        )
    head = (
        f"fixed points: the caption constant to the end of the run for at least {report.min_repeats} texts "
        f"({report.normalisation} strings), every text step; per {report.by}"
    )
    return (
        head
        + "\n"
        + text_table(
            [report.by, "runs", "absorbed", "absorbed at step: median (q1–q3)", "repeated texts", "most common fixed point"],
            body,
            {1, 2, 4},
        )
    )


@dataclass
class StatesReport:
    result: ResultSummary
    downsample: int
    core_probability: float
    fill_initial: str
    runs: list[RunStates]
    groups: dict[object, str | None]  # run id -> network
    probabilities_stored: bool

    @property
    def warning(self) -> str | None:
        if self.downsample > 1:
            return (
                f"downsample {self.downsample}: a step is {self.downsample} texts apart; stays shorter than "
                f"{self.downsample} texts are invisible and every time is a multiple of {self.downsample}"
            )
        return None

    def summary(self) -> dict:
        steps = sum(r.steps.size for r in self.runs)
        core = sum(int(r.core.sum()) for r in self.runs)
        return {
            "runs": len(self.runs),
            "steps": steps,
            "core_steps": core,
            "milestoned_steps": steps - core,
            "initial_transit_steps": sum(r.initial_transit for r in self.runs),
            "runs_without_core": sum(1 for r in self.runs if not r.core.any()),
            "states": len({int(s) for r in self.runs for s in r.states if s >= 0}),
        }

    def as_dict(self) -> dict:
        return {
            "result": str(self.result.id),
            "model": self.result.model,
            "downsample": self.downsample,
            "core_probability": self.core_probability,
            "fill_initial": self.fill_initial,
            "probabilities_stored": self.probabilities_stored,
            "warning": self.warning,
            "summary": self.summary(),
            "runs": [
                {
                    "run_id": str(r.run_id),
                    "network": self.groups.get(r.run_id),
                    "initial_transit": r.initial_transit,
                    "steps": r.steps.tolist(),
                    "states": r.states.tolist(),
                    "core": r.core.tolist(),
                }
                for r in self.runs
            ],
        }


def _states(
    conn: sa.Connection, result_id: str, core_probability: float, fill_initial: str, experiment: str | None
) -> tuple[ResultSummary, Labelled, list[RunStates], int]:
    if not 0.0 <= core_probability <= 1.0:
        raise ConfigError(f"--core-probability must be between 0 and 1, got {core_probability!r}")
    if fill_initial not in FILL_INITIAL:
        raise ConfigError(f"--fill-initial must be one of {', '.join(FILL_INITIAL)}, got {fill_initial!r}")
    result = find_result(conn, result_id)
    data = labelled(conn, result.id, experiment=experiment, with_probabilities=True)
    runs = milestone(data.run_ids, data.text_index, data.clusters, data.stored_probabilities, core_probability, fill_initial)
    return result, data, runs, int((result.parameters or {}).get("downsample") or 1)


def load_states(
    db: str | Database,
    result_id: str,
    core_probability: float = CORE_PROBABILITY,
    fill_initial: str = "none",
    experiment: str | None = None,
) -> StatesReport:
    def fn(conn: sa.Connection) -> StatesReport:
        result, data, runs, downsample = _states(conn, result_id, core_probability, fill_initial, experiment)
        return StatesReport(
            result,
            downsample,
            core_probability,
            fill_initial,
            runs,
            dict(zip(data.run_ids.tolist(), data.networks.tolist())),
            data.stored_probabilities is not None,
        )

    return as_database(db).read(fn)


def _stays(states: np.ndarray) -> str:
    """A state sequence as its stays: ``state×steps`` in order (``-`` for the initial transit)."""
    parts, i = [], 0
    while i < states.size:
        j = i
        while j < states.size and states[j] == states[i]:
            j += 1
        parts.append(f"{'-' if states[i] < 0 else int(states[i])}×{j - i}")
        i = j
    return " ".join(parts)


def states_table(report: StatesReport, limit: int = 10) -> str:
    s = report.summary()
    lines = [
        f"states of {report.result.id.hex[:8]} ({report.result.model}, downsample {report.downsample}): core = member with "
        f"probability >= {report.core_probability:g}"
        + ("" if report.probabilities_stored else " (no probabilities stored: every member is core)"),
        f"{s['runs']:,} runs, {s['steps']:,} sampled steps: {s['core_steps']:,} core, {s['milestoned_steps']:,} milestoned "
        f"({s['initial_transit_steps']:,} of them initial transit"
        + (", given the first core's state" if report.fill_initial == "first" else ", no state")
        + f"); "
        f"{s['runs_without_core']:,} runs never reach a core; {s['states']} states",
    ]
    if report.warning:
        lines.append(f"warning: {report.warning}")
    shown = report.runs if limit == 0 else report.runs[:limit]
    if shown:
        rows = [[str(r.run_id)[:8], str(report.groups.get(r.run_id) or ""), _stays(r.states)] for r in shown]
        lines.append(text_table(["run", "network", "stays (state×sampled steps)"], rows, set()))
    if len(shown) < len(report.runs):
        lines.append(f"… {len(report.runs) - len(shown):,} more run(s); use --limit 0 to see all, --json for the steps")
    return "\n".join(lines)


@dataclass
class KineticsReport:
    result: ResultSummary
    downsample: int
    by: str
    core_probability: float
    min_stay: int
    lag: int
    groups: list[Kinetics]

    def as_dict(self) -> dict:
        warning = StatesReport(self.result, self.downsample, self.core_probability, "none", [], {}, True).warning
        return {
            "result": str(self.result.id),
            "model": self.result.model,
            "downsample": self.downsample,
            "by": self.by,
            "core_probability": self.core_probability,
            "min_stay": self.min_stay,
            "lag": self.lag,
            "time_unit": "text steps of the run",
            "warning": warning,
            "groups": [g.as_dict() for g in self.groups],
        }


def group_kinetics(
    data: Labelled, runs: list[RunStates], by: str, downsample: int, min_stay: int = 3, lag: int = 1, tail_test: bool = True
) -> list[Kinetics]:
    """The runs' kinetics per network, per initial prompt, or of every run together (``by="all"``), groups in name order."""
    values = data.networks if by == "network" else data.prompts
    group_of = dict(zip(data.run_ids.tolist(), values.tolist())) if by != "all" else {}
    grouped: dict[object, list[RunStates]] = {}
    for run in runs:
        grouped.setdefault(group_of.get(run.run_id), []).append(run)
    return [
        kinetics(grouped[g], None if g is None else str(g), downsample, min_stay, lag, tail_test)
        for g in sorted(grouped, key=lambda g: (g is None, str(g)))
    ]


def load_kinetics(
    db: str | Database,
    result_id: str,
    by: str = "network",
    core_probability: float = CORE_PROBABILITY,
    fill_initial: str = "none",
    min_stay: int = 3,
    lag: int = 1,
    experiment: str | None = None,
) -> KineticsReport:
    if by not in GROUPINGS:
        raise ConfigError(f"--by must be one of {', '.join(GROUPINGS)}, got {by!r}")
    if lag < 1 or min_stay < 1:
        raise ConfigError("--lag and --min-stay must be at least 1")

    def fn(conn: sa.Connection) -> KineticsReport:
        result, data, runs, downsample = _states(conn, result_id, core_probability, fill_initial, experiment)
        out = group_kinetics(data, runs, by, downsample, min_stay, lag)
        return KineticsReport(result, downsample, by, core_probability, min_stay, lag, out)

    return as_database(db).read(fn)


def kinetics_table(report: KineticsReport, limit: int = 20) -> str:
    body = []
    for g in report.groups[: limit or None]:
        d = g.dwell_summary()
        c = d["completed"]
        dwell = "-" if c["median"] is None else f"{c['median']:g} ({c['q1']:g}–{c['q3']:g})"
        chain = g.chain
        classes = f"{len(chain.closed_classes)} closed, {len(chain.transient)} transient" if chain else "-"
        tail = d["tail"].get("verdict", "-") if d["tail"] else "-"
        body.append(
            [
                clip(str(g.group if report.by != "all" else "every run"), 36),
                str(g.runs),
                f"{g.transit_share:.0%}",
                str(sum(g.jumps.values())),
                f"{d['stays']} ({d['censored']} cens.)",
                dwell,
                tail,
                f"{g.absorbed / g.runs:.0%}" if g.runs else "-",
                classes,
            ]
        )
    head = (
        f"kinetics of {report.result.id.hex[:8]} ({report.result.model}), per {report.by}, in text steps; core probability "
        f">= {report.core_probability:g}, absorbed = last stay of >= {report.min_stay} sampled steps, chain lag {report.lag}"
    )
    table = text_table(
        [report.by, "runs", "transit", "jumps", "stays", "dwell median (q1–q3)", "tail", "absorbed", "chain classes"],
        body,
        {1, 2, 3, 7},
    )
    warning = report.as_dict()["warning"]
    return head + "\n" + table + (f"\nwarning: {warning}" if warning else "") + "\n(everything, per state and the chain: --json)"

"""Symbolic dynamics on hand-built sequences: every number known in advance, and the chain checked against deeptime."""

from __future__ import annotations

import numpy as np
import pytest

from cluster_workers.analysis.dynamics import kaplan_meier, kinetics, markov_chain, milestone, stays, tail_verdict
from cluster_workers.analysis.fixed_points import run_fixed_point, summarise
from tests.helpers import RUNS


def arrays(runs=RUNS, probabilities=None):
    run_ids, steps, clusters = [], [], []
    for run, (_, labels, _) in runs.items():
        run_ids += [run] * len(labels)
        steps += list(range(len(labels)))
        clusters += labels
    return np.array(run_ids, dtype=object), np.array(steps), np.array(clusters), probabilities


def by_run(states):
    return {r.run_id: r for r in states}


def test_milestoning_gives_each_step_the_last_core():
    got = by_run(milestone(*arrays()))
    assert got["r0"].states.tolist() == [-1, 2, 2, 1, 1, 1] and got["r0"].initial_transit == 1
    assert got["r1"].states.tolist() == [2, 2, 1, 1, 2, 1] and got["r1"].core.tolist() == [True, False, True, False, True, True]
    assert got["r2"].states.tolist() == [-1, -1, -1, -1] and got["r2"].initial_transit == 4 and not got["r2"].core.any()
    assert got["r3"].states.tolist() == [1] * 5
    filled = by_run(milestone(*arrays(), fill_initial="first"))
    assert filled["r0"].states.tolist() == [2, 2, 2, 1, 1, 1]
    assert filled["r2"].states.tolist() == [-1, -1, -1, -1]  # no core to take


def test_probabilities_decide_which_members_are_core():
    run_ids, steps, clusters, _ = arrays({"r": ("X", [1, 1, 2, 2], ["a"] * 4)})
    probabilities = np.array([0.9, 0.4, 0.3, 1.0])
    got = milestone(run_ids, steps, clusters, probabilities, core_probability=0.5)[0]
    assert got.core.tolist() == [True, False, False, True]
    assert got.states.tolist() == [1, 1, 1, 2]
    only_densest = milestone(run_ids, steps, clusters, probabilities, core_probability=1.0)[0]
    assert only_densest.states.tolist() == [-1, -1, -1, 2] and only_densest.initial_transit == 3


def test_stays_are_in_text_steps_and_the_last_is_censored():
    got = by_run(milestone(*arrays()))
    assert [(s.state, s.start, s.length, s.samples, s.censored) for s in stays(got["r0"])] == [
        (2, 1, 2, 2, False),
        (1, 3, 3, 3, True),
    ]
    assert [(s.state, s.start, s.length, s.censored) for s in stays(got["r1"])] == [
        (2, 0, 2, False),
        (1, 2, 2, False),
        (2, 4, 1, False),
        (1, 5, 1, True),
    ]
    assert stays(got["r2"]) == []
    # at downsample 10 the same sequence is 10 texts a step: every time scales, the censored end included
    run_ids, steps, clusters, _ = arrays({"r0": RUNS["r0"]})
    tenfold = milestone(run_ids, steps * 10, clusters)[0]
    assert [(s.start, s.length) for s in stays(tenfold, downsample=10)] == [(10, 20), (30, 30)]


def test_kinetics_per_network_known_answers():
    runs = by_run(milestone(*arrays()))
    x = kinetics([runs["r0"], runs["r1"]], "X", tail_test=False)
    assert (x.runs, x.steps, x.core_steps, x.initial_transit_steps, x.runs_without_core) == (2, 12, 9, 1, 0)
    assert x.transit_share == pytest.approx(0.25, abs=0)
    assert x.jumps == {(2, 1): 3, (1, 2): 1}
    states, matrix = x.jump_matrix()
    assert states == [1, 2] and matrix.tolist() == [[0.0, 1.0], [1.0, 0.0]]
    assert sorted(x.dwell[2]) == [(1, False), (2, False), (2, False)]
    assert sorted(x.dwell[1]) == [(1, True), (2, False), (3, True)]
    summary = x.dwell_summary()
    assert (summary["stays"], summary["censored"]) == (6, 2)
    assert summary["completed"] == {"q1": 1.75, "median": 2.0, "q3": 2.0}
    assert (x.absorbed, x.absorption_times) == (1, [3])
    chain = x.chain
    assert chain.states == [1, 2] and chain.counts.tolist() == [[3, 1], [3, 2]]
    assert np.allclose(chain.matrix, [[0.75, 0.25], [0.6, 0.4]], atol=1e-15, rtol=0)
    assert chain.closed_classes == [[1, 2]] and chain.transient == []
    assert chain.stationary[0][1] == pytest.approx(2.4 / 3.4, abs=1e-12) and chain.stationary[0][2] == pytest.approx(
        1 / 3.4, abs=1e-12
    )
    assert chain.timescales == [pytest.approx(-1 / np.log(0.15), abs=1e-12)]
    y = kinetics([runs["r2"], runs["r3"]], "Y", tail_test=False)
    assert (y.runs, y.steps, y.core_steps, y.initial_transit_steps, y.runs_without_core) == (2, 9, 5, 4, 1)
    assert y.transit_share == pytest.approx(4 / 9, abs=1e-15)
    assert y.jumps == {} and y.dwell == {1: [(5, True)]}
    assert (y.absorbed, y.absorption_times) == (1, [0])
    assert y.chain.closed_classes == [[1]] and y.chain.stationary == [{1: 1.0}] and y.chain.timescales == []


def test_an_absorbing_state_and_transient_states_in_the_chain():
    # 1 -> 2 -> 3 -> 3 ...: 3 absorbs; from 1 it takes two steps, from 2 one
    run_ids, steps, clusters, _ = arrays({"a": ("X", [1, 2, 3, 3, 3], ["t"] * 5), "b": ("X", [2, 3, 3], ["t"] * 3)})
    chain = markov_chain(milestone(run_ids, steps, clusters), lag=1, downsample=5)
    assert chain.closed_classes == [[3]] and chain.transient == [1, 2]
    assert chain.stationary == [{3: 1.0}]
    assert chain.absorption_steps == {1: pytest.approx(10.0), 2: pytest.approx(5.0)}  # text steps: 2 and 1 steps of 5
    assert chain.absorption_probabilities == {1: [pytest.approx(1.0)], 2: [pytest.approx(1.0)]}


def test_the_chain_equals_deeptime_on_the_same_counts():
    deeptime = pytest.importorskip("deeptime")
    from deeptime.markov import TransitionCountEstimator
    from deeptime.markov.msm import MaximumLikelihoodMSM

    rng = np.random.default_rng(4)
    truth = rng.dirichlet(np.ones(5), size=5)
    seqs = []
    for _ in range(30):
        s = [int(rng.integers(5))]
        for _ in range(60):
            s.append(int(rng.choice(5, p=truth[s[-1]])))
        seqs.append(s)
    runs = {f"r{i}": ("X", [x + 1 for x in s], ["t"] * len(s)) for i, s in enumerate(seqs)}  # states 1..5 (ranks)
    for lag in (1, 3):
        ours = markov_chain(milestone(*arrays(runs)), lag=lag)
        counts = TransitionCountEstimator(lagtime=lag, count_mode="sliding").fit([np.array(s) for s in seqs]).fetch_model()
        theirs = MaximumLikelihoodMSM(reversible=False).fit(counts).fetch_model()
        assert np.array_equal(ours.counts, counts.count_matrix)
        assert np.max(np.abs(ours.matrix - theirs.transition_matrix)) < 1e-12
        assert np.max(np.abs(np.array([ours.stationary[0][k] for k in ours.states]) - theirs.stationary_distribution)) < 1e-12
        # deeptime's implied timescales are in lag steps times its lagtime, as ours are (downsample 1)
        assert np.allclose(ours.timescales[:3], theirs.timescales(k=4)[:3], rtol=1e-9)
    assert deeptime.__version__


def test_deeptime_reversible_drops_an_absorbing_state_ours_keeps_it():
    pytest.importorskip("deeptime")
    from deeptime.markov import TransitionCountEstimator
    from deeptime.markov.msm import MaximumLikelihoodMSM

    seqs = [np.array([0, 0, 1, 1, 0, 1, 2, 2, 2, 2]), np.array([1, 0, 0, 1, 2, 2])]
    counts = TransitionCountEstimator(lagtime=1, count_mode="sliding").fit(seqs).fetch_model()
    assert MaximumLikelihoodMSM(reversible=True).fit(counts).fetch_model().n_states == 2  # state 2 gone
    runs = {f"r{i}": ("X", (s + 1).tolist(), ["t"] * s.size) for i, s in enumerate(seqs)}
    ours = markov_chain(milestone(*arrays(runs)))
    assert ours.states == [1, 2, 3] and ours.closed_classes == [[3]] and ours.stationary == [{3: 1.0}]


def test_kaplan_meier_with_censoring():
    times, survival = kaplan_meier(np.array([1, 2, 2, 3, 4]), np.array([False, False, True, False, True]))
    assert times == [1.0, 2.0, 3.0]
    assert survival == pytest.approx([4 / 5, 4 / 5 * 3 / 4, 4 / 5 * 3 / 4 * 1 / 2])


def test_the_tail_verdict_is_honest_about_small_samples_and_points_the_right_way():
    assert tail_verdict(np.arange(1, 20))["verdict"] == "undecided"
    pytest.importorskip("powerlaw")
    rng = np.random.default_rng(0)
    light = tail_verdict(np.ceil(rng.exponential(5.0, 3000)))
    heavy = tail_verdict(np.ceil((1 - rng.random(3000)) ** (-1 / 1.2)))
    assert light["verdict"] == "exponential", light
    assert heavy["verdict"] == "heavy-tailed", heavy


def test_fixed_points_known_answers():
    runs = [run_fixed_point(r, net, None, texts, min_repeats=3) for r, (net, _, texts) in RUNS.items()]
    got = {r.run_id: (r.fixed_at, r.repeats, r.caption, r.repeated_texts) for r in runs}
    assert got == {"r0": (3, 3, "d", 2), "r1": (None, 0, None, 2), "r2": (None, 0, None, 1), "r3": (0, 5, "q", 4)}
    groups = {g.group: g for g in summarise(runs, "network")}
    assert (groups["X"].runs, groups["X"].absorbed, groups["X"].top_captions, groups["X"].repeated_texts) == (2, 1, [("d", 1)], 4)
    assert groups["X"].time_to_absorption == {"q1": 3.0, "median": 3.0, "q3": 3.0}
    assert (groups["Y"].absorbed, groups["Y"].top_captions, groups["Y"].repeated_texts) == (1, [("q", 1)], 5)
    # two repeats are not enough at the default, enough at --min-repeats 2; folding joins case and spaces
    assert run_fixed_point("r1", "X", None, RUNS["r1"][2], min_repeats=2).fixed_at == 4
    folded = run_fixed_point("f", "X", None, ["A cat", "a  CAT", "a cat "], min_repeats=3, how="fold")
    assert (folded.fixed_at, folded.repeated_texts) == (0, 2)
    assert run_fixed_point("f", "X", None, ["A cat", "a  CAT", "a cat "], min_repeats=3).fixed_at is None

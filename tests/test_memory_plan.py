"""The memory plan: estimated peaks against the memory available, before any worker starts."""

from __future__ import annotations

import pytest
from loguru import logger

from cluster_workers.engines.memory import fast_peak_bytes
from cluster_workers.run.config import Settings
from cluster_workers.run.coordinator import run_clustering
from cluster_workers.run.memory_plan import COORDINATOR_BYTES, PlanRefused, plan_memory
from tests.helpers import file_hash, run_cli

GIB = 2**30


def test_peak_does_not_grow_with_min_samples_past_the_list_cap():
    small, large = fast_peak_bytes(120_000, 384, 2), fast_peak_bytes(120_000, 384, 1000)
    assert large <= 1.5 * small
    assert fast_peak_bytes(1_100_000, 768, 1099) <= 8 * GIB  # the whole database, users' defaults, one model


def test_plan_runs_fewer_workers_when_the_largest_do_not_fit_together():
    samples = {"A": (110_000, 768, 109), "B": (110_000, 768, 109), "C": (3, 768, 1)}
    one = fast_peak_bytes(110_000, 768, 109)
    plan = plan_memory(samples, "fast", 2, COORDINATOR_BYTES + int(1.5 * one))
    assert plan.workers == 1 and plan.order[:2] == ["A", "B"]
    roomy = plan_memory(samples, "fast", 2, COORDINATOR_BYTES + 3 * one)
    assert roomy.workers == 2


def test_plan_refuses_a_model_that_cannot_fit_alone():
    with pytest.raises(PlanRefused, match=r"model Big needs an estimated .* GiB \(1,100,000 vectors x 768, min_samples 1100; "):
        plan_memory({"Big": (1_100_000, 768, 1099), "Small": (100, 768, 1)}, "fast", 2, 4 * GIB)


def test_real_run_refuses_before_any_worker_and_writes_nothing(demo_db):
    before = file_hash(demo_db)
    result = run_cli("cluster", "--downsample", "10", "-d", str(demo_db), env={"CLUSTER_WORKERS_MEMORY_LIMIT_MB": "100"})
    assert result.returncode == 1
    assert "needs an estimated" in result.stderr and "GiB is available" in result.stderr
    assert file_hash(demo_db) == before


def test_real_run_serialises_workers_under_a_small_limit(demo_db):
    lines: list[str] = []
    sink = logger.add(lambda m: lines.append(str(m)), level="INFO")
    try:
        one = fast_peak_bytes(420, 768, 2)  # the demo's largest model alone fits, two do not
        limit_mb = (COORDINATOR_BYTES + 1.5 * one) / 2**20
        report = run_clustering(Settings(database_url=f"sqlite:///{demo_db}", downsample=1, workers=2, memory_limit_mb=limit_mb))
    finally:
        logger.remove(sink)
    assert len(report.results) == 4
    assert any("memory plan: 1 worker(s) at once" in line for line in lines), lines
    assert any("1 worker(s) at once instead of 2" in line for line in lines)


def test_the_plan_keeps_headroom_over_the_formula():
    """A model whose estimate fits but not with the headroom (measured peaks ran 18% above the formula) is refused."""
    from cluster_workers.run.memory_plan import HEADROOM

    one = fast_peak_bytes(110_000, 768, 109)
    assert HEADROOM >= 1.2
    with pytest.raises(PlanRefused, match="with the plan's 25% to spare"):
        plan_memory({"A": (110_000, 768, 109)}, "fast", 1, COORDINATOR_BYTES + int(1.1 * one))
    assert plan_memory({"A": (110_000, 768, 109)}, "fast", 1, COORDINATOR_BYTES + int(1.3 * one)).workers == 1

"""Before any worker starts: does the run fit the machine's memory, and how many workers at once?

Each model's peak is estimated from its sample (n, dimension, min_samples) by
the engine's formula (:mod:`cluster_workers.engines.memory`) and planned with
``HEADROOM`` to spare. Workers run the
largest models first; the plan takes as many at once as the largest ones fit
together in the memory available, or refuses at once, naming the model, when
even one alone does not fit -- instead of being killed by the kernel later.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import psutil

from cluster_workers.engines.memory import peak_bytes
from cluster_workers.errors import ClusterWorkersError

GIB = 2**30
COORDINATOR_BYTES = 512 * 2**20  # the coordinator itself and the results it gathers, kept aside
# each estimate is planned with this much to spare: measured peaks were up to 18% above the formula (downsample 10,
# a worker process reused for a second model, two threads) and 8% below it (downsample 3)
HEADROOM = 1.25


class PlanRefused(ClusterWorkersError):
    """A model cannot fit the memory available, even alone."""


@dataclass
class MemoryPlan:
    """Per-model estimates (bytes), the memory available, and the workers that fit at once."""

    estimates: dict[str, int]
    available: int
    workers: int
    order: list[str] = field(default_factory=list)  # largest first

    def describe(self) -> list[str]:
        lines = [f"memory plan: {self.workers} worker(s) at once, {self.available / GIB:.1f} GiB available"]
        lines += [f"  {model:<14} estimated peak {self.estimates[model] / GIB:6.2f} GiB" for model in self.order]
        return lines


def available_bytes(limit_mb: float = 0.0) -> int:
    """Memory the workers may use: ``limit_mb`` when set, else what the system reports available."""
    if limit_mb > 0:
        return int(limit_mb * 2**20)
    return int(psutil.virtual_memory().available)


def plan_memory(samples: dict[str, tuple[int, int, int]], engine: str, wanted_workers: int, available: int) -> MemoryPlan:
    """``samples``: model -> (n, dimension, min_samples in hdbscan's convention)."""
    estimates = {m: peak_bytes(engine, n, dim, ms) for m, (n, dim, ms) in samples.items()}
    planned = {m: int(HEADROOM * e) for m, e in estimates.items()}
    order = sorted(estimates, key=lambda m: (-estimates[m], m))
    budget = available - COORDINATOR_BYTES
    if order and planned[order[0]] > budget:
        big = order[0]
        n, dim, ms = samples[big]
        raise PlanRefused(
            f"model {big} needs an estimated {estimates[big] / GIB:.1f} GiB ({n:,} vectors x {dim}, min_samples {ms + 1}; "
            f"{planned[big] / GIB:.1f} GiB with the plan's {HEADROOM - 1:.0%} to spare) "
            f"but {max(budget, 0) / GIB:.1f} GiB is available; use a larger --downsample, fewer models at once, "
            "or a machine with more memory"
        )
    workers = 0
    used = 0
    for model in order[: max(1, wanted_workers)]:  # the largest ones are the ones that may run together
        if used + planned[model] > budget:
            break
        used += planned[model]
        workers += 1
    return MemoryPlan(estimates, available, max(1, workers), order)

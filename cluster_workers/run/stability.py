"""``stability``: are assignments stable under subsampling? Disjoint samples clustered, each assigned to the others.

At ``downsample N`` the offsets ``0 .. K-1`` are disjoint samples of the same
runs (:mod:`cluster_workers.db.experiment`). Each is clustered (the worker's own
code, in this process), and for every ordered pair ``(i, j)`` the points of
sample ``i`` are assigned to clustering ``j`` by HDBSCAN's prediction rule
(:mod:`cluster_workers.engines.predict`). The agreement of the pair is the ARI
on sample ``i``'s points between its own labels and the labels assigned from
``j`` (outliers one group, as everywhere in this tool). Writes nothing unless
``keep``: then every clustering is committed as a normal result (one
transaction each, as ``cluster --offset R`` would write it).
"""

from __future__ import annotations

import tempfile
import time
from dataclasses import dataclass, field

import numpy as np
from loguru import logger
from sklearn.metrics import adjusted_rand_score

from cluster_workers import stopping
from cluster_workers.db import experiment
from cluster_workers.db.connect import make_engine
from cluster_workers.db.experiment import fetch_vectors
from cluster_workers.db.lock import run_lock
from cluster_workers.engines import l2_normalise
from cluster_workers.engines.predict import approximate_predict, prediction_tree
from cluster_workers.engines.query import sample_index
from cluster_workers.engines.tree import cut_tree
from cluster_workers.errors import ConfigError
from cluster_workers.run.config import Settings
from cluster_workers.run.worker import ModelResult, ModelTask, cluster_model


@dataclass
class Pair:
    own: int  # the sample whose points are compared
    other: int  # the clustering they are assigned to
    points: int
    ari: float
    own_outliers: float
    assigned_outliers: float


@dataclass
class ModelStability:
    model: str
    samples: list[dict]  # per offset: points, clusters, outlier share, seconds
    pairs: list[Pair] = field(default_factory=list)

    @property
    def worst(self) -> Pair | None:
        return min(self.pairs, key=lambda p: p.ari) if self.pairs else None

    def as_dict(self) -> dict:
        worst = self.worst
        return {"model": self.model, "samples": self.samples, "pairs": [p.__dict__ for p in self.pairs],
                "worst": None if worst is None else worst.__dict__}  # fmt: skip


@dataclass
class StabilityReport:
    downsample: int
    offsets: int
    engine: str
    parameters: dict
    models: list[ModelStability]
    kept: list[str]  # "MODEL offset R" of every clustering written (keep)

    def as_dict(self) -> dict:
        return {"downsample": self.downsample, "offsets": self.offsets, "engine": self.engine, "parameters": self.parameters,
                "models": [m.as_dict() for m in self.models], "kept": self.kept}  # fmt: skip


def _cluster_offset(settings: Settings, model: str, offset: int, status_dir: str, threads: int) -> tuple[ModelResult, np.ndarray]:
    """One offset's clustering (the worker's code) and its sample's normalised vectors in the same row order."""
    task = ModelTask(model=model, database_url=settings.database_url, downsample=settings.downsample, expected_count=0,
                     offset=offset, experiment=settings.experiment or None, clustering=settings.clustering,
                     db_limits=settings.db_limits, threads=threads, status_dir=status_dir)  # fmt: skip
    result = cluster_model(task)
    vectors = settings.database.read(
        lambda conn: fetch_vectors(
            conn, model, settings.downsample, result.n, experiment=settings.experiment or None, offset=offset
        )
    )
    if not np.array_equal(vectors.ids, result.embedding_ids):
        raise ConfigError(f"model {model}: the sample at offset {offset} changed while it was clustered; run stability again")
    return result, l2_normalise(vectors.data)


def _check_samples(settings: Settings, models: list[str], offsets: int) -> None:
    """Every model exists and has enough sampled points at every offset: else one line naming what is missing."""

    def read(conn):  # type: ignore[no-untyped-def]
        before, first, _ = experiment.counts(conn, settings.downsample, None, settings.experiment or None, 0)
        rest = [
            experiment.sampled_counts(conn, settings.downsample, None, settings.experiment or None, r)[0]
            for r in range(1, offsets)
        ]
        return before, [first, *rest]

    before, per_offset = settings.database.read(read)
    experiment.check_models(models, before)
    fewest = settings.min_samples_to_cluster
    for model in models:
        sizes = [after.get(model, 0) for after in per_offset]
        if min(sizes) < fewest:
            raise ConfigError(
                f"model {model}: offsets 0..{offsets - 1} at downsample {settings.downsample} sample "
                f"{', '.join(f'{n:,}' for n in sizes)} points; each needs at least {fewest} "
                "(fewer offsets, or a smaller downsample)"
            )


def stability(settings: Settings, models: list[str], offsets: int, keep: bool = False, threads: int = 2) -> StabilityReport:
    """Cluster ``offsets`` disjoint samples of each model and assign every sample to every other clustering."""
    if offsets < 2 or offsets > settings.downsample:
        raise ConfigError(f"stability needs 2 to downsample ({settings.downsample}) offsets, got {offsets}")
    if (
        settings.engine == "evoc"
    ):  # assignment across samples is HDBSCAN's prediction rule; EVoC's across-run ARI: bench/engines.py
        raise ConfigError(
            "stability assigns by HDBSCAN's prediction rule: use --engine fast or reference (EVoC has no "
            "prediction data; its agreement across thread counts and row orders is in docs/evoc.md)"
        )
    _check_samples(settings, models, offsets)
    out, kept = [], []
    with tempfile.TemporaryDirectory(prefix="cw-stability-") as status_dir:
        for model in models:
            made, samples = [], []
            for r in range(offsets):
                stopping.check("during stability", "nothing was written" if not kept else "only the kept results were written")
                t0 = time.perf_counter()
                result, data = _cluster_offset(settings, model, r, status_dir, threads)
                made.append((result, data))
                samples.append({"offset": r, "points": result.n, "clusters": result.n_clusters,
                                "outlier_share": round(result.outlier_share, 6), "seconds": round(time.perf_counter() - t0, 3)})  # fmt: skip
                logger.info("{}: offset {} clustered: {:,} points, {} clusters, {:.1%} outliers", model, r, result.n,
                            result.n_clusters, result.outlier_share)  # fmt: skip
            report = ModelStability(model, samples)
            for j, (other, _) in enumerate(made):
                params = settings.clustering.engine_params(other.n)
                cut = cut_tree(other.tree, params)
                tree = prediction_tree(cut.condensed, cut.labels)
                index = sample_index(made[j][1])
                for i, (own, data) in enumerate(made):
                    if i == j:
                        continue
                    assigned = approximate_predict(data, index, other.cores[1], tree, params.min_samples).labels
                    report.pairs.append(Pair(i, j, own.n, float(adjusted_rand_score(own.labels, assigned)),
                                             float(np.mean(own.labels < 0)), float(np.mean(assigned < 0))))  # fmt: skip
            out.append(report)
            if keep:
                kept += _keep(settings, [(r, result) for r, (result, _) in enumerate(made)])
    wanted = settings.clustering
    return StabilityReport(settings.downsample, offsets, wanted.engine, wanted.key(), out, kept)


def _keep(settings: Settings, made: list[tuple[int, ModelResult]]) -> list[str]:
    """Commit each offset's clustering as ``cluster --offset R`` would (its sample fingerprint and run key)."""
    from dataclasses import replace

    from cluster_workers.db.results import matching_results
    from cluster_workers.run.commit import commit, run_key

    ids = []
    with run_lock(settings.database_url, settings.db_limits):
        engine = make_engine(settings.database_url, **settings.db_limits)
        try:
            for offset, result in made:
                at = replace(settings, offset=offset)
                with engine.connect() as conn:
                    fingerprints = experiment.counts(conn, at.downsample, None, at.experiment or None, offset)[2]
                    earlier = matching_results(conn, result.model, run_key(at))
                if any(p.get("sample") == fingerprints.get(result.model) for _, p in earlier) and not settings.force:
                    logger.info("{} offset {}: a result with these parameters on the same sample exists: not written again",
                                result.model, offset)  # fmt: skip
                    continue
                commit(engine, at, [result], fingerprints)
                ids.append(f"{result.model} offset {offset}")
        finally:
            engine.dispose()
    return ids

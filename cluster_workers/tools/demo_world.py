"""The synthetic experiment's world: its models, its shape at any size, and how chains move through meaning.

The vectors are hard in the way real sentence embeddings are: unit vectors with
a shared direction (anisotropy), chains that drift from their prompt and are
captured by one of a few hundred attractor texts (Zipf-distributed popularity,
so cluster sizes differ by orders of magnitude, grouped into themes, each with
its own tightness), exact duplicates (repeated texts), a long tail of chains
that never converge, and per-model rotations and noise so the models disagree a
little. Everything derives from ``seed``. No database here: :mod:`.demo` writes it.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import numpy as np

from cluster_workers.errors import ConfigError

REAL_MODELS = ("STSBMpnet", "STSBRoberta", "Nomic")
CURRENT_MODELS = ("Nomic256",)  # the application's current data: one model, 256-d (truncated and renormalised)
CURRENT_DIM = 256
DUMMY_MODEL = "Dummy"
DUMMY_EMBEDDINGS = 25
DIM = 768
PRODUCTION_EMBEDDINGS = 3_288_025
BYTES_PER_EMBEDDING_ROW = DIM * 4 + 260  # vector, ids, timestamps, model, page slack and two indexes
BYTES_PER_TEXT_INVOCATION = 2 * 260 + 3 * 110  # two invocation rows + index entries

_ADJ = "quiet golden broken endless silver hidden ancient electric gentle wild frozen burning lonely bright".split()
_NOUN = "river city forest machine garden mirror ocean tower child dream storm window bird engine".split()
_VERB = "drifts glows waits sings falls rises breaks dreams turns fades burns opens".split()
_PLACE = "at dawn in the rain under neon light by the sea in a small room beyond the hills at midnight".split(" ")
BASE_TIME = dt.datetime(2025, 3, 1, 12, 0, 0)


@dataclass(frozen=True)
class DemoShape:
    """How many of everything a database of ``total`` embeddings holds."""

    total: int
    text_invocations: int
    dummy: int
    run_lengths: tuple[int, ...]  # text invocations per run; the last two are calibration runs
    attractors: int

    @classmethod
    def for_total(cls, total: int, seed: int = 0, models: int = 3, with_dummy: bool = True) -> "DemoShape":
        least = models * 40 + (DUMMY_EMBEDDINGS if with_dummy else 0)
        if total < least:
            raise ConfigError(f"--embeddings must be at least {least}, got {total}")
        n_text = (total - (DUMMY_EMBEDDINGS if with_dummy else 0)) // models
        dummy = total - models * n_text
        rng = np.random.default_rng([seed, 1])
        # Runs much longer than typical downsample factors at production size (~2,200 texts),
        # ~20 texts in small demos; lengths vary +-50 %.
        mean_len = int(np.clip(n_text / 500, 20, 2200))
        calib = max(4, mean_len // 4)
        remaining = n_text - 2 * calib
        lengths: list[int] = []
        while remaining > 0:
            length = int(rng.integers(mean_len // 2, mean_len * 3 // 2 + 1))
            if not lengths:
                length = max(length, DUMMY_EMBEDDINGS + 5)
            length = min(length, remaining)
            if remaining - length < 10:  # fold a tiny rest into this run
                length = remaining
            lengths.append(length)
            remaining -= length
        lengths += [calib, calib]
        attractors = int(np.clip(n_text // 250, 6, 400))
        return cls(total, n_text, dummy, tuple(lengths), attractors)

    @property
    def runs(self) -> int:
        return len(self.run_lengths)

    def estimated_bytes(self) -> int:
        return self.total * BYTES_PER_EMBEDDING_ROW + self.text_invocations * BYTES_PER_TEXT_INVOCATION


class LatentWorld:
    """The shared 'meaning' space: themes, attractors and how chains move through it."""

    def __init__(self, shape: DemoShape, seed: int, models: tuple[str, ...] = REAL_MODELS, dim: int = DIM) -> None:
        self.dim = dim
        rng = np.random.default_rng([seed, 2])
        self.common = unit(rng.standard_normal(DIM))
        n_themes = max(2, shape.attractors // 12)
        themes = rng.standard_normal((n_themes, DIM)) / np.sqrt(DIM)
        theme_of = rng.integers(0, n_themes, shape.attractors)
        local = rng.standard_normal((shape.attractors, DIM)) / np.sqrt(DIM)
        self.attractors = unit(self.common + 1.1 * themes[theme_of] + 0.9 * local)
        ranks = rng.permutation(shape.attractors) + 1
        weights = 1.0 / ranks**1.1  # Zipf popularity: a few huge attractors, a long tail
        self.popularity = weights / weights.sum()
        self.tightness = rng.uniform(0.12, 0.40, shape.attractors)
        self.texts = [_attractor_text(k) for k in range(shape.attractors)]
        self.theme_of = theme_of
        self.rotations = {m: _rotation(np.random.default_rng([seed, 3, i])) for i, m in enumerate(models)}
        self.model_noise = {m: (0.05, 0.08, 0.11)[i % 3] for i, m in enumerate(models)}

    def chain(self, length: int, rng: np.random.Generator) -> tuple[np.ndarray, list[str], np.ndarray, np.ndarray]:
        """Latent vectors, texts, duplicate flags and attractor per step (-1 before capture) of one run's text outputs."""
        start = unit(self.common + 1.4 * rng.standard_normal(DIM) / np.sqrt(DIM))
        capture_p = rng.uniform(0.02, 0.25)
        capture = int(rng.geometric(capture_p)) - 1  # may exceed length: a chain that never converges
        steps = 0.25 * rng.standard_normal((length, DIM)) / np.sqrt(DIM)
        x = start + np.cumsum(steps, axis=0)
        texts = [drift_text(rng) for _ in range(length)]
        dup = np.zeros(length, dtype=bool)
        captured = np.full(length, -1, dtype=np.int64)
        if capture < length:
            k = int(rng.choice(len(self.popularity), p=self.popularity))
            t = np.arange(length - capture)
            w = (1.0 - np.exp(-(t + 1) / rng.uniform(0.5, 3.0)))[:, None]
            noise = self.tightness[k] * rng.standard_normal((length - capture, DIM)) / np.sqrt(DIM)
            x[capture:] = (1 - w) * x[capture] + w * self.attractors[k] + noise
            tail = texts[capture:]
            for i in range(len(tail)):
                tail[i] = self.texts[k] if rng.random() < 0.6 else f"{self.texts[k]} {_ADJ[rng.integers(len(_ADJ))]}"
            texts[capture:] = tail
            dup[capture + 1 :] = rng.random(length - capture - 1) < 0.15
            captured[capture:] = k
        return unit(x), texts, dup, captured

    def embed(self, latent: np.ndarray, model: str, rng: np.random.Generator) -> np.ndarray:
        """One model's vectors; a model of fewer dimensions keeps the first ``dim`` and is renormalised."""
        noise = self.model_noise[model] * rng.standard_normal(latent.shape) / np.sqrt(DIM)
        return unit((latent @ self.rotations[model] + noise)[:, : self.dim]).astype("<f4")


NETWORKS = (  # the experiment's chains of models (text-to-image, image-to-text), one per run in turn
    ("FLUX.1-schnell", "Moondream2"),
    ("SDXL-Turbo", "BLIP2"),
    ("FLUX.1-schnell", "BLIP2"),
)


def unit(x: np.ndarray) -> np.ndarray:
    return x / np.linalg.norm(x, axis=-1, keepdims=True)


def _rotation(rng: np.random.Generator) -> np.ndarray:
    q, r = np.linalg.qr(rng.standard_normal((DIM, DIM)))
    return q * np.sign(np.diag(r))


def _attractor_text(k: int) -> str:
    r = np.random.default_rng([k, 99])
    return (
        f"a {_ADJ[r.integers(len(_ADJ))]} {_NOUN[r.integers(len(_NOUN))]} {_VERB[r.integers(len(_VERB))]}"
        f" {_PLACE[r.integers(len(_PLACE))]} near the {_NOUN[r.integers(len(_NOUN))]} (attractor {k})"
    )


def drift_text(rng: np.random.Generator) -> str:
    words = rng.integers(0, len(_NOUN), 4)
    return f"the {_ADJ[words[0] % len(_ADJ)]} {_NOUN[words[1]]} and the {_NOUN[words[2]]} {_VERB[words[3] % len(_VERB)]}"

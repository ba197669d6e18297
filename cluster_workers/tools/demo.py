"""Synthetic experiment databases, from a small demo up to the production shape.

Layout as the experiments write it: runs of alternating image/text invocations
(sequence 0 is an image, text on the odd numbers), every text output embedded by
``STSBMpnet``, ``STSBRoberta`` and ``Nomic`` (768-d float32 BLOBs), ``Dummy``
with ~25 embeddings, and two calibration runs (``yeah``/``nah``).

The vectors are hard in the way real sentence embeddings are: unit vectors with
a shared direction (anisotropy), chains that drift from their prompt and are
captured by one of a few hundred attractor texts (Zipf-distributed popularity,
so cluster sizes differ by orders of magnitude, grouped into themes, each with
its own tightness), exact duplicates (repeated texts), a long tail of chains
that never converge, and per-model rotations and noise so the models disagree a
little. Everything derives from ``seed``; generation streams in batches.

``schema="current"`` writes the same kind of data in the users' current schema
(:mod:`cluster_workers.tools.users_schema`): by default one 256-d model (the 768-d
vectors truncated and renormalised, as the users' model is), an ``experiments`` row,
and the users' own clustering as their application writes it -- EVoC-style layers
(``algorithm = 'evoc'``, layer 0 the finest), one membership row per embedding per
layer, each cluster named by its member nearest the centroid.
"""

from __future__ import annotations

import datetime as dt
import shutil
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

import numpy as np
import sqlalchemy as sa
from loguru import logger

from cluster_workers import stopping
from cluster_workers.db.connect import describe, enable_wal, make_engine, normalise_url, sqlite_path, sqlite_pragma
from cluster_workers.db.sampling import CALIBRATION_PROMPTS
from cluster_workers.db.schema import CURRENT, CURRENT_SCHEMA, LEGACY, LEGACY_SCHEMA, SCHEMA_NAMES, iso_timestamp
from cluster_workers.errors import ConfigError, DatabaseError
from cluster_workers.tools.users_schema import EVOC_PARAMETERS, USERS_TABLES, create_users_tables

REAL_MODELS = ("STSBMpnet", "STSBRoberta", "Nomic")
CURRENT_MODELS = ("Nomic256",)  # the users' current data: one model, 256-d (truncated and renormalised)
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
_BASE_TIME = dt.datetime(2025, 3, 1, 12, 0, 0)


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
        self.common = _unit(rng.standard_normal(DIM))
        n_themes = max(2, shape.attractors // 12)
        themes = rng.standard_normal((n_themes, DIM)) / np.sqrt(DIM)
        theme_of = rng.integers(0, n_themes, shape.attractors)
        local = rng.standard_normal((shape.attractors, DIM)) / np.sqrt(DIM)
        self.attractors = _unit(self.common + 1.1 * themes[theme_of] + 0.9 * local)
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
        start = _unit(self.common + 1.4 * rng.standard_normal(DIM) / np.sqrt(DIM))
        capture_p = rng.uniform(0.02, 0.25)
        capture = int(rng.geometric(capture_p)) - 1  # may exceed length: a chain that never converges
        steps = 0.25 * rng.standard_normal((length, DIM)) / np.sqrt(DIM)
        x = start + np.cumsum(steps, axis=0)
        texts = [_drift_text(rng) for _ in range(length)]
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
        return _unit(x), texts, dup, captured

    def embed(self, latent: np.ndarray, model: str, rng: np.random.Generator) -> np.ndarray:
        """One model's vectors; a model of fewer dimensions keeps the first ``dim`` and is renormalised."""
        noise = self.model_noise[model] * rng.standard_normal(latent.shape) / np.sqrt(DIM)
        return _unit((latent @ self.rotations[model] + noise)[:, : self.dim]).astype("<f4")


NETWORKS = (  # the experiment's chains of models (text-to-image, image-to-text), one per run in turn
    ("FLUX.1-schnell", "Moondream2"),
    ("SDXL-Turbo", "BLIP2"),
    ("FLUX.1-schnell", "BLIP2"),
)


def _unit(x: np.ndarray) -> np.ndarray:
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


def _drift_text(rng: np.random.Generator) -> str:
    words = rng.integers(0, len(_NOUN), 4)
    return f"the {_ADJ[words[0] % len(_ADJ)]} {_NOUN[words[1]]} and the {_NOUN[words[2]]} {_VERB[words[3] % len(_VERB)]}"


def _uuids(rng: np.random.Generator, n: int) -> list[uuid.UUID]:
    raw = rng.bytes(16 * n)
    return [uuid.UUID(bytes=raw[i : i + 16], version=4) for i in range(0, 16 * n, 16)]


def check_free_space(path: Path, shape: DemoShape) -> None:
    need = int(shape.estimated_bytes() * 1.15)
    free = shutil.disk_usage(path.parent if path.parent.exists() else Path(".")).free
    if need > free:
        raise ConfigError(
            f"not enough disk space for {shape.total:,} embeddings at {path}: "
            f"needs about {need / 1e9:.1f} GB, {free / 1e9:.1f} GB free"
        )


def _embedding_rows(ids: list[uuid.UUID], invocation_ids: list[uuid.UUID], model: str, vecs: np.ndarray, when: dt.datetime) -> list[dict]:
    return [
        {"id": ids[i], "started_at": when, "completed_at": when, "invocation_id": invocation_ids[i],
         "embedding_model": model, "vector": vecs[i].tobytes()}
        for i in range(len(ids))
    ]


@dataclass
class Labels:
    """What the generator knows of each embedding, for the users' own (EVoC-style) layers: per model, ids,
    vectors and the attractor each text was captured by (-1: not yet, or never)."""

    ids: dict[str, list[uuid.UUID]]
    vectors: dict[str, list[np.ndarray]]
    attractor: dict[str, list[np.ndarray]]


# Longer than 50 lines on purpose: one generator of a run's rows, in the order they are written.
def _rows(shape: DemoShape, seed: int, models: tuple[str, ...], dim: int, labels: Labels | None = None
          ) -> Iterator[tuple[str, list[dict]]]:
    """Yield ``(table, rows)`` batches in insertion order (runs before invocations before embeddings), in the
    legacy schema's column keys (the current schema's writer adds what it needs)."""
    world = LatentWorld(shape, seed, models, dim)
    rng = np.random.default_rng([seed, 4])
    dummy_left = shape.dummy
    n_real = shape.runs - 2
    for r, length in enumerate(shape.run_lengths):
        run_id = _uuids(rng, 1)[0]
        prompt = CALIBRATION_PROMPTS[r - n_real] if r >= n_real else f"prompt {r}: {_drift_text(rng)}"
        yield "run", [
            {
                "id": run_id,
                "network": list(NETWORKS[r % len(NETWORKS)]),
                "seed": int(r),
                "max_length": 2 * length,
                "initial_prompt": prompt,
                "experiment_id": None,
            }
        ]
        latent, texts, dup, captured = world.chain(length, rng)
        inv_ids = _uuids(rng, 2 * length)
        t0 = _BASE_TIME + dt.timedelta(hours=r)
        invs = []
        for seq in range(2 * length):
            is_text = seq % 2 == 1
            invs.append(
                {
                    "id": inv_ids[seq],
                    "started_at": t0 + dt.timedelta(seconds=2 * seq),
                    "completed_at": t0 + dt.timedelta(seconds=2 * seq + 1),
                    "model": "Moondream2" if is_text else "FLUX.1-schnell",
                    "type": "TEXT" if is_text else "IMAGE",
                    "seed": int(r),
                    "run_id": run_id,
                    "sequence_number": seq,
                    "input_invocation_id": inv_ids[seq - 1] if seq else None,
                    "output_text": texts[seq // 2] if is_text else None,
                    "output_image_data": None,
                }
            )
        yield "invocation", invs
        text_ids = inv_ids[1::2]
        embs = []
        emb_time = t0 + dt.timedelta(days=1)
        for model in models:
            vecs = world.embed(latent, model, rng)
            for i in np.flatnonzero(dup):
                vecs[i] = vecs[i - 1]  # a repeated text has the same embedding
            ids = _uuids(rng, length)
            embs += _embedding_rows(ids, text_ids, model, vecs, emb_time)
            if labels is not None:
                labels.ids.setdefault(model, []).extend(ids)
                labels.vectors.setdefault(model, []).append(vecs)
                labels.attractor.setdefault(model, []).append(captured)
        if dummy_left and r == 0:
            take = min(dummy_left, length)
            vecs = _unit(rng.standard_normal((take, dim))).astype("<f4")
            embs += _embedding_rows(_uuids(rng, take), text_ids, DUMMY_MODEL, vecs, emb_time)
            dummy_left -= take
        yield "embedding", embs


def _current_rows(name: str, rows: list[dict], experiments: list[uuid.UUID], counter: dict[str, int], runs: int) -> list[dict]:
    """Legacy-keyed rows as the users' current application writes them: no seeds, lower-case types,
    ``experiment_id`` and ``run_number`` on runs (the first half of the runs in the first experiment, the rest
    in the second), ``inserted_at`` / ``updated_at`` on every row."""
    out = []
    for row in rows:
        row = dict(row)
        row.pop("seed", None)
        stamp = row.get("completed_at") or row.get("started_at") or _BASE_TIME
        row["inserted_at"] = row["updated_at"] = stamp
        if name == "run":
            row["experiment_id"] = experiments[0] if counter["runs"] < runs // 2 else experiments[-1]
            row["run_number"] = counter["runs"]
            counter["runs"] += 1
        elif name == "invocation":
            row["type"] = row["type"].lower()
        out.append(row)
    return out


def _experiment_row(experiment_id: uuid.UUID, shape: DemoShape, models: tuple[str, ...], runs: int) -> dict:
    return {
        "id": experiment_id, "max_length": 2 * max(shape.run_lengths), "embedding_models": list(models),
        "prompts": [], "networks": [list(n) for n in NETWORKS], "num_runs": runs,
        "started_at": _BASE_TIME, "completed_at": _BASE_TIME + dt.timedelta(hours=shape.runs),
        "inserted_at": _BASE_TIME, "updated_at": _BASE_TIME,
    }


def schema_defaults(schema: str, models: tuple[str, ...] | None, dim: int | None) -> tuple[tuple[str, ...], int, bool]:
    """``(models, dim, with Dummy)`` for a demo of ``schema`` unless given."""
    if schema not in SCHEMA_NAMES:
        raise ConfigError(f"--schema must be one of {', '.join(SCHEMA_NAMES)}, got {schema!r}")
    if models:
        return tuple(models), int(dim or (CURRENT_DIM if schema == CURRENT else DIM)), False
    if schema == CURRENT:
        return CURRENT_MODELS, int(dim or CURRENT_DIM), False
    return REAL_MODELS, int(dim or DIM), True


# Longer than 50 lines on purpose: one streamed build with its progress, free-space check and atomic rename; the rows come from _rows.
def build_demo_database(
    database: str,
    embeddings: int = 9_025,
    seed: int = 0,
    overwrite: bool = False,
    progress: Callable[[int], None] | None = None,
    schema: str = LEGACY,
    models: tuple[str, ...] | None = None,
    dim: int | None = None,
    user_results: bool | None = None,
) -> DemoShape:
    """Write a synthetic experiment database of ``embeddings`` embeddings; returns its shape.

    ``database`` is a SQLite path or a database URL. A SQLite file is written
    to a temporary name and renamed at the end, so an interrupted build leaves
    nothing half-made. ``progress`` is called with each batch's embedding count.
    ``schema``: ``legacy`` or ``current`` (the users' schema today); ``models`` and ``dim``
    override the schema's default models (the same seed, models and dim give the same
    ids, texts and vectors in either schema). ``user_results`` (default: on for the current
    schema) also writes the users' own EVoC-style layers.
    """
    models, dim, with_dummy = schema_defaults(schema, models, dim)
    if DUMMY_MODEL in models:
        raise ConfigError(f"{DUMMY_MODEL} is the demo's own small model; name the models to embed with another name")
    user_results = (schema == CURRENT) if user_results is None else user_results
    if user_results and schema != CURRENT:
        raise ConfigError("the users' own results exist only in the current schema")
    s = CURRENT_SCHEMA if schema == CURRENT else LEGACY_SCHEMA
    shape = DemoShape.for_total(embeddings, seed, models=len(models), with_dummy=with_dummy)
    url = normalise_url(database)
    path = sqlite_path(url)
    if path is not None:
        if path.exists() and not overwrite:
            raise DatabaseError(f"{path} exists; pass --overwrite to replace it")
        path.parent.mkdir(parents=True, exist_ok=True)
        check_free_space(path, shape)
        tmp = path.with_name(path.name + ".building")
        for p in (tmp, Path(str(tmp) + "-journal")):
            p.unlink(missing_ok=True)
        url = f"sqlite:///{tmp}"
    engine = make_engine(url, create=True)
    started = time.perf_counter()
    labels = Labels({}, {}, {}) if user_results else None
    try:
        tables = {"run": s.run, "invocation": s.invocation, "embedding": s.embedding}
        pending: dict[str, list[dict]] = {name: [] for name in tables}
        written = 0
        experiment_rng = np.random.default_rng([seed, 5])
        experiments = [uuid.UUID(bytes=experiment_rng.bytes(16), version=4) for _ in range(2)]
        counter = {"runs": 0}
        with engine.connect() as conn:
            # a fresh file that is renamed into place only when complete: no journal needed
            sqlite_pragma(conn, "page_size=16384")  # five 3 KB vectors a page instead of one per 4 KB page
            sqlite_pragma(conn, "journal_mode=OFF")
            sqlite_pragma(conn, "synchronous=OFF")
            conn.begin()
            names = set(sa.inspect(conn).get_table_names())
            existing = names & ({t.name for t in s.experiment_tables} | (set(USERS_TABLES) if schema == CURRENT else set()))
            if existing:
                raise DatabaseError(f"{describe(url)} already has experiment tables: {sorted(existing)}")
            if schema == CURRENT:
                create_users_tables(conn)
                conn.execute(sa.insert(s.experiment), [_experiment_row(e, shape, models, n) for e, n in
                                                       zip(experiments, (shape.runs // 2, shape.runs - shape.runs // 2))])
            else:
                s.metadata.create_all(conn, tables=list(s.experiment_tables))
            for name, rows in _rows(shape, seed, models, dim, labels):
                pending[name].extend(_current_rows(name, rows, experiments, counter, shape.runs) if schema == CURRENT else rows)
                if len(pending["embedding"]) >= 12_000:
                    written += _flush(conn, tables, pending)
                    if progress:
                        progress(written)
            written += _flush(conn, tables, pending)
            if labels is not None:
                _write_user_layers(conn, labels, LatentWorld(shape, seed, models, dim).theme_of)
                _write_users_other_analyses(conn, models)
            conn.commit()
            if progress:
                progress(written)
        if engine.dialect.name == "sqlite":
            enable_wal(engine)
    except BaseException as exc:
        engine.dispose()
        if path is not None:
            Path(str(sa.make_url(url).database)).unlink(missing_ok=True)
        if isinstance(exc, sa.exc.SQLAlchemyError):  # a stop request aborts the statement in progress
            stopping.check("while building the database", "nothing was kept")
        raise
    engine.dispose()
    if path is not None:
        if path.exists():
            path.unlink()
            for suffix in ("-wal", "-shm"):
                Path(str(path) + suffix).unlink(missing_ok=True)
        Path(str(sa.make_url(url).database)).rename(path)
    logger.info(
        "built {} ({} schema) with {:,} embeddings ({} runs, {:,} text invocations, {} attractors) in {:.1f} s",
        describe(database), schema, shape.total, shape.runs, shape.text_invocations, shape.attractors, time.perf_counter() - started,
    )
    return shape


def _nearest_to_centroid(vectors: np.ndarray, labels: np.ndarray) -> dict[int, int]:
    """``label -> row`` of the member nearest its cluster's centroid (the users' medoid rule)."""
    out = {}
    for label in np.unique(labels[labels >= 0]):
        rows = np.flatnonzero(labels == label)
        centre = vectors[rows].mean(axis=0)
        out[int(label)] = int(rows[np.argmin(((vectors[rows] - centre) ** 2).sum(axis=1))])
    return out


def _write_user_layers(conn: sa.Connection, labels: Labels, theme_of: np.ndarray) -> None:
    """The users' own clustering as their application writes it: per model three EVoC-style layers (0 the
    finest: the attractor; 1: its theme; 2: pairs of themes), a captured text's first steps and every text not
    captured as noise, one membership row per embedding per layer, the cluster named by its medoid."""
    s = CURRENT_SCHEMA
    rng = np.random.default_rng(17)
    for model, ids in labels.ids.items():
        vectors = np.concatenate(labels.vectors[model])
        attractor = np.concatenate(labels.attractor[model])
        finest = np.where(rng.random(len(attractor)) < 0.85, attractor, -1)  # EVoC leaves some captured texts as noise
        layers = [finest, np.where(finest >= 0, theme_of[np.maximum(finest, 0)], -1)]
        layers.append(np.where(layers[1] >= 0, layers[1] // 2, -1))
        for layer, lab in enumerate(layers):
            result_id = uuid.UUID(bytes=rng.bytes(16), version=4)
            when = _BASE_TIME + dt.timedelta(days=30, minutes=layer)
            params = {**EVOC_PARAMETERS, "base_min_cluster_size": max(5, int(0.001 * len(ids)))}
            conn.execute(sa.insert(s.clustering_result), [{
                "id": result_id, "embedding_model": model, "algorithm": "evoc", "parameters": params, "layer": layer,
                "started_at": when, "completed_at": when, "created_at": when, "updated_at": when}])
            medoid = _nearest_to_centroid(vectors, lab)
            stamp = iso_timestamp(when)
            rows = [(str(uuid.UUID(bytes=rng.bytes(16), version=4)), str(ids[i]), str(result_id),
                     str(ids[medoid[int(lab[i])]]) if lab[i] >= 0 else None, stamp, stamp) for i in range(len(ids))]
            conn.exec_driver_sql(
                f"INSERT INTO {s.embedding_cluster.name} (id, embedding_id, clustering_result_id, medoid_embedding_id, "
                "inserted_at, updated_at) VALUES (?, ?, ?, ?, ?, ?)" if conn.dialect.name == "sqlite" else
                f"INSERT INTO {s.embedding_cluster.name} (id, embedding_id, clustering_result_id, medoid_embedding_id, "
                "inserted_at, updated_at) VALUES (%s, %s, %s, %s, %s, %s)", rows)


def _write_users_other_analyses(conn: sa.Connection, models: tuple[str, ...]) -> None:
    """One row in each of the users' other analysis tables (never ours to touch)."""
    stamp = iso_timestamp(_BASE_TIME)
    run_id = conn.execute(sa.select(sa.type_coerce(CURRENT_SCHEMA.run.c.id, sa.String)).limit(1)).scalar()
    conn.exec_driver_sql(
        "INSERT INTO lyapunov_results (id, embedding_model, parameters, exponents, inserted_at, updated_at) "
        f"VALUES ('{uuid.UUID(int=1)}', '{models[0]}', '{{}}', '[0.1]', '{stamp}', '{stamp}')")
    conn.exec_driver_sql(
        "INSERT INTO persistence_diagrams (id, run_id, embedding_model, diagram_data, inserted_at, updated_at) "
        f"VALUES ('{uuid.UUID(int=2)}', '{run_id}', '{models[0]}', NULL, '{stamp}', '{stamp}')")


def _pg_type(column: sa.Column) -> str:
    """The PostgreSQL type name binary COPY is told for a column (an enum travels as its label's text)."""
    kind = column.type
    for cls, name in ((sa.Uuid, "uuid"), (sa.DateTime, "timestamp"), (sa.Enum, "text"), (sa.String, "text"),
                      (sa.types.TypeDecorator, "text"),
                      (sa.Integer, "int4"), (sa.JSON, "json"), (sa.LargeBinary, "bytea")):
        if isinstance(kind, cls):
            return name
    raise TypeError(f"no COPY type for {column}")


def _copy(conn: sa.Connection, table: sa.Table, rows: list[dict]) -> None:
    """PostgreSQL: binary ``COPY ... FROM STDIN`` of the rows (no per-row INSERT; vectors as raw bytea)."""
    from psycopg.types.json import Json

    columns = list(table.columns)
    json_at = [i for i, c in enumerate(columns) if isinstance(c.type, sa.JSON)]
    names = ", ".join(f'"{c.name}"' for c in columns)
    with conn.connection.driver_connection.cursor() as cur:
        with cur.copy(f'COPY "{table.name}" ({names}) FROM STDIN (FORMAT BINARY)') as copy:
            copy.set_types([_pg_type(c) for c in columns])
            for row in rows:
                values = [row.get(c.name) for c in columns]
                for i in json_at:
                    values[i] = None if values[i] is None else Json(values[i])
                copy.write_row(values)


def _flush(conn: sa.Connection, tables: dict[str, sa.Table], pending: dict[str, list[dict]]) -> int:
    n = len(pending["embedding"])
    for name in ("run", "invocation", "embedding"):  # parents first
        if pending[name]:
            if conn.dialect.name == "postgresql" and tables[name] is LEGACY_SCHEMA.metadata.tables.get(tables[name].name):
                _copy(conn, tables[name], pending[name])
            else:
                conn.execute(sa.insert(tables[name]), pending[name])
            pending[name] = []
    return n

"""Synthetic experiment databases, from a small demo up to the production shape.

Layout as the experiments write it: runs of alternating image/text invocations
(sequence 0 is an image, text on the odd numbers), every text output embedded by
``STSBMpnet``, ``STSBRoberta`` and ``Nomic`` (768-d float32 BLOBs), ``Dummy``
with ~25 embeddings, and two calibration runs (``yeah``/``nah``).

The vectors come from :mod:`.demo_world` (attractors, themes, drifting chains,
per-model rotations and noise); everything derives from ``seed``; generation
streams in batches.

``schema="current"`` writes the same kind of data in the application's current schema
(:mod:`cluster_workers.tools.application_schema`): by default one 256-d model (the 768-d
vectors truncated and renormalised, as the application's model is), an ``experiments`` row,
and the application's own clustering as their application writes it -- EVoC-style layers
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
from cluster_workers.db.experiment import CALIBRATION_PROMPTS
from cluster_workers.db.schema import CURRENT, CURRENT_SCHEMA, LEGACY, LEGACY_SCHEMA, SCHEMA_NAMES, iso_timestamp
from cluster_workers.errors import ConfigError, DatabaseError
from cluster_workers.tools.application_schema import APPLICATION_TABLES, EVOC_PARAMETERS, create_application_tables
from cluster_workers.tools.demo_world import (
    BASE_TIME,
    CURRENT_DIM,
    CURRENT_MODELS,
    DIM,
    DUMMY_MODEL,
    NETWORKS,
    REAL_MODELS,
    DemoShape,
    LatentWorld,
    drift_text,
    unit,
)


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


def _embedding_rows(
    ids: list[uuid.UUID], invocation_ids: list[uuid.UUID], model: str, vecs: np.ndarray, when: dt.datetime
) -> list[dict]:
    return [
        {
            "id": ids[i],
            "started_at": when,
            "completed_at": when,
            "invocation_id": invocation_ids[i],
            "embedding_model": model,
            "vector": vecs[i].tobytes(),
        }
        for i in range(len(ids))
    ]


@dataclass
class Labels:
    """What the generator knows of each embedding, for the application's own (EVoC-style) layers: per model, ids,
    vectors and the attractor each text was captured by (-1: not yet, or never)."""

    ids: dict[str, list[uuid.UUID]]
    vectors: dict[str, list[np.ndarray]]
    attractor: dict[str, list[np.ndarray]]


# Reads in one piece: one generator of a run's rows, in the order they are written.
def _rows(
    shape: DemoShape, seed: int, models: tuple[str, ...], dim: int, labels: Labels | None = None
) -> Iterator[tuple[str, list[dict]]]:
    """Yield ``(table, rows)`` batches in insertion order (runs before invocations before embeddings), in the
    legacy schema's column keys (the current schema's writer adds what it needs)."""
    world = LatentWorld(shape, seed, models, dim)
    rng = np.random.default_rng([seed, 4])
    dummy_left = shape.dummy
    n_real = shape.runs - 2
    for r, length in enumerate(shape.run_lengths):
        run_id = _uuids(rng, 1)[0]
        prompt = CALIBRATION_PROMPTS[r - n_real] if r >= n_real else f"prompt {r}: {drift_text(rng)}"
        yield (
            "run",
            [
                {
                    "id": run_id,
                    "network": list(NETWORKS[r % len(NETWORKS)]),
                    "seed": int(r),
                    "max_length": 2 * length,
                    "initial_prompt": prompt,
                    "experiment_id": None,
                }
            ],
        )
        latent, texts, dup, captured = world.chain(length, rng)
        inv_ids = _uuids(rng, 2 * length)
        t0 = BASE_TIME + dt.timedelta(hours=r)
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
            vecs = unit(rng.standard_normal((take, dim))).astype("<f4")
            embs += _embedding_rows(_uuids(rng, take), text_ids, DUMMY_MODEL, vecs, emb_time)
            dummy_left -= take
        yield "embedding", embs


def _current_rows(name: str, rows: list[dict], experiments: list[uuid.UUID], counter: dict[str, int], runs: int) -> list[dict]:
    """Legacy-keyed rows as the experiment application today writes them: no seeds, lower-case types,
    ``experiment_id`` and ``run_number`` on runs (the first half of the runs in the first experiment, the rest
    in the second), ``inserted_at`` / ``updated_at`` on every row."""
    out = []
    for row in rows:
        row = dict(row)
        row.pop("seed", None)
        stamp = row.get("completed_at") or row.get("started_at") or BASE_TIME
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
        "id": experiment_id,
        "max_length": 2 * max(shape.run_lengths),
        "embedding_models": list(models),
        "prompts": [],
        "networks": [list(n) for n in NETWORKS],
        "num_runs": runs,
        "started_at": BASE_TIME,
        "completed_at": BASE_TIME + dt.timedelta(hours=shape.runs),
        "inserted_at": BASE_TIME,
        "updated_at": BASE_TIME,
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


# Reads in one piece: one streamed build with its progress, free-space check and atomic rename; the rows come from _rows.
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
    ``schema``: ``legacy`` or ``current`` (the application's schema today); ``models`` and ``dim``
    override the schema's default models (the same seed, models and dim give the same
    ids, texts and vectors in either schema). ``user_results`` (default: on for the current
    schema) also writes the application's own EVoC-style layers.
    """
    models, dim, with_dummy = schema_defaults(schema, models, dim)
    if DUMMY_MODEL in models:
        raise ConfigError(f"{DUMMY_MODEL} is the demo's own small model; name the models to embed with another name")
    user_results = (schema == CURRENT) if user_results is None else user_results
    if user_results and schema != CURRENT:
        raise ConfigError("the application's own results exist only in the current schema")
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
            existing = names & ({t.name for t in s.experiment_tables} | (set(APPLICATION_TABLES) if schema == CURRENT else set()))
            if existing:
                raise DatabaseError(f"{describe(url)} already has experiment tables: {sorted(existing)}")
            if schema == CURRENT:
                create_application_tables(conn)
                conn.execute(
                    sa.insert(s.experiment),
                    [
                        _experiment_row(e, shape, models, n)
                        for e, n in zip(experiments, (shape.runs // 2, shape.runs - shape.runs // 2))
                    ],
                )
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
        describe(database),
        schema,
        shape.total,
        shape.runs,
        shape.text_invocations,
        shape.attractors,
        time.perf_counter() - started,
    )
    return shape


def _nearest_to_centroid(vectors: np.ndarray, labels: np.ndarray) -> dict[int, int]:
    """``label -> row`` of the member nearest its cluster's centroid (the application's medoid rule)."""
    out = {}
    for label in np.unique(labels[labels >= 0]):
        rows = np.flatnonzero(labels == label)
        centre = vectors[rows].mean(axis=0)
        out[int(label)] = int(rows[np.argmin(((vectors[rows] - centre) ** 2).sum(axis=1))])
    return out


def _write_user_layers(conn: sa.Connection, labels: Labels, theme_of: np.ndarray) -> None:
    """The application's own clustering as their application writes it: per model three EVoC-style layers (0 the
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
            when = BASE_TIME + dt.timedelta(days=30, minutes=layer)
            params = {**EVOC_PARAMETERS, "base_min_cluster_size": max(5, int(0.001 * len(ids)))}
            conn.execute(
                sa.insert(s.application_result),
                [
                    {
                        "id": result_id,
                        "embedding_model": model,
                        "algorithm": "evoc",
                        "parameters": params,
                        "layer": layer,
                        "started_at": when,
                        "completed_at": when,
                        "created_at": when,
                        "updated_at": when,
                    }
                ],
            )
            medoid = _nearest_to_centroid(vectors, lab)
            stamp = iso_timestamp(when)
            rows = [
                (
                    str(uuid.UUID(bytes=rng.bytes(16), version=4)),
                    str(ids[i]),
                    str(result_id),
                    str(ids[medoid[int(lab[i])]]) if lab[i] >= 0 else None,
                    stamp,
                    stamp,
                )
                for i in range(len(ids))
            ]
            conn.exec_driver_sql(
                f"INSERT INTO {s.application_membership.name} (id, embedding_id, clustering_result_id, medoid_embedding_id, "
                "inserted_at, updated_at) VALUES (?, ?, ?, ?, ?, ?)"
                if conn.dialect.name == "sqlite"
                else f"INSERT INTO {s.application_membership.name} (id, embedding_id, clustering_result_id, medoid_embedding_id, "
                "inserted_at, updated_at) VALUES (%s, %s, %s, %s, %s, %s)",
                rows,
            )


def _write_users_other_analyses(conn: sa.Connection, models: tuple[str, ...]) -> None:
    """One row in each of the application's other analysis tables (never ours to touch)."""
    stamp = iso_timestamp(BASE_TIME)
    run_id = conn.execute(sa.select(sa.type_coerce(CURRENT_SCHEMA.run.c.id, sa.String)).limit(1)).scalar()
    conn.exec_driver_sql(
        "INSERT INTO lyapunov_results (id, embedding_model, parameters, exponents, inserted_at, updated_at) "
        f"VALUES ('{uuid.UUID(int=1)}', '{models[0]}', '{{}}', '[0.1]', '{stamp}', '{stamp}')"
    )
    conn.exec_driver_sql(
        "INSERT INTO persistence_diagrams (id, run_id, embedding_model, diagram_data, inserted_at, updated_at) "
        f"VALUES ('{uuid.UUID(int=2)}', '{run_id}', '{models[0]}', NULL, '{stamp}', '{stamp}')"
    )


def _pg_type(column: sa.Column) -> str:
    """The PostgreSQL type name binary COPY is told for a column (an enum travels as its label's text)."""
    kind = column.type
    for cls, name in (
        (sa.Uuid, "uuid"),
        (sa.DateTime, "timestamp"),
        (sa.Enum, "text"),
        (sa.String, "text"),
        (sa.types.TypeDecorator, "text"),
        (sa.Integer, "int4"),
        (sa.JSON, "json"),
        (sa.LargeBinary, "bytea"),
    ):
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

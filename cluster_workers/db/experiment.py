"""The experiment data, read from the application's tables: which embeddings a sample holds and how many
(the downsampling filter, counts, calibration runs), their vectors streamed into one float32 array, and
the runs' texts in order (text positions, captions, vectors by id). Read only: nothing here writes.
"""

from __future__ import annotations

import uuid
from collections import Counter
from dataclasses import dataclass
from typing import Iterator

import numpy as np
import sqlalchemy as sa

from cluster_workers.db.detect import schema_of
from cluster_workers.db.schema import Schema
from cluster_workers.db.snapshot import SampleBound, embedding_rowid, id_digest
from cluster_workers.errors import BadVectorError, ConfigError, DatabaseError

# The downsampling filter and the per-model counts, all in SQL.
#
# ``downsample=N`` keeps every N-th *text* invocation of every run: inside a run
# the text invocations are numbered 0, 1, 2, ... in sequence order (a window
# function, so it does not matter which sequence numbers hold text) and those
# whose number is a multiple of N are kept (with an *offset* R, those whose number is R modulo N:
# the offsets 0..N-1 are N disjoint samples of the same runs). Calibration runs (initial prompt
# ``yeah`` or ``nah``) are excluded. A model's sample is all its embeddings of
# the kept invocations -- the same invocations for every model.

CALIBRATION_PROMPTS = ("yeah", "nah")


def is_text(table: sa.Table) -> sa.ColumnElement[bool]:
    """A text invocation. The legacy schema stores the enum name ('TEXT'), the current one 'text': compared
    upper-cased, and the cast lets native PostgreSQL enums compare too."""
    return sa.func.upper(sa.cast(table.c.type, sa.String)) == "TEXT"


def experiment_uuid(experiment: str | uuid.UUID) -> uuid.UUID:
    """An experiment id as given on the command line (dashed or not), checked."""
    try:
        return experiment if isinstance(experiment, uuid.UUID) else uuid.UUID(str(experiment).strip())
    except ValueError:
        raise ConfigError(f"--experiment must be an experiment id (a UUID), got {experiment!r}") from None


def of_experiment(s: Schema, experiment: str | uuid.UUID) -> sa.ColumnElement[bool]:
    """Runs of one experiment."""
    return s.run.c.experiment_id == sa.bindparam("experiment", experiment_uuid(experiment), type_=s.run.c.experiment_id.type)


def check_experiment(conn: sa.Connection, experiment: str | uuid.UUID) -> int:
    """The number of runs of ``experiment``; a clear error when it has none (an id that does not exist)."""
    s = schema_of(conn)
    runs = conn.execute(sa.select(sa.func.count()).select_from(s.run).where(of_experiment(s, experiment))).scalar_one()
    if not runs:
        raise DatabaseError(f"no runs of experiment {experiment_uuid(experiment)} in this database")
    return int(runs)


def counted_runs(s: Schema, experiment: str | None = None):
    """Runs that count: not calibration runs (initial prompt ``yeah``/``nah``), and of ``experiment`` when given."""
    run = s.run
    prompt = sa.func.lower(sa.func.trim(run.c.initial_prompt))
    keep = sa.or_(run.c.initial_prompt.is_(None), prompt.not_in(CALIBRATION_PROMPTS))
    if experiment is not None:
        keep = sa.and_(keep, of_experiment(s, experiment))
    return keep


def text_index(s: Schema) -> sa.ColumnElement[int]:
    """An invocation's position among its run's text invocations (0, 1, 2, ... in sequence order).

    A window expression: select it from ``invocation`` filtered to text invocations.
    """
    invocation = s.invocation
    return (
        sa.func.row_number().over(partition_by=invocation.c.run_id, order_by=(invocation.c.sequence_number, invocation.c.id)) - 1
    )


def check_offset(downsample: int, offset: int) -> None:
    if not 0 <= offset < max(downsample, 1):
        raise ConfigError(f"offset must be between 0 and downsample - 1 ({downsample - 1}), got {offset}")


def kept_invocations(s: Schema, downsample: int, experiment: str | None = None, offset: int = 0) -> sa.Subquery:
    """Subquery with one column ``invocation_id``: the text invocations kept at ``downsample`` and ``offset``
    (of one experiment's runs when ``experiment`` is given)."""
    invocation, run = s.invocation, s.run
    if downsample < 1:
        raise ValueError("downsample must be >= 1")
    check_offset(downsample, offset)
    if downsample == 1:
        base = sa.select(invocation.c.id.label("invocation_id")).join(run, run.c.id == invocation.c.run_id)
        return base.where(is_text(invocation), counted_runs(s, experiment)).subquery("kept")
    # number every run's text invocations first, then keep every N-th of the non-calibration runs: the
    # numbering is per run, so filtering runs afterwards keeps the same set and looks up N times fewer runs
    numbered = (
        sa.select(invocation.c.id.label("invocation_id"), invocation.c.run_id, text_index(s).label("text_index"))
        .where(is_text(invocation))
        .subquery("text_invocation")
    )
    return (
        sa.select(numbered.c.invocation_id)
        .join(run, run.c.id == numbered.c.run_id)
        .where(
            numbered.c.text_index % sa.bindparam("downsample", downsample, type_=sa.Integer)
            == sa.bindparam("offset", offset, type_=sa.Integer),
            counted_runs(s, experiment),
        )
        .subquery("kept")
    )


def _within(query: sa.Select, bound: SampleBound | None, s: Schema, covered: bool = False) -> sa.Select:
    """Leave out embeddings inserted after the run's counts (SQLite's rowid bound).

    ``covered``: the query reads only indexed columns. The bound is then written
    ``rowid + 0``, which no index can seek on: otherwise SQLite seeks
    ``ix_embedding_invocation_id`` on ``(invocation_id, rowid)`` and reads every
    sampled row's 3 KB vector from the table instead of the covering index
    (measured on the production shape, cold cache: 33.6 s against 3.1 s).
    """
    if bound is not None and bound.max_rowid is not None:
        rowid = embedding_rowid(s.embedding.name) + 0 if covered else embedding_rowid(s.embedding.name)
        return query.where(rowid <= bound.max_rowid)
    return query


def count_all_query(s: Schema, bound: SampleBound | None = None, experiment: str | None = None) -> sa.Select:
    """Embeddings per model before downsampling (every row of ``embedding``; of one experiment's runs if given)."""
    embedding = s.embedding
    query = sa.select(embedding.c.embedding_model, sa.func.count())
    if experiment is not None:
        query = (
            query.join(s.invocation, s.invocation.c.id == embedding.c.invocation_id)
            .join(s.run, s.run.c.id == s.invocation.c.run_id)
            .where(of_experiment(s, experiment))
        )
    return _within(query, bound, s, covered=True).group_by(embedding.c.embedding_model)


def count_sampled_query(
    s: Schema, downsample: int, bound: SampleBound | None = None, experiment: str | None = None, offset: int = 0
) -> sa.Select:
    """Per model after downsampling: count, and the sum of 32-bit hashes of the sampled ids (the digest)."""
    embedding = s.embedding
    kept = kept_invocations(s, downsample, experiment, offset)
    query = sa.select(embedding.c.embedding_model, sa.func.count(), sa.func.sum(id_digest(embedding.c.id))).join(
        kept, kept.c.invocation_id == embedding.c.invocation_id
    )
    return _within(query, bound, s, covered=True).group_by(embedding.c.embedding_model)


def sampled_vectors_query(
    s: Schema, model: str, downsample: int, bound: SampleBound | None = None, experiment: str | None = None, offset: int = 0
) -> sa.Select:
    """``(id, vector)`` of one model's sampled embeddings.

    The kept invocations drive the join (embedding looked up by ``invocation_id``);
    ``embedding_model || ''`` keeps SQLite from scanning the model's whole
    index instead, which reads every one of the model's rows (measured: 2x slower
    at downsample 10000 on the production shape).
    """
    embedding = s.embedding
    kept = kept_invocations(s, downsample, experiment, offset)
    query = (
        sa.select(sa.type_coerce(embedding.c.id, sa.String), embedding.c.vector)
        .select_from(kept.join(embedding, embedding.c.invocation_id == kept.c.invocation_id))
        .where(embedding.c.embedding_model + sa.literal("") == sa.bindparam("model", model))
    )
    return _within(query, bound, s)


def orphan_embeddings(conn: sa.Connection, models: list[str], limit: int = 5) -> list[tuple[object, str]]:
    """Up to ``limit`` ``(embedding id, model)`` whose invocation does not exist.

    The anti-join reads only ``embedding.invocation_id`` (its index, on SQLite) and
    the invocation primary key; rows are fetched only for the orphans found.
    """
    s = schema_of(conn)
    embedding, invocation = s.embedding, s.invocation
    missing = (
        sa.select(embedding.c.invocation_id)
        .where(~sa.exists().where(invocation.c.id == embedding.c.invocation_id))
        .scalar_subquery()
    )
    query = (
        sa.select(embedding.c.id, embedding.c.embedding_model)
        .where(embedding.c.invocation_id.in_(missing), embedding.c.embedding_model.in_(models))
        .limit(limit)
    )
    return [(i, m) for i, m in conn.execute(query)]


def counts(
    conn: sa.Connection, downsample: int, bound: SampleBound | None = None, experiment: str | None = None, offset: int = 0
) -> tuple[dict[str, int], dict[str, int], dict[str, dict]]:
    """``(before, after, fingerprints)`` per model: all and sampled embeddings, one GROUP BY query each.

    A fingerprint is ``{"count": n, "digest": "..."}``: equal fingerprints mean the same sample.
    """
    s = schema_of(conn)
    if experiment is not None:
        check_experiment(conn, experiment)
    before = {m: int(c) for m, c in conn.execute(count_all_query(s, bound, experiment))}
    return (before, *sampled_counts(conn, downsample, bound, experiment, offset))


def sampled_counts(
    conn: sa.Connection, downsample: int, bound: SampleBound | None = None, experiment: str | None = None, offset: int = 0
) -> tuple[dict[str, int], dict[str, dict]]:
    """``(after, fingerprints)`` per model: the sampled embeddings alone (one GROUP BY query)."""
    after: dict[str, int] = {}
    fingerprints: dict[str, dict] = {}
    for model, n, digest in conn.execute(count_sampled_query(schema_of(conn), downsample, bound, experiment, offset)):
        after[model] = int(n)
        fingerprints[model] = {"count": int(n), "digest": format(int(digest or 0), "x")}
    return after, fingerprints


def check_models(wanted: list[str] | tuple[str, ...], present: dict[str, int] | list[str]) -> None:
    """Every wanted embedding model is in the database: else one line naming the unknown ones and what is there."""
    unknown = [m for m in wanted if m not in present]
    if unknown:
        raise ConfigError(
            f"unknown embedding model(s): {', '.join(unknown)}; the database has: {', '.join(sorted(present)) or 'none'}"
        )


def calibration_runs(conn: sa.Connection) -> dict[str, int]:
    """How many runs the calibration rule leaves out, per calibration prompt (what the rule found in this database)."""
    run = schema_of(conn).run
    prompt = sa.func.lower(sa.func.trim(run.c.initial_prompt))
    rows = conn.execute(sa.select(prompt, sa.func.count()).where(prompt.in_(CALIBRATION_PROMPTS)).group_by(prompt))
    return {str(p): int(n) for p, n in rows}


def vector_dimensions(conn: sa.Connection, models: list[str]) -> dict[str, int]:
    """Each model's vector dimension, from one stored vector (float32 bytes / 4); 0 when it has none."""
    embedding = schema_of(conn).embedding
    out: dict[str, int] = {}
    for model in models:
        query = sa.select(sa.func.length(embedding.c.vector)).where(embedding.c.embedding_model == model).limit(1)
        size = conn.execute(query).scalar()
        out[model] = int(size or 0) // 4
    return out


# Stream one model's sampled ``(id, vector)`` rows into one preallocated float32 array.

BATCH_ROWS = 8192
STREAM = {"stream_results": True, "yield_per": BATCH_ROWS}  # a server-side cursor on PostgreSQL


@dataclass
class Vectors:
    """Embedding ids as ``(n, 16)`` uint8 UUID bytes, and their vectors as ``(n, dim)`` float32."""

    ids: np.ndarray
    data: np.ndarray
    skipped: int = 0  # bad rows left out (only with ``skip_bad``)


def uuid_bytes(value: object) -> bytes:
    """16 bytes of a UUID as the driver returns it (``uuid.UUID`` or a 32-char hex string)."""
    if isinstance(value, uuid.UUID):
        return value.bytes
    if isinstance(value, str) and len(value) in (32, 36):
        try:
            return bytes.fromhex(value.replace("-", "") if len(value) == 36 else value)  # no UUID object per row
        except ValueError:
            pass
    return uuid.UUID(str(value)).bytes


def _named(value: object) -> str:
    """An id for a message, in the usual dashed form whatever the schema stores."""
    try:
        return str(value if isinstance(value, uuid.UUID) else uuid.UUID(str(value)))
    except ValueError:
        return str(value)


def _dimension(model: str, batch: list) -> int:
    """The model's dimension: the most common byte length in the first batch (so an odd row gets named)."""
    lengths = Counter(0 if row[1] is None else len(row[1]) for row in batch)
    size = lengths.most_common(1)[0][0]
    if size == 0 or size % 4:
        row = next(r for r in batch if (0 if r[1] is None else len(r[1])) == size)
        raise BadVectorError(
            f"model {model}: embedding {_named(row[0])} has a vector of {size} bytes, not a whole number of float32 values"
        )
    return size // 4


def _checked(model: str, batch: list, dim: int, skip_bad: bool) -> tuple[list, np.ndarray, int]:
    """A batch's good rows and their vectors, and how many were left out; without ``skip_bad`` the first bad
    row (wrong byte length, NaN/inf, all zero) is an error naming its embedding."""
    good = [row for row in batch if row[1] is not None and len(row[1]) == dim * 4]
    if len(good) < len(batch) and not skip_bad:
        row = next(r for r in batch if r[1] is None or len(r[1]) != dim * 4)
        got = 0 if row[1] is None else len(row[1])
        raise BadVectorError(
            f"model {model}: embedding {_named(row[0])} has a vector of {got} bytes, expected {dim * 4} ({dim} float32)"
        )
    left_out = len(batch) - len(good)
    chunk = np.frombuffer(b"".join(row[1] for row in good), dtype="<f4").reshape(len(good), dim)
    bad = ~np.isfinite(chunk).all(axis=1) | ~chunk.any(axis=1)  # NaN/inf, or all zero (no direction)
    if bad.any():
        if not skip_bad:
            row = good[int(np.argmax(bad))]
            what = "is a zero vector" if not chunk[int(np.argmax(bad))].any() else "has NaN or infinite values"
            raise BadVectorError(f"model {model}: embedding {_named(row[0])} {what}")
        good = [row for row, b in zip(good, bad) if not b]
        chunk, left_out = chunk[~bad], left_out + int(bad.sum())
    return good, chunk, left_out


def fetch_vectors(
    conn: sa.Connection,
    model: str,
    downsample: int,
    expected: int,
    skip_bad: bool = False,
    bound: SampleBound | None = None,
    experiment: str | None = None,
    offset: int = 0,
) -> Vectors:
    """Read the model's sample into arrays, checking every vector.

    ``expected`` (from the coordinator's count) sizes the preallocation; the array
    grows if more rows arrive and is trimmed if fewer do. Raises
    :class:`BadVectorError` naming the embedding for a byte length that is not a
    multiple of 4, a dimension that differs from the model's, or NaN/inf -- or,
    with ``skip_bad``, leaves such rows out and counts them in ``skipped``.
    """
    result = conn.execute(  # options on this statement only: Connection.execution_options would stream every later one
        sampled_vectors_query(schema_of(conn), model, downsample, bound, experiment, offset), execution_options=STREAM
    )
    capacity = max(int(expected), 1)
    ids = np.empty((capacity, 16), dtype=np.uint8)
    data: np.ndarray | None = None
    dim = 0
    n = 0
    skipped = 0
    for batch in result.partitions(BATCH_ROWS):
        if data is None:
            dim = _dimension(model, batch)
            data = np.empty((capacity, dim), dtype=np.float32)
        batch, chunk, left_out = _checked(model, batch, dim, skip_bad)
        skipped += left_out
        m = len(batch)
        if not m:
            continue
        if n + m > capacity:
            capacity = max(capacity * 2, n + m)
            ids = np.resize(ids, (capacity, 16))
            data = np.resize(data, (capacity, dim))
        data[n : n + m] = chunk
        ids[n : n + m] = np.frombuffer(b"".join(uuid_bytes(row[0]) for row in batch), dtype=np.uint8).reshape(m, 16)
        n += m
    if data is None:
        return Vectors(ids=np.empty((0, 16), dtype=np.uint8), data=np.empty((0, 0), dtype=np.float32), skipped=skipped)
    return Vectors(
        ids=ids[:n].copy() if n < len(ids) else ids,
        data=data[:n] if n == len(data) else data[:n].copy(),
        skipped=skipped,
    )


def iter_vector_blocks(
    conn: sa.Connection,
    model: str,
    downsample: int,
    offset: int = 0,
    experiment: str | None = None,
    block_rows: int = 65_536,
    skip_bad: bool = True,
) -> Iterator[Vectors]:
    """The model's sample at ``downsample``/``offset`` in blocks of about ``block_rows`` (memory of one block)."""
    result = conn.execute(
        sampled_vectors_query(schema_of(conn), model, downsample, None, experiment, offset), execution_options=STREAM
    )
    dim, ids, chunks, held, skipped = 0, [], [], 0, 0
    for batch in result.partitions(BATCH_ROWS):
        dim = dim or _dimension(model, batch)
        batch, chunk, left_out = _checked(model, batch, dim, skip_bad)
        skipped += left_out
        if batch:
            ids.append(np.frombuffer(b"".join(uuid_bytes(row[0]) for row in batch), dtype=np.uint8).reshape(len(batch), 16))
            chunks.append(chunk)
            held += len(batch)
        if held >= block_rows:
            yield Vectors(np.concatenate(ids), np.concatenate(chunks), skipped)
            ids, chunks, held, skipped = [], [], 0, 0
    if held:
        yield Vectors(np.concatenate(ids), np.concatenate(chunks), skipped)


# The experiment's texts read back, whatever result they belong to: run positions, captions, vectors by id.
#
# Ids come back as the driver gives them (hex text on SQLite) where millions of rows are read: no UUID object
# per row. Everything here is SQL; :mod:`.memberships` joins these with one result's clusters.


def network_label(network: object) -> str | None:
    """A run's network as the application writes it: its models joined by "→" (a JSON list, or text already joined)."""
    if network is None:
        return None
    if isinstance(network, str):
        try:
            import json

            network = json.loads(network)
        except ValueError:
            return network
    if isinstance(network, (list, tuple)):
        return "→".join(str(m) for m in network)
    return str(network)


STREAM_ROWS = 20_000  # rows fetched at a time where millions are read


def raw_column(column: sa.ColumnElement) -> sa.ColumnElement:
    """The column as the driver returns it (hex text on SQLite): no per-row UUID objects for millions of rows."""
    return sa.type_coerce(column, sa.String)


def id_hex(value: object) -> str:
    """One id as 32-char lower-case hex, whether the driver gave a ``uuid.UUID`` or text."""
    return value.hex if isinstance(value, uuid.UUID) else str(value).replace("-", "").lower()


def driver_rows(conn: sa.Connection, query: sa.Select) -> list[tuple]:
    """All rows of ``query`` as the driver's plain tuples (no SQLAlchemy row objects: for millions of rows).

    The query's values are rendered into it (they are our own constants and bound ids, never user text);
    the statement runs on the caller's connection and transaction (its snapshot and stop handler).
    """
    sql = str(query.compile(dialect=conn.dialect, compile_kwargs={"literal_binds": True}))
    cursor = conn.connection.cursor()
    try:
        cursor.execute(sql)
        return cursor.fetchall()
    finally:
        cursor.close()


def text_positions(conn: sa.Connection) -> "TextPositions":
    """``invocation id -> (run id, text_index)`` for every text invocation (ids raw): one table scan, ranked in numpy.

    Measured on the production shape (1.1M text invocations): 3 s, where the window
    function joined into each result's query took 10-20 s per result.
    """
    invocation = schema_of(conn).invocation
    rows = driver_rows(
        conn,
        sa.select(raw_column(invocation.c.id), raw_column(invocation.c.run_id), invocation.c.sequence_number).where(
            is_text(invocation)
        ),
    )
    if not rows:
        return _no_positions()
    ids, runs, seqs = zip(*rows)
    return TextPositions(ids, runs, _rank_in_runs(ids, runs, seqs))


def _rank_in_runs(ids: tuple, runs: tuple, seqs: tuple) -> np.ndarray:
    """Each text invocation's position among its run's text invocations (sequence order, then id)."""
    codes: dict[object, int] = {}
    run_codes = np.fromiter((codes.setdefault(r, len(codes)) for r in runs), dtype=np.int64, count=len(runs))
    seq = np.array(seqs, dtype=np.int64)
    order = np.lexsort((seq, run_codes))  # run, then sequence
    if np.any((np.diff(run_codes[order]) == 0) & (np.diff(seq[order]) == 0)):  # a repeated sequence number: by id too
        order = np.array(sorted(range(len(ids)), key=lambda i: (run_codes[i], seq[i], id_hex(ids[i]))))
    sorted_runs = run_codes[order]
    starts = np.r_[0, np.flatnonzero(np.diff(sorted_runs)) + 1]
    first = np.repeat(starts, np.diff(np.r_[starts, len(order)]))
    position = np.empty(len(order), dtype=np.int64)
    position[order] = np.arange(len(order)) - first
    return position


class TextPositions:
    """``invocation id -> (run id, text_index)`` for every text invocation (ids as the driver gives them), looked
    up many at a time by a sorted array (no dict of a million entries)."""

    def __init__(self, ids: tuple, runs: tuple, positions: np.ndarray) -> None:
        keys = np.array([id_hex(i) for i in ids], dtype="U32") if ids else np.array([], dtype="U32")
        self._order = np.argsort(keys, kind="stable")
        self._keys = keys[self._order]
        self._runs = np.array(runs, dtype=object)
        self._positions = positions

    def __len__(self) -> int:
        return int(self._keys.size)

    def locate(self, invocation_ids: list) -> list[tuple[object, int]]:
        """``(run id, text_index)`` of each id, ``(None, -1)`` for one that is not a text invocation."""
        if not invocation_ids:
            return []
        wanted = np.array([id_hex(i) for i in invocation_ids], dtype="U32")
        at = np.clip(np.searchsorted(self._keys, wanted), 0, max(self._keys.size - 1, 0))
        found = self._keys[at] == wanted if self._keys.size else np.zeros(len(wanted), dtype=bool)
        rows = self._order[at]
        runs, positions = self._runs[rows].tolist(), self._positions[rows].tolist()
        return [(r, p) if ok else (None, -1) for r, p, ok in zip(runs, positions, found.tolist())]


def _no_positions() -> TextPositions:
    return TextPositions((), (), np.empty(0, dtype=np.int64))


def texts_of(conn: sa.Connection, embedding_ids: list[uuid.UUID]) -> dict[uuid.UUID, str | None]:
    """The output text behind each embedding id."""
    return {emb: text for emb, (_, _, text) in embedding_details(conn, embedding_ids).items()}


def embedding_details(conn: sa.Connection, embedding_ids: list[uuid.UUID]) -> dict[uuid.UUID, tuple[uuid.UUID, int, str | None]]:
    """``embedding id -> (run id, sequence number, output text)``, looked up by primary key, 500 at a time."""
    s = schema_of(conn)
    embedding, invocation = s.embedding, s.invocation
    out: dict[uuid.UUID, tuple[uuid.UUID, int, str | None]] = {}
    for start in range(0, len(embedding_ids), 500):
        chunk = embedding_ids[start : start + 500]
        rows = conn.execute(
            sa.select(embedding.c.id, invocation.c.run_id, invocation.c.sequence_number, invocation.c.output_text)
            .join(invocation, invocation.c.id == embedding.c.invocation_id)
            .where(embedding.c.id.in_(chunk))
        )
        out.update({emb: (run_id, seq, text) for emb, run_id, seq, text in rows})
    return out


def vectors_of(conn: sa.Connection, embedding_ids: list[uuid.UUID]) -> dict[uuid.UUID, np.ndarray]:
    """The float32 vectors of a few embeddings (a plot's sample), looked up by primary key."""
    embedding = schema_of(conn).embedding
    out: dict[uuid.UUID, np.ndarray] = {}
    for start in range(0, len(embedding_ids), 500):
        chunk = embedding_ids[start : start + 500]
        for emb_id, blob in conn.execute(sa.select(embedding.c.id, embedding.c.vector).where(embedding.c.id.in_(chunk))):
            if blob is not None:
                out[emb_id] = np.frombuffer(blob, dtype="<f4")
    return out


@dataclass(frozen=True)
class RunTexts:
    """One run's text outputs in step order (every text step, no downsampling)."""

    run_id: object
    network: str | None
    initial_prompt: str | None
    texts: list[str | None]


def iter_run_texts(
    conn: sa.Connection, experiment: str | uuid.UUID | None = None, calibration: bool = False, batch: int = STREAM_ROWS
) -> Iterator[RunTexts]:
    """Every run's texts in sequence order, streamed run by run (calibration runs left out unless asked)."""
    s = schema_of(conn)
    invocation, run = s.invocation, s.run
    runs = sa.select(raw_column(run.c.id), run.c.network, run.c.initial_prompt)
    if experiment is not None:
        check_experiment(conn, experiment)
    if not calibration:  # the sampling's own rule: no calibration runs, only the experiment's when given
        runs = runs.where(counted_runs(s, experiment))
    elif experiment is not None:
        runs = runs.where(of_experiment(s, experiment))
    about = {run_id: (network_label(network), prompt) for run_id, network, prompt in conn.execute(runs)}
    query = (
        sa.select(raw_column(invocation.c.run_id), invocation.c.output_text)
        .where(is_text(invocation))
        .order_by(invocation.c.run_id, invocation.c.sequence_number, invocation.c.id)
    )
    current, texts = None, []
    for part in conn.execute(query, execution_options={"stream_results": True, "yield_per": batch}).partitions(batch):
        for run_id, text in part:
            if run_id != current:
                if current in about:
                    yield RunTexts(current, *about[current], texts)
                current, texts = run_id, []
            texts.append(text)
    if current in about:
        yield RunTexts(current, *about[current], texts)

"""The experiment's texts read back, whatever result they belong to: run positions, captions, vectors by id.

Ids come back as the driver gives them (hex text on SQLite) where millions of rows are read: no UUID object
per row. Everything here is SQL; :mod:`.memberships` joins these with one result's clusters.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Iterator

import numpy as np
import sqlalchemy as sa

from cluster_workers.db.detect import schema_of
from cluster_workers.db.sampling import is_text


def network_label(network: object) -> str | None:
    """A run's network as the users write it: its models joined by "→" (a JSON list, or text already joined)."""
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
    from cluster_workers.db.sampling import check_experiment, counted_runs, of_experiment

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

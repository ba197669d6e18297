"""Stream one model's sampled ``(id, vector)`` rows into one preallocated float32 array."""

from __future__ import annotations

import uuid
from collections import Counter
from dataclasses import dataclass
from typing import Iterator

import numpy as np
import sqlalchemy as sa

from cluster_workers.db.detect import schema_of
from cluster_workers.db.sampling import sampled_vectors_query
from cluster_workers.db.snapshot import SampleBound
from cluster_workers.errors import BadVectorError

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

"""One result as a table: a CSV or Parquet file (streamed), or a pandas DataFrame.

One row per sampled embedding, columns :data:`~cluster_workers.db.memberships.EXPORT_COLUMNS`;
``cluster`` is the rank by size (1 = largest, -1 = outlier), as ``show`` numbers them.
"""

from __future__ import annotations

import csv
import json
import os
import sys
import uuid
from pathlib import Path
from typing import Any, Callable

import sqlalchemy as sa

from cluster_workers import stopping
from cluster_workers.analysis.dynamics import milestone
from cluster_workers.db.catalog import find_result
from cluster_workers.db.connect import Database, as_database
from cluster_workers.db.experiment import id_hex
from cluster_workers.db.memberships import EXPORT_COLUMNS, FLOAT_COLUMNS, iter_memberships, labelled
from cluster_workers.errors import ClusterWorkersError

INTEGER_COLUMNS = ("sequence_number", "text_index", "cluster", "state", "core")


def _cell(value: Any) -> Any:
    return str(value) if isinstance(value, uuid.UUID) else value


def _with_result(db: str | Database, result_id: str, fn: Callable[[sa.Connection, uuid.UUID], Any]) -> Any:
    """``fn(conn, id)`` for the result named by a full id or unique prefix, on a read-only connection."""
    return as_database(db).read(lambda conn: fn(conn, find_result(conn, result_id).id))


def _require(module: str, extra: str, what: str) -> Any:
    try:
        return __import__(module)
    except ImportError:
        raise ClusterWorkersError(f"{what} needs {module}: pip install 'cluster-workers[{extra}]'") from None


def _write_csv(fh, batches) -> int:  # type: ignore[no-untyped-def]
    rows = 0
    writer = csv.writer(fh)
    writer.writerow(EXPORT_COLUMNS)
    for batch in batches:
        stopping.check("while exporting", "no file was written")
        writer.writerows([tuple(_cell(v) for v in row) for row in batch])
        rows += len(batch)
    return rows


def _write_jsonl(fh, batches) -> int:  # type: ignore[no-untyped-def]
    """One JSON object per line, the export's columns as keys (numbers as numbers, ids as strings)."""
    rows = 0
    for batch in batches:
        stopping.check("while exporting", "no file was written")
        for row in batch:
            record = {k: (v if v is None or isinstance(v, (int, float)) else _cell(v)) for k, v in zip(EXPORT_COLUMNS, row)}
            fh.write(json.dumps(record, ensure_ascii=False) + "\n")
        rows += len(batch)
    return rows


FORMATS = {".csv": "csv", ".parquet": "parquet", ".jsonl": "jsonl", ".json": "jsonl"}  # file extension -> format
STDOUT = "-"


def export_format(output: str | Path, asked: str | None = None) -> str:
    """The format ``export`` writes: ``asked`` (``--format``), else the output's extension; ``-`` (stdout) is CSV
    unless asked. An unknown extension is refused in one line."""
    if asked:
        if asked not in set(FORMATS.values()):
            raise ClusterWorkersError(f"unknown format {asked!r}: one of {', '.join(sorted(set(FORMATS.values())))}")
        return asked
    if str(output) == STDOUT:
        return "csv"
    suffix = Path(output).suffix.lower()
    if suffix not in FORMATS:
        raise ClusterWorkersError(
            f"cannot tell the format of {output}: name it .csv, .parquet, .json or .jsonl (one JSON object per line), "
            f"or pass --format"
        )
    return FORMATS[suffix]


def _arrow_schema(pa):  # type: ignore[no-untyped-def]
    def kind(name: str):  # type: ignore[no-untyped-def]
        return pa.int64() if name in INTEGER_COLUMNS else pa.float64() if name in FLOAT_COLUMNS else pa.string()

    return pa.schema([(name, kind(name)) for name in EXPORT_COLUMNS])


def _write_parquet(path: Path, batches, pa, pq) -> int:  # type: ignore[no-untyped-def]
    schema = _arrow_schema(pa)
    rows = 0
    with pq.ParquetWriter(str(path), schema) as writer:
        for batch in batches:
            stopping.check("while exporting", "no file was written")
            columns = list(zip(*batch)) if batch else [[] for _ in EXPORT_COLUMNS]
            arrays = [pa.array([_cell(v) for v in col], type=field.type) for col, field in zip(columns, schema)]
            writer.write_table(pa.Table.from_arrays(arrays, schema=schema))
            rows += len(batch)
    return rows


def export_result(db: str | Database, result_id: str, output: str | Path, fmt: str | None = None) -> int:
    """Write the result to ``output`` in ``fmt`` (default: by its extension, :func:`export_format`); ``-`` writes to
    standard output. Returns the row count.

    A file is written to a temporary name beside ``output`` and renamed when complete, so a failure leaves no
    partial file.
    """
    fmt = export_format(output, fmt)
    if fmt == "parquet":
        pa = _require("pyarrow", "frames", "Parquet export")
        import pyarrow.parquet as pq
    if str(output) == STDOUT:
        if fmt == "parquet":
            raise ClusterWorkersError("Parquet is a binary file format: write it to a file, not to standard output")

        def to_stdout(conn: sa.Connection, rid: uuid.UUID) -> int:
            batches = iter_memberships(conn, rid, milestoned(conn, rid))
            return (_write_csv if fmt == "csv" else _write_jsonl)(sys.stdout, batches)

        return _with_result(db, result_id, to_stdout)
    output = Path(output)
    if not output.parent.is_dir():
        raise ClusterWorkersError(f"cannot write {output}: directory {output.parent} does not exist")
    partial = output.with_name(f".{output.name}.partial-{os.getpid()}")

    def write(conn: sa.Connection, rid: uuid.UUID) -> int:
        batches = iter_memberships(conn, rid, milestoned(conn, rid))
        if fmt == "parquet":
            return _write_parquet(partial, batches, pa, pq)
        with partial.open("w", newline="", encoding="utf-8") as fh:
            return (_write_csv if fmt == "csv" else _write_jsonl)(fh, batches)

    try:
        rows = _with_result(db, result_id, write)
        os.replace(partial, output)
    finally:
        partial.unlink(missing_ok=True)
    return rows


def milestoned(
    conn: sa.Connection, result_id: uuid.UUID, core_probability: float = 0.5
) -> dict[tuple[str, int], tuple[int, int]]:
    """``(run id hex, text step) -> (state, core 0/1)`` by core-set milestoning (``cluster-workers states``)."""
    data = labelled(conn, result_id, with_probabilities=True)
    out = {}
    for run in milestone(data.run_ids, data.text_index, data.clusters, data.stored_probabilities, core_probability):
        key = id_hex(run.run_id)
        out.update({(key, int(t)): (int(s), int(c)) for t, s, c in zip(run.steps, run.states, run.core)})
    return out


def load_result(database_url: str, result_id: str, busy_timeout: float = 30.0):  # type: ignore[no-untyped-def]
    """The result as a ``pandas.DataFrame`` with the export's columns (ids as strings).

    ``result_id`` is a full id or a unique prefix, as ``results`` prints it.
    """
    pd = _require("pandas", "frames", "load_result")

    def read(conn: sa.Connection, rid: uuid.UUID):  # type: ignore[no-untyped-def]
        rows = [tuple(_cell(v) for v in row) for batch in iter_memberships(conn, rid, milestoned(conn, rid)) for row in batch]
        frame = pd.DataFrame.from_records(rows, columns=list(EXPORT_COLUMNS))
        return frame.astype({**{name: "int64" for name in INTEGER_COLUMNS}, **{name: "float64" for name in FLOAT_COLUMNS}})

    return _with_result(Database(database_url, busy_timeout), result_id, read)

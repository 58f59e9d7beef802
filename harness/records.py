"""Record files: run.json, cost.json, samples/*.parquet, problems.parquet, passk.parquet, fitting datasets.

Every file carries its kind and ``SCHEMA_VERSION``: JSON files as top-level keys, parquet files in
the schema metadata. Reading a file of another kind or version fails with a one-line error naming
the file. Writes are atomic (temporary file + ``os.replace``), so a killed run never leaves a torn
record behind. Files are created like any normal file: mode 0666 less the process umask.
"""

from __future__ import annotations

import json
import os
import re
import secrets
from collections.abc import Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from harness.errors import RecordError

SCHEMA_VERSION = 1

_KIND_KEY, _VERSION_KEY = "t2_kind", "t2_schema_version"

# Columns a table of each kind must have (more are allowed), with their arrow types.
COLUMNS: dict[str, dict[str, pa.DataType]] = {
    "samples": {
        "task": pa.string(), "problem_id": pa.string(), "sample_idx": pa.int64(), "seed": pa.int64(),
        "text": pa.string(), "prompt_tokens": pa.int64(), "completion_tokens": pa.int64(),
        "cached_prompt_tokens": pa.int64(), "finish_reason": pa.string(),
        "cumulative_logprob": pa.float64(),
    },
    "scores": {  # samples after `t2 score`: identity columns plus the verdict
        "task": pa.string(), "problem_id": pa.string(), "sample_idx": pa.int64(),
        "answer": pa.string(), "correct": pa.bool_(), "verifier_message": pa.string(),
    },
    "problems": {
        "task": pa.string(), "problem_id": pa.string(), "n": pa.int64(), "c": pa.int64(),
        "nll": pa.float64(), "answer_tokens": pa.int64(), "prompt": pa.string(), "gold": pa.string(),
    },
    "passk": {
        "task": pa.string(), "k": pa.int64(), "pass_at_k": pa.float64(), "pass_at_k_low": pa.float64(),
        "pass_at_k_high": pa.float64(), "maj_at_k": pa.float64(), "task_loss": pa.float64(),
        "n_problems": pa.int64(), "n_smoothed": pa.int64(),
    },
    "dataset": {
        "checkpoint": pa.string(), "task": pa.string(), "N": pa.float64(), "D": pa.float64(),
        "k": pa.float64(), "task_loss": pa.float64(), "accuracy": pa.float64(),
        "C_train": pa.float64(), "C_inf": pa.float64(),
    },
    "reliability": {
        "run": pa.string(), "checkpoint": pa.string(), "task": pa.string(), "shift": pa.int64(),
        "k": pa.int64(), "n_problems": pa.int64(), "accuracy": pa.float64(), "confidence": pa.float64(),
        "ece": pa.float64(), "brier": pa.float64(), "aurc": pa.float64(), "aurc_oracle": pa.float64(),
        "aurc_random": pa.float64(), "nll_mean": pa.float64(), "nll_per_token": pa.float64(),
        "N": pa.float64(), "D": pa.float64(), "C_train": pa.float64(),
    },
}
# nullable columns added after a kind's first files: a table without them (an older file, or one
# built without the data) reads and writes with them as nulls
ADDED_COLUMNS: dict[str, tuple[str, ...]] = {"problems": ("prompt", "gold")}


def _with_added_columns(kind: str, table: pa.Table) -> pa.Table:
    for name in ADDED_COLUMNS.get(kind, ()):
        if name not in table.column_names:
            table = table.append_column(pa.field(name, COLUMNS[kind][name]),
                                        pa.nulls(table.num_rows, COLUMNS[kind][name]))
    return table


TEMPORARY = re.compile(r"^\.(?P<name>.+)\.(?P<pid>\d+)\.[0-9a-f]{8}\.tmp$")  # _atomic_write's: .NAME.PID.TAG.tmp


def _atomic_write(path: Path, write) -> None:
    """``write(tmp)`` to a fresh temporary beside ``path`` (created 0666 & ~umask; named as
    :data:`TEMPORARY` matches), then rename."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.parent / f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp"
    os.close(os.open(tmp, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o666))
    try:
        write(tmp)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def _check_header(path: Path, kind: str, found_kind: Any, found_version: Any) -> None:
    if found_kind != kind:
        raise RecordError(f"{path}: expected a t2 '{kind}' record, found kind {found_kind!r}")
    if str(found_version) != str(SCHEMA_VERSION):
        raise RecordError(
            f"{path}: schema version {found_version} of '{kind}', this harness reads version "
            f"{SCHEMA_VERSION}; re-run the stage that wrote it with this version"
        )


def write_json(path: str | os.PathLike, kind: str, record: Mapping[str, Any]) -> Path:
    """Write ``record`` as JSON with ``t2_kind`` and ``t2_schema_version`` keys, atomically."""
    path = Path(path)
    body = {_KIND_KEY: kind, _VERSION_KEY: SCHEMA_VERSION, **record}
    text = json.dumps(body, indent=2, sort_keys=False, default=_json_default) + "\n"
    _atomic_write(path, lambda tmp: Path(tmp).write_text(text))
    return path


def read_json(path: str | os.PathLike, kind: str) -> dict[str, Any]:
    """Read a JSON record written by :func:`write_json`; the header keys are removed."""
    path = Path(path)
    try:
        body = json.loads(path.read_text())
    except FileNotFoundError:
        raise RecordError(f"{path}: no such file (expected a t2 '{kind}' record)") from None
    except json.JSONDecodeError as e:
        raise RecordError(f"{path}: not valid JSON ({e.msg} at line {e.lineno})") from None
    if not isinstance(body, dict):
        raise RecordError(f"{path}: expected a JSON object")
    _check_header(path, kind, body.pop(_KIND_KEY, None), body.pop(_VERSION_KEY, None))
    return body


def _json_default(value: Any) -> Any:
    if hasattr(value, "item"):  # numpy scalars
        return value.item()
    if hasattr(value, "tolist"):
        return value.tolist()
    raise TypeError(f"cannot store {type(value).__name__} in a JSON record")


def to_table(kind: str, data: pa.Table | Mapping[str, Any]) -> pa.Table:
    """A table of ``kind`` from an arrow table or a dict of columns, typed per :data:`COLUMNS`."""
    table = _with_added_columns(kind, data if isinstance(data, pa.Table) else pa.table(dict(data)))
    required = COLUMNS[kind]
    missing = [name for name in required if name not in table.column_names]
    if missing:
        raise RecordError(f"'{kind}' table lacks column(s) {', '.join(missing)}")
    for name, typ in required.items():
        i = table.column_names.index(name)
        if table.schema.field(i).type != typ:
            table = table.set_column(i, pa.field(name, typ), table.column(i).cast(typ))
    meta = {**(table.schema.metadata or {}), _KIND_KEY.encode(): kind.encode(),
            _VERSION_KEY.encode(): str(SCHEMA_VERSION).encode()}
    return table.replace_schema_metadata(meta)


def write_table(path: str | os.PathLike, kind: str, data: pa.Table | Mapping[str, Any]) -> Path:
    """Write a parquet record of ``kind`` atomically; returns the path."""
    path = Path(path)
    table = to_table(kind, data)
    _atomic_write(path, lambda tmp: pq.write_table(table, tmp))
    return path


def write_batches(path: str | os.PathLike, kind: str, batches: Iterable[pa.Table | Mapping[str, Any]],
                  metadata: Mapping[str, str] | None = None) -> Path:
    """Write a parquet record of ``kind`` from an iterable of row batches, atomically, holding one
    batch at a time (no batch: an empty table), ``metadata`` added to its schema's; returns the path."""
    path = Path(path)

    def typed(batch: pa.Table | Mapping[str, Any]) -> pa.Table:
        table = to_table(kind, batch)
        return table.replace_schema_metadata({**table.schema.metadata, **(metadata or {})})

    def write(tmp: Path) -> None:
        writer = None
        try:
            for batch in batches:
                table = typed(batch)
                writer = writer or pq.ParquetWriter(tmp, table.schema)
                writer.write_table(table)
        finally:
            if writer is not None:
                writer.close()
        if writer is None:
            pq.write_table(typed(pa.schema(list(COLUMNS[kind].items())).empty_table()), tmp)

    _atomic_write(path, write)
    return path


def read_metadata(path: str | os.PathLike, kind: str) -> dict[str, str]:
    """The schema metadata of a parquet record of ``kind`` (header checked as in :func:`read_table`),
    read from its footer alone."""
    path = Path(path)
    try:
        meta = pq.read_schema(path).metadata or {}
    except FileNotFoundError:
        raise RecordError(f"{path}: no such file (expected a t2 '{kind}' table)") from None
    except (pa.ArrowInvalid, OSError) as e:
        raise RecordError(f"{path}: not a readable parquet file ({e})") from None
    found = {k.decode(errors="replace"): v.decode(errors="replace") for k, v in meta.items()}
    _check_header(path, kind, found.get(_KIND_KEY), found.get(_VERSION_KEY))
    return found


def iter_table(path: str | os.PathLike, kind: str, columns: Sequence[str], rows: int) -> Iterator[pa.Table]:
    """The ``columns`` of a parquet record of ``kind`` (header checked as in :func:`read_table`) as
    tables of at most ``rows`` rows, read one at a time."""
    path = Path(path)
    try:
        source = pq.ParquetFile(path)
    except FileNotFoundError:
        raise RecordError(f"{path}: no such file (expected a t2 '{kind}' table)") from None
    except (pa.ArrowInvalid, OSError) as e:
        raise RecordError(f"{path}: not a readable parquet file ({e})") from None
    meta = source.schema_arrow.metadata or {}
    _check_header(path, kind, meta.get(_KIND_KEY.encode(), b"").decode() or None,
                  meta.get(_VERSION_KEY.encode(), b"").decode() or None)
    missing = [name for name in columns if name not in source.schema_arrow.names]
    if missing:
        raise RecordError(f"{path}: '{kind}' table lacks column(s) {', '.join(missing)}")
    for batch in source.iter_batches(batch_size=rows, columns=list(columns)):
        yield pa.Table.from_batches([batch])


def read_table(path: str | os.PathLike, kind: str, columns: Sequence[str] | None = None) -> pa.Table:
    """Read a parquet record of ``kind`` (only ``columns``, if given), checking its kind, schema
    version and columns."""
    path = Path(path)
    try:
        table = pq.read_table(path, columns=columns)
    except FileNotFoundError:
        raise RecordError(f"{path}: no such file (expected a t2 '{kind}' table)") from None
    except (pa.ArrowInvalid, OSError) as e:
        raise RecordError(f"{path}: not a readable parquet file ({e})") from None
    meta = table.schema.metadata or {}
    found_kind = meta.get(_KIND_KEY.encode(), b"").decode() or None
    found_version = meta.get(_VERSION_KEY.encode(), b"").decode() or None
    _check_header(path, kind, found_kind, found_version)
    if columns is None:
        table = _with_added_columns(kind, table)
    missing = [name for name in columns or COLUMNS[kind] if name not in table.column_names]
    if missing:
        raise RecordError(f"{path}: '{kind}' table lacks column(s) {', '.join(missing)}")
    return table

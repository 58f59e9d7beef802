"""Shared pieces of the text tasks: loading rows (hub or local files, with line-level errors) and
answer normalisation (text exact match, numbers).
"""

from __future__ import annotations

import contextlib
import json
import re
import string
from collections.abc import Iterator, Sequence
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any

from harness.errors import DataError

DataFiles = str | Path | Sequence[str | Path] | None


def data_paths(data_files: DataFiles) -> list[Path]:
    """Local data files as paths: a path, a comma-separated string or a list (None: none)."""
    if data_files is None:
        return []
    if isinstance(data_files, (str, Path)):
        return [Path(p) for p in str(data_files).split(",")]
    return [Path(p) for p in data_files]


def _get(row: Any, path: str) -> Any:
    for key in path.split("."):
        if not isinstance(row, dict) or key not in row or row[key] is None:
            raise KeyError(path)
        row = row[key]
    return row


def read_jsonl(path: Path, fields: Sequence[str]) -> list[dict]:
    """The rows of a JSON-lines file, each checked to be an object with every (dotted) field. Raises
    ValueError naming the file, line and field."""
    if not path.is_file():
        raise FileNotFoundError(f"{path}: data file not found")
    rows = []
    with path.open(encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as e:
                raise DataError(f"{path}:{lineno}: not valid JSON ({e.msg})") from None
            for field in fields:
                try:
                    _get(row, field)
                except KeyError:
                    raise DataError(f"{path}:{lineno}: missing field {field!r} "
                                     f"(expected fields: {', '.join(fields)})") from None
            rows.append(row)
    if not rows:
        raise DataError(f"{path}: no rows (expected JSON lines with fields {', '.join(fields)})")
    return rows


@contextlib.contextmanager
def no_download_count() -> Iterator[None]:
    """``datasets`` without its download-count request (a HEAD to S3 for every packaged loader,
    json included, unless HF_UPDATE_DOWNLOAD_COUNTS is off): reading local files asks no server."""
    import datasets.config

    saved = datasets.config.HF_UPDATE_DOWNLOAD_COUNTS
    datasets.config.HF_UPDATE_DOWNLOAD_COUNTS = False
    try:
        yield
    finally:
        datasets.config.HF_UPDATE_DOWNLOAD_COUNTS = saved


def load_rows(data_files: DataFiles, fields: Sequence[str], hub: tuple[str, str | None, str]) -> list[dict]:
    """Rows of a dataset: from local JSON-lines ``data_files`` (read and checked line by line,
    :func:`read_jsonl`; no ``datasets`` import, cache or request), else ``datasets.load_dataset(*hub)``
    = (path, config, split)."""
    files = data_paths(data_files)
    if files:
        return [row for path in files for row in read_jsonl(path, fields)]
    import datasets

    path, name, split = hub
    ds = datasets.load_dataset(path, name, split=split)
    missing = [f for f in fields if f.split(".")[0] not in ds.column_names]
    if missing:
        raise DataError(f"{path}: missing field {missing[0]!r} (columns: {', '.join(ds.column_names)})")
    return list(ds)


_ARTICLES = re.compile(r"\b(a|an|the)\b")
_PUNCT = str.maketrans("", "", string.punctuation)


def normalize_text(s: str) -> str:
    """SQuAD-style normalisation: lowercase, drop punctuation and articles, collapse whitespace."""
    s = _ARTICLES.sub(" ", s.lower().translate(_PUNCT))
    return " ".join(s.split())


_WORD = re.compile(r"-?\d+(?:\.\d+)?|[^\W\d_]+(?:['-][^\W\d_]+)*")


def first_word(s: str) -> str | None:
    """The first word or number of ``s``, lowercased (None if there is none)."""
    m = _WORD.search(s)
    return m.group(0).lower() if m else None


_NUMBER = re.compile(r"(-?)\s?\$?\s?(-?)(\d{1,3}(?:,\d{3})+(?:\.\d+)?|\d+(?:\.\d+)?|\.\d+)")


def _clean_number_text(s: str) -> str:
    r"""Undo LaTeX and typography inside numbers: 1{,}000 and 1\,000 -> 1,000; unicode minus -> -."""
    return s.replace("{,}", ",").replace("\\,", "").replace("\u2212", "-").replace("\\$", "$")


def _canonical(m: re.Match) -> str | None:
    negative = bool(m.group(1)) != bool(m.group(2))
    try:
        value = Decimal(m.group(3).replace(",", ""))
    except InvalidOperation:
        return None
    out = str(value.quantize(Decimal(1))) if value == value.to_integral_value() else format(value.normalize(), "f")
    return "-" + out if negative and value != 0 else out


def normalize_number(s: str) -> str | None:
    """Canonical form of the first number in ``s``: no $, commas, units or %, no trailing zeros
    ("$1,234.50" -> "1234.5", "7.0 cm" -> "7", "-$3" -> "-3"); None if ``s`` holds no number."""
    m = _NUMBER.search(_clean_number_text(s))
    return _canonical(m) if m else None


def last_number(s: str) -> str | None:
    """The last number in ``s``, normalised (see :func:`normalize_number`)."""
    matches = list(_NUMBER.finditer(_clean_number_text(s)))
    return _canonical(matches[-1]) if matches else None


_BOXED = re.compile(r"\\(?:boxed|fbox)\s*\{")


def last_boxed(s: str) -> tuple[int, str] | None:
    r"""(position, content) of the last ``\boxed{...}`` or ``\fbox{...}`` in ``s``, braces matched
    (so nested braces are kept whole); None if there is none or it is never closed."""
    for m in reversed(list(_BOXED.finditer(s))):
        depth, start = 1, m.end()
        for i in range(start, len(s)):
            depth += {"{": 1, "}": -1}.get(s[i], 0)
            if depth == 0:
                return m.start(), s[start:i]
    return None

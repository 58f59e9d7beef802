"""Progress bars that read well in a terminal and in a log file.

On a terminal: tqdm as usual. Off a terminal (CI logs, ``make test > log``, SLURM output): the same
bar as plain lines, at most one every ``LOG_INTERVAL_S`` seconds plus the last, never a stream of
carriage-return frames.
"""

from __future__ import annotations

import sys
from collections.abc import Iterable
from typing import Any, TextIO

from tqdm.auto import tqdm

LOG_INTERVAL_S = 30.0


class _Lines:
    """A file for tqdm that turns each redraw into one line."""

    def __init__(self, stream: TextIO) -> None:
        self.stream = stream

    def write(self, text: str) -> None:
        text = text.strip("\r\n ")
        if text:
            self.stream.write(text + "\n")

    def flush(self) -> None:
        self.stream.flush()


def progress_bar(iterable: Iterable | None = None, **options: Any) -> tqdm:
    """``tqdm(iterable, **options)``; off a terminal, a line per ``LOG_INTERVAL_S`` seconds."""
    stream = options.pop("file", None) or sys.stderr
    if stream.isatty():
        return tqdm(iterable, file=stream, **options)
    options.update(mininterval=LOG_INTERVAL_S, maxinterval=LOG_INTERVAL_S, ascii=True, ncols=100)
    return tqdm(iterable, file=_Lines(stream), **options)

"""The errors the library raises for bad input, as opposed to bugs.

Every class here derives from :class:`T2Error`; the command line prints these as one line and
exits 2, and lets any other exception show its traceback (a bug must look like a bug). They also
derive from ``ValueError`` (or ``RuntimeError``), so callers that caught those keep working.
The library names fields (``temperature``, ``shard``), never command-line flags: ``harness.cli``
maps fields to flags.
"""

from __future__ import annotations

from typing import Any


class T2Error(Exception):
    """Bad input, a bad file or a refused operation: the user can fix it."""


class InvalidSetting(T2Error, ValueError):
    """A setting ``field`` has ``value`` where ``expected`` describes what is accepted."""

    def __init__(self, field: str, value: Any, expected: str) -> None:
        self.field, self.value, self.expected = field, value, expected
        super().__init__(self.render(field))

    def render(self, name: str) -> str:
        """The message with the setting called ``name`` (a field, or the flag that sets it)."""
        return f"{name}: expected {self.expected}, got {self.value!r}"

    def __reduce__(self):  # pickles whole (a Ray worker's error reaches the driver with its field)
        return type(self), (self.field, self.value, self.expected)


class DataError(T2Error, ValueError):
    """A data file, model config or table is malformed; the message names the file and field."""


class RecordError(DataError):
    """A record file is missing, malformed, or of another kind or schema version."""


class RunMismatch(T2Error, ValueError):
    """A command asks for a run that differs from the one in the run directory, in ``field``
    (a dotted run.json field, e.g. ``sampler.seed``)."""

    def __init__(self, message: str, field: str | None = None) -> None:
        self.field = field
        super().__init__(message)

    def __reduce__(self):
        return type(self), (str(self), self.field)


class RunLocked(T2Error, RuntimeError):
    """Another process is writing the run directory."""


class WorkerError(T2Error, RuntimeError):
    """A worker of a distributed run cannot reach the run directory, cannot load the model, or
    failed while sampling; the message names its host and the cause in one line."""

"""Tasks whose problems are the rows of a dataset split: local JSON-lines files or the hub.

``data_files`` names files by split: ``"train=train.jsonl,test=test.jsonl"`` (a list of such
items works too); a path without ``split=`` is the test split. Problems come from the test split
(local files, else the hub's ``hub`` split), always all of it (``limit`` cuts the end). Few-shot
examples (``num_fewshot`` > 0) come from the local train split, else the local validation split,
else, when the test data is the hub's too, from the hub's ``train_hub`` split: never from the
test set, and never from the hub when the test data is local.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from harness.errors import InvalidSetting

from .answers import DataFiles, load_rows
from .base import Problem, Task, check_fewshot

SPLITS = ("train", "validation", "test")
_SPLIT_ITEM = re.compile(r"^([A-Za-z_][\w-]*)=(.+)$")


def split_paths(data_files: DataFiles, default: str = "test") -> dict[str, list[Path]]:
    """Local data files by split: ``"train=a.jsonl,test=b.jsonl"`` → {"train": [a], "test": [b]};
    an item without ``split=`` belongs to split ``default``. None gives {}."""
    if data_files is None:
        return {}
    items = str(data_files).split(",") if isinstance(data_files, (str, Path)) else list(data_files)
    splits: dict[str, list[Path]] = {}
    for item in map(str, items):
        m = _SPLIT_ITEM.match(item)
        split, path = (m.group(1), m.group(2)) if m else (default, item)
        splits.setdefault(split, []).append(Path(path))
    return splits


def hub_source(hub: tuple[str, str | None, str]) -> str:
    """``hf:path/config:split`` of a hub dataset split."""
    path, config, split = hub
    return f"hf:{path}" + (f"/{config}" if config else "") + f":{split}"


class RowsTask(Task):
    """A task over dataset rows: subclasses set :attr:`hub`, :attr:`train_hub` (None: no training
    split on the hub), :attr:`fields` and define :meth:`_problem` (one row → one Problem)."""

    fields: tuple[str, ...] = ()
    train_fields: tuple[str, ...] | None = None  # fields of the few-shot rows (default: fields)
    train_hub: tuple[str, str | None, str] | None = None

    def __init__(self, data_files: DataFiles = None, limit: int | None = None, num_fewshot: int = 0,
                 fewshot_seed: int = 0, **_: Any) -> None:
        check_fewshot(num_fewshot, fewshot_seed)
        splits = split_paths(data_files)
        unknown = sorted(set(splits) - set(SPLITS))
        if unknown:
            raise InvalidSetting("data_files", f"{unknown[0]}={splits[unknown[0]][0]}",
                                 "split names train, validation or test (e.g. train=train.jsonl,test=test.jsonl)")
        self.test_files = splits.get("test") or self.default_test_files()
        self.shot_split = next((s for s in ("train", "validation") if s in splits), None)
        self.shot_files = splits.get(self.shot_split, []) if num_fewshot else []
        self.data_files = [*self.test_files, *self.shot_files] or None
        self.limit, self.num_fewshot, self.fewshot_seed = limit, num_fewshot, fewshot_seed
        if num_fewshot and not self.shot_files:
            self._check_shot_source()
        self.source = ",".join(map(str, self.test_files)) if self.test_files else hub_source(self.hub)
        if num_fewshot:
            self.source += f" ({num_fewshot}-shot)"

    def _check_shot_source(self) -> None:
        """Refuse few-shot without local examples when the hub has none, or when the test data is
        local (examples are then never fetched from the hub)."""
        if self.train_hub is None:
            super().fewshot_pool()
        if self.test_files:
            raise InvalidSetting("num_fewshot", self.num_fewshot,
                                 f"0, or a train=PATH among the data files: task {self.name}'s test data is "
                                 f"local ({','.join(map(str, self.test_files))}) and examples are not fetched "
                                 "from the hub")

    def default_test_files(self) -> list[Path]:
        """Local test files used when ``data_files`` names none (default: none, the hub)."""
        return []

    def _problem(self, i: int, row: dict) -> Problem:
        raise NotImplementedError

    def problems(self) -> list[Problem]:
        rows = load_rows(self.test_files, self.fields, self.hub)[: self.limit]
        return self.with_fewshot(self._pool(rows))

    def fewshot_pool(self) -> tuple[list[Problem], str, str]:
        """The local train (else validation) split, else the hub's training split."""
        if self.shot_files:
            rows = load_rows(self.shot_files, self.train_fields or self.fields, self.hub)
            return self._pool(rows), str(self.shot_split), ",".join(map(str, self.shot_files))
        rows = load_rows(None, self.train_fields or self.fields, self.train_hub)
        return self._pool(rows), self.train_hub[2], hub_source(self.train_hub)

    def _pool(self, rows: list[dict]) -> list[Problem]:
        return [self._problem(i, row) for i, row in enumerate(rows)]

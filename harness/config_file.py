"""``--config FILE.yaml``: the flags of one subcommand in a YAML file, the command line overriding it.

    # gsm8k.yaml, for `t2 sample --config gsm8k.yaml --out results/g`
    task: gsm8k
    model: smollm2-135m
    n: 64
    top-p: 0.95                  # a flag's name with - or _
    gen_kwargs: {min_p: 0.05, until: ["\\n\\n"]}
    task_option: {n_shot: 5}
    chat: true

Each key names a flag of the subcommand (``top-p``, ``top_p`` and ``--top-p`` are one key); the
file's flags go in front of the command line's, through argparse (its types, choices and errors),
and a flag also given on the command line is taken from there only. A value is a scalar, a list
(flags taking several values, or repeatable ones), or a mapping, which becomes ``KEY=VALUE`` items
(values written as JSON, which YAML reads back): repeated for a repeatable flag
(``--task-option``), joined by commas otherwise (``--gen-kwargs``). ``true`` / ``false`` set or
leave a switch. Unknown keys are refused, naming the file and the key. In ``t2 cost``, whose
``--config`` names a model config, only a value ending in .yaml or .yml is a flags file.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from harness.errors import DataError

FLAG = "--config"
SUFFIXES = (".yaml", ".yml")
MODEL_CONFIG_COMMANDS = ("cost",)  # their --config is not a flags file unless it ends in SUFFIXES


def _subparser(parser: argparse.ArgumentParser, name: str) -> argparse.ArgumentParser | None:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return action.choices.get(name)
    return None


def _take_config(command: str, rest: list[str]) -> tuple[str | None, list[str]]:
    """(the flags file named by ``--config`` in ``rest``, or None; ``rest`` without it)."""
    for i, token in enumerate(rest):
        if token == FLAG and i + 1 < len(rest):
            value, end = rest[i + 1], i + 2
        elif token.startswith(FLAG + "="):
            value, end = token.partition("=")[2], i + 1
        else:
            continue
        if command in MODEL_CONFIG_COMMANDS and not value.endswith(SUFFIXES):
            return None, rest
        return value, rest[:i] + rest[end:]
    return None, rest


def _key(text: str) -> str:
    return text.lstrip("-").replace("-", "_")


def _item(key: Any, value: Any) -> str:
    return f"{key}={value if isinstance(value, (int, float)) and not isinstance(value, bool) else json.dumps(value)}"


def _tokens(action: argparse.Action, value: Any, where: str) -> list[str]:
    """The command-line tokens that give flag ``action`` the file's ``value``."""
    flag = max(action.option_strings, key=len)
    if isinstance(action, (argparse._StoreTrueAction, argparse._StoreFalseAction)):
        if not isinstance(value, bool):
            raise DataError(f"{where}: expected true or false, got {value!r}")
        return [flag] if value else []
    repeatable = isinstance(action, argparse._AppendAction)
    if isinstance(value, dict):
        items = [_item(k, v) for k, v in value.items()]
        value = items if repeatable else ",".join(items)
    if isinstance(value, list):
        if repeatable:
            return [f"{flag}={v}" for v in value]
        if action.nargs not in ("+", "*"):
            raise DataError(f"{where}: expected one value, got a list")
        return [flag, *map(str, value)]
    if value is None:
        raise DataError(f"{where}: expected a value, got nothing")
    return [f"{flag}={value}"]


def _given(action: argparse.Action, argv: Sequence[str]) -> bool:
    return any(t == o or t.startswith(o + "=") for t in argv for o in action.option_strings)


def expand(parser: argparse.ArgumentParser, argv: Sequence[str]) -> list[str]:
    """``argv`` (subcommand first) with a ``--config FILE.yaml`` replaced by the file's flags,
    placed before the command line's; flags the command line gives are not taken from the file."""
    import yaml

    argv = list(argv)
    sub = _subparser(parser, argv[0]) if argv else None
    if sub is None:
        return argv
    path, rest = _take_config(argv[0], argv[1:])
    if path is None:
        return argv
    try:
        flags = yaml.safe_load(Path(path).read_text())
    except yaml.YAMLError as e:
        raise DataError(f"{path}: not YAML ({str(e).splitlines()[0]})") from None
    if not isinstance(flags, dict):
        raise DataError(f"{path}: expected a mapping of {argv[0]} flags to values")
    skip = ("-h", "--help") if argv[0] in MODEL_CONFIG_COMMANDS else ("-h", "--help", FLAG)
    actions = {_key(o): a for a in sub._actions for o in a.option_strings if o not in skip}
    tokens: list[str] = []
    for key, value in flags.items():
        action = actions.get(_key(str(key)))
        if action is None:
            raise DataError(f"{path}: unknown key {key!r} (not a flag of t2 {argv[0]})")
        if not _given(action, rest):
            tokens += _tokens(action, value, f"{path}: {key}")
    return [argv[0], *tokens, *rest]

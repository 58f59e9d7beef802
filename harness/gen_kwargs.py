"""Generation kwargs in lm-evaluation-harness's syntax, ``key=value,key=value``, as sampler settings.

``temperature=0.7,top_p=0.95,min_p=0.05,until=["\\n\\n","Question:"],max_gen_toks=512`` becomes
fields of :class:`harness.samplers.SamplingSettings` (which are part of the run's identity). Values
are YAML scalars or flow lists; pairs are separated by the commas that precede a ``key=``, so a
list or a quoted string may hold commas. Several names of one setting are accepted (lm-eval's,
vLLM's, transformers'): ``max_gen_toks`` / ``max_new_tokens`` / ``max_tokens``, ``until`` / ``stop``.
``do_sample=false`` is greedy (temperature 0). ``stop`` strings are added to the task's own.

Every key is honoured by the backend it is sent to, or refused (:class:`InvalidSetting` naming
the key): nothing is silently dropped.
"""

from __future__ import annotations

import dataclasses
import re
from typing import Any

from harness.errors import InvalidSetting
from harness.samplers import SamplingSettings

# accepted name → SamplingSettings field
ALIASES = {"temperature": "temperature", "top_p": "top_p", "top_k": "top_k", "min_p": "min_p",
           "repetition_penalty": "repetition_penalty", "presence_penalty": "presence_penalty",
           "frequency_penalty": "frequency_penalty", "max_tokens": "max_tokens", "max_gen_toks": "max_tokens",
           "max_new_tokens": "max_tokens", "stop": "stop", "until": "stop", "seed": "seed", "do_sample": "do_sample"}
# SamplingSettings fields each backend honours (hf: harness.kernels.sampling; vllm: SamplingParams)
HONOURED = {"hf": frozenset(ALIASES.values()), "vllm": frozenset(ALIASES.values())}
# generation kwargs of other tools that no backend here implements
NOT_HONOURED = ("num_beams", "length_penalty", "typical_p", "epsilon_cutoff", "eta_cutoff",
                "no_repeat_ngram_size", "best_of", "use_beam_search", "logit_bias", "num_return_sequences")
_PAIR_BOUNDARY = re.compile(r",\s*(?=[A-Za-z_]\w*\s*=)")


def parse(text: str | None) -> dict[str, Any]:
    """``"a=1,b=[x, y]"`` → {"a": 1, "b": ["x", "y"]} (values as YAML; keys as written)."""
    import yaml

    pairs: dict[str, Any] = {}
    for item in _PAIR_BOUNDARY.split(text or ""):
        if not item.strip():
            continue
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise InvalidSetting("gen_kwargs", item, "KEY=VALUE pairs separated by commas")
        try:
            pairs[key.strip()] = yaml.safe_load(value) if value.strip() else ""
        except yaml.YAMLError:
            raise InvalidSetting("gen_kwargs", item, "a value YAML can read (quote strings holding : or #)") from None
    return pairs


def _field_value(key: str, field: str, value: Any) -> Any:
    """``value`` of gen kwarg ``key`` converted to the type of SamplingSettings field ``field``."""
    key = f"gen_kwargs.{key}"
    if field == "stop":
        stops = [value] if isinstance(value, str) else value
        if not isinstance(stops, list) or not all(isinstance(s, str) and s for s in stops):
            raise InvalidSetting(key, value, "a non-empty string or a list of them")
        return tuple(stops)
    if field == "do_sample":
        if not isinstance(value, bool):
            raise InvalidSetting(key, value, "true or false")
        return value
    kind = int if field in ("top_k", "max_tokens", "seed") else float
    if isinstance(value, bool) or not isinstance(value, (int, float)) or (kind is int and value != int(value)):
        raise InvalidSetting(key, value, f"a{'n integer' if kind is int else ' number'}")
    return kind(value)


def apply(settings: SamplingSettings, kwargs: dict[str, Any], backend: str) -> SamplingSettings:
    """``settings`` with the generation kwargs ``kwargs`` (from :func:`parse`) applied; they
    override the settings' values, and their ``stop`` strings are added to its own. A key that
    ``backend`` does not honour, or that is unknown, raises :class:`InvalidSetting` naming it."""
    changes: dict[str, Any] = {}
    for key, value in kwargs.items():
        field = ALIASES.get(key)
        if field is None:
            why = f"not honoured by the {backend} backend" if key in NOT_HONOURED else "an unknown generation kwarg"
            raise InvalidSetting(f"gen_kwargs.{key}", value, f"one of {', '.join(ALIASES)} ({key} is {why})")
        if field not in HONOURED.get(backend, ()):
            raise InvalidSetting(f"gen_kwargs.{key}", value, f"a kwarg the {backend} backend honours ({key} is not)")
        if field in changes and field != "stop":
            raise InvalidSetting(f"gen_kwargs.{key}", value, f"one value of {field} (given twice under two names)")
        parsed = _field_value(key, field, value)
        changes[field] = changes.get("stop", ()) + parsed if field == "stop" else parsed
    if changes.pop("do_sample", True) is False:
        changes["temperature"] = 0.0
    if "stop" in changes:
        changes["stop"] = tuple(dict.fromkeys(settings.stop + changes["stop"]))
    return dataclasses.replace(settings, **changes)

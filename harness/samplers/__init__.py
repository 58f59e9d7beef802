"""Sampler backends: draw n completions per prompt, and score gold-answer likelihoods.

Two real implementations share this interface: ``vllm`` (production, high throughput) and ``hf``
(transformers; the portable reference). ``get_backend(name, model, **options)`` builds one.

``Backend.stream`` is the driver's path: it takes a lazy iterable of :class:`SampleRequest` and
yields each request's completions the moment all of them exist, keeping at most about
``in_flight`` samples in the engine (vllm refills as requests finish; hf refills per decode
batch). ``Backend.sample`` is the same draw for a list of prompts, returned in prompt order.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import sys
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple, Protocol, TextIO

from harness.errors import InvalidSetting, T2Error


@dataclass(frozen=True)
class SamplingSettings:
    """How completions are drawn. ``seed`` is the run's base seed; sample i of problem p uses seed
    ``problem_seed(seed, task, p) + i`` (:func:`problem_seed`; the driver passes those bases).

    n: completions per prompt. temperature: softmax temperature (0 = greedy). top_p: nucleus mass
    (1.0 = off). top_k: keep the k most likely tokens (0 = off). max_tokens: new tokens per
    completion. stop: strings that end a completion (not included in its text). min_p: keep the
    tokens whose probability is at least min_p times the most likely one's (0 = off).
    repetition_penalty: CTRL's penalty r on every token already in the prompt or the completion,
    logit / r where positive, logit · r where negative (1 = off). presence_penalty α and
    frequency_penalty β (OpenAI's): logit − α·[count > 0] − β·count over the completion's tokens
    (0 = off). The penalties act on the raw logits, before temperature and the filters.
    """

    n: int = 64
    temperature: float = 1.0
    top_p: float = 1.0
    top_k: int = 0
    max_tokens: int = 256
    seed: int = 0
    stop: tuple[str, ...] = ()
    min_p: float = 0.0
    repetition_penalty: float = 1.0
    presence_penalty: float = 0.0
    frequency_penalty: float = 0.0


# settings added after runs were recorded without them: an absent field in run.json means this value
LATER_SETTINGS = {"min_p": 0.0, "repetition_penalty": 1.0, "presence_penalty": 0.0, "frequency_penalty": 0.0}


@dataclass(frozen=True)
class Completion:
    """One sampled completion; token counts are in tokens of the model's tokenizer."""

    sample_idx: int
    seed: int
    text: str
    prompt_tokens: int
    completion_tokens: int
    cached_prompt_tokens: int
    finish_reason: str  # "stop" (EOS or a stop string) or "length"
    cumulative_logprob: float


class SampleRequest(NamedTuple):
    """One prompt's samples ``start..n-1`` (sample i: seed ``seed + i``); ``key`` names it in the
    stream's output (the driver uses the problem)."""

    key: Any
    prompt: str
    seed: int
    start: int = 0


def requests_of(prompts: Sequence[str], settings: SamplingSettings, seeds: Sequence[int] | None,
                start: int) -> list[SampleRequest]:
    """``Backend.sample``'s arguments as stream requests keyed by prompt position."""
    bases = list(seeds) if seeds is not None else [settings.seed] * len(prompts)
    return [SampleRequest(k, p, b, start) for k, (p, b) in enumerate(zip(prompts, bases, strict=True))]


def in_order(stream: Iterable[tuple[int, list[Completion]]], count: int) -> list[list[Completion]]:
    """A stream keyed 0..count-1 (:func:`requests_of`) collected in key order."""
    out: list[list[Completion]] = [[] for _ in range(count)]
    for k, completions in stream:
        out[k] = completions
    return out


SEED_RULES = ("base+i", "problem-hash")  # run.json ``sampler.seed_rule``; absent = "base+i" (runs before it)
SEED_SPAN = 2**63 - 2**32  # problem seeds lie in [0, SEED_SPAN): base + i < 2^63 for every i < 2^32
MAX_SAMPLES = 2**32  # sample_idx < MAX_SAMPLES, so no seed wraps
SAMPLES_IN_FLIGHT = 256  # default work in flight: hf's stream window, a Ray chunk (⌈256 / n⌉ problems)


def problem_seed(base_seed: int, task: str, problem_id: str) -> int:
    """The seed of sample 0 of problem ``problem_id``; sample i uses ``problem_seed(...) + i``.

    H = the first 8 bytes (big-endian) of SHA-256 over the UTF-8 bytes of
    ``json.dumps([base_seed, task, problem_id])`` (Python's defaults: ", " separator, ASCII
    escapes), and the seed is ``H mod (2^63 - 2^32)``. That range keeps ``seed + i`` below 2^63
    for every sample_idx i < 2^32, so ``(H' + i) mod 2^63`` never wraps and vLLM's n-request
    (child i gets ``seed + i``) draws exactly these seeds. Independent of data order and machine.
    """
    key = json.dumps([int(base_seed), str(task), str(problem_id)]).encode("utf-8")
    return int.from_bytes(hashlib.sha256(key).digest()[:8], "big") % SEED_SPAN


def sample_seeds(rule: str, base_seed: int, task: str, problem_ids: Sequence[str]) -> list[int]:
    """Each problem's seed of sample 0 under ``rule`` (:data:`SEED_RULES`): the problem hash, or
    the base seed itself for every problem (the "base+i" rule of runs made before it)."""
    if rule not in SEED_RULES:
        raise InvalidSetting("seed_rule", rule, f"one of {', '.join(SEED_RULES)}")
    if rule == "base+i":
        return [base_seed] * len(problem_ids)
    return [problem_seed(base_seed, task, p) for p in problem_ids]


class Backend(Protocol):
    name: str
    tokenizer: Any  # the model's HF tokenizer (the driver applies chat templates with it)

    def model_info(self) -> dict[str, Any]:
        """Model id/path, revision, HF config dict, parameter counts, device, library versions:
        keys "model", "revision", "config" (dict), "params" ({"total", "non_embedding"}), "dtype",
        "device", "backend", "versions" ({package: version})."""
        ...

    def sample(self, prompts: Sequence[str], settings: SamplingSettings, seeds: Sequence[int] | None = None,
               start: int = 0) -> list[list[Completion]]:
        """Samples ``start..settings.n-1`` of each prompt, in prompt order; sample i of prompt k
        uses seed ``seeds[k] + i`` (``seeds`` None: ``settings.seed`` for every prompt)."""
        ...

    def stream(self, requests: Iterable[SampleRequest], settings: SamplingSettings,
               in_flight: int | None = None) -> Iterator[tuple[Any, list[Completion]]]:
        """(key, samples start..n-1) per request, yielded as soon as that request's samples all
        exist (completion order, not request order); ``requests`` is read lazily, new ones taken
        while fewer than ``in_flight`` samples are unfinished (None: the backend's default)."""
        ...

    def gold_nll(self, prompts: Sequence[str], answers: Sequence[str]) -> list[tuple[float, int]]:
        """Teacher-forced NLL (nats, summed over tokens) of each answer given its prompt, with the
        number of answer tokens."""
        ...

    def close(self) -> None:
        """Free the model (weights, engine processes, GPU memory) now; the backend is unusable after."""
        ...


@contextlib.contextmanager
def engine_output(log: str | os.PathLike) -> Iterator[TextIO]:
    """Send everything written to this process's stdout and stderr file descriptors to ``log``
    (appended) while inside: engine log lines, library warnings, and every process started inside
    (vLLM's engine core inherits the descriptors). Yields a text stream on the original stderr,
    for the harness's own progress; when the engine fails it names the log there."""
    sys.stdout.flush()
    sys.stderr.flush()
    saved = os.dup(1), os.dup(2)
    with open(log, "ab") as sink, os.fdopen(os.dup(saved[1]), "w", buffering=1) as terminal:
        os.dup2(sink.fileno(), 1)
        os.dup2(sink.fileno(), 2)
        try:
            yield terminal
        except Exception as e:
            if not isinstance(e, T2Error):  # a bad input's one line says it all; a crash's cause is in the log
                terminal.write(f"engine output (vLLM / transformers logs, warnings): {log}\n")
            raise
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            for fd, saved_fd in zip((1, 2), saved, strict=True):
                os.dup2(saved_fd, fd)
                os.close(saved_fd)


BACKENDS = {"hf": "harness.samplers.hf:HFBackend", "vllm": "harness.samplers.vllm:VLLMBackend"}


def get_backend(name: str, model: str, **options: Any) -> Backend:
    """The backend ``name`` ("hf" or "vllm") loading ``model`` (a resolved folder or HF id), built
    with ``options`` (hf: device, dtype, max_batch; vllm: dtype, max_model_len,
    gpu_memory_utilization, tensor_parallel_size, data_parallel_size). Imported lazily."""
    import importlib

    if name not in BACKENDS:
        raise InvalidSetting("backend", name, f"one of {', '.join(BACKENDS)}")
    module, cls = BACKENDS[name].split(":")
    return getattr(importlib.import_module(module), cls)(model, **options)

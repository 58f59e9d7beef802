"""transformers backend (CPU or CUDA): the portable reference sampler.

Prefill once, decode many, several problems per decode batch:

- The prompts of one ``sample`` call are sorted by length and packed into decode batches of whole
  problems (all n samples of each) holding at most ``max_batch`` rows. A batch's prompts are
  left-padded to a common length and prefilled ONCE together (attention mask + explicit
  position_ids, LM head on the last position only); each prompt's cache rows are then repeated to
  its n samples (``batch_repeat_interleave``) and all rows decode together, the attention mask
  growing by one column and the positions by one per step. A sample that ends is dropped from the
  batch with its cache rows, mask row and position. Batching problems matters most for tiny models
  with short prompts (the micro-ladder), where per-forward overhead dominates.
- A problem with n > ``max_batch`` is prefilled alone (no padding) and decoded in groups of
  ``max_batch`` samples that reuse the same prefill.
- ``attention="prefix"``: the prompt's KV is stored once per problem (``SharedPrefixCache`` from
  ``harness.kernels.hf_attention``) and decode runs the "t2_prefix" attention (Hydragen-style
  shared-prefix + per-sample suffix; Triton on CUDA, the torch reference on CPU), set on the model
  only while sampling. One problem per decode batch (the shared prefix is per problem, and that
  attention takes no padding mask); the rest (seeding, draws, records) is identical.

Randomness: ``harness.kernels.sampling`` (the one seeded sampler): sample i of prompt k has seed
``seeds[k] + i`` (the driver passes each problem's ``problem_seed``; as in the vLLM backend) and at
step t takes the token where the CDF of the filtered distribution first reaches the Philox uniform
u(seeds[k] + i, t). ``start`` > 0 draws samples start..n-1 only (a run growing from n to n').
The uniforms of a decode batch are computed once, [rows, max_tokens], with integer ops that give the
same numbers on every device. Its tokens therefore do not depend on n, the batch split, the other
problems in its batch or which other samples are still running, up to float round-off in batched
matmuls (padding and batch shape change the summation order of a few ulps; with float32 that flips
a sampled token only when u falls within ~1e-7 of a CDF step, which the tests bound). Temperature 0
is greedy (argmax). The filter is top-k first, then top-p over the renormalised rest, then min-p;
repetition / presence / frequency penalties rewrite the logits before them (``sampling.Penalties``).

Recorded per completion (as the vLLM backend does):
- prompt_tokens: ``len(tokenizer(prompt).input_ids)`` (special tokens added as the tokenizer does);
- completion_tokens: tokens generated, the EOS token and the tokens of a matched stop string
  included, although the text excludes them (decoded with special tokens skipped);
- cached_prompt_tokens: 0 for the first sample drawn (sample ``start``), prompt_tokens for the
  later ones (they reuse its prefill);
- cumulative_logprob: sum of the sampled tokens' log-probabilities (nats) under the model's raw
  distribution (log-softmax of the logits before temperature and filters), like vLLM's;
- finish_reason: "stop" (EOS or a stop string) or "length" (max_tokens reached).

``gold_nll`` scores answers teacher-forced (always with the model's own attention): one forward of
prompt + answer through the base model, the LM head applied only at the positions that predict
answer tokens. Boundary: the answer's tokens are the suffix of ``tokenize(prompt + answer)`` after
its first ``len(tokenize(prompt))`` tokens (the vLLM backend's rule; for prompts that end before a
space-led answer the two tokenisations agree on the prompt).
"""

from __future__ import annotations

import contextlib
import copy
import importlib.metadata as metadata
import itertools
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

import torch
from transformers import DynamicCache

from harness.errors import DataError
from harness.kernels import sampling
from harness.models import load_hf

from . import SAMPLES_IN_FLIGHT, Completion, SampleRequest, SamplingSettings, in_order, requests_of

ATTENTIONS = ("stock", "prefix")
GQA_SDPA = "t2_sdpa_gqa"


def sdpa_gqa_forward(module, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor,
                     attention_mask: torch.Tensor | None, dropout: float = 0.0, scaling: float | None = None,
                     is_causal: bool | None = None, **kwargs) -> tuple[torch.Tensor, None]:
    """transformers' SDPA attention, except that grouped-query attention with a padding mask runs
    SDPA's own ``enable_gqa`` instead of first copying K/V to every query head (transformers' sdpa
    does that copy whenever a mask is given). Used on CPU for padded decode batches."""
    from transformers.integrations.sdpa_attention import sdpa_attention_forward

    if attention_mask is None or query.shape[1] == key.shape[1] or kwargs.get("s_aux") is not None:
        return sdpa_attention_forward(module, query, key, value, attention_mask, dropout=dropout,
                                      scaling=scaling, is_causal=is_causal, **kwargs)
    out = torch.nn.functional.scaled_dot_product_attention(
        query, key, value, attn_mask=attention_mask[:, :, :, : key.shape[-2]], dropout_p=0.0, scale=scaling,
        enable_gqa=True)
    return out.transpose(1, 2).contiguous(), None


def _register_gqa_sdpa() -> None:
    from transformers import AttentionInterface
    from transformers.masking_utils import AttentionMaskInterface, sdpa_mask

    AttentionInterface.register(GQA_SDPA, sdpa_gqa_forward)
    AttentionMaskInterface.register(GQA_SDPA, sdpa_mask)


def _version(package: str) -> str | None:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return None


class HFBackend:
    """Samples and scores with a transformers causal LM.

    model: ``--model`` spec (resolved by ``harness.models.resolve_model``). device: "cpu", "cuda"
    (default: cuda when available). dtype: float32 / bfloat16 / float16 (default: the
    checkpoint's). max_batch: most sequences (samples) decoded together in one batch; None picks
    it from the KV-cache size (about 2 GiB of KV on CPU, half the free memory on CUDA, at most
    1,024 rows). attention: "stock" (the model's own attention over a cache holding the prompt's
    KV once per sample; problems batched together) or "prefix" (prompt KV stored once per problem,
    "t2_prefix" shared-prefix attention; one problem per decode batch).
    """

    name = "hf"

    def __init__(self, model: str, *, device: str | None = None, dtype: str | None = None,
                 max_batch: int | None = None, revision: str | None = None, attention: str = "stock") -> None:
        if max_batch is not None and max_batch < 1:
            raise ValueError(f"max_batch: expected >= 1, got {max_batch}")
        if attention not in ATTENTIONS:
            raise ValueError(f"attention: expected one of {', '.join(ATTENTIONS)}, got {attention!r}")
        self.device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        self.spec, self.revision, self.max_batch, self.attention = model, revision, max_batch, attention
        self.model, self.tokenizer = load_hf(model, self.device, dtype, revision)
        eos = self.model.generation_config.eos_token_id
        eos = set(eos if isinstance(eos, (list, tuple)) else [eos])
        self.eos = {e for e in eos | {self.tokenizer.eos_token_id} if e is not None}
        pad = self.tokenizer.pad_token_id
        self.pad = pad if pad is not None else min(self.eos, default=0)

    def model_info(self) -> dict[str, Any]:
        """Model path/revision, HF config, parameter counts, device and library versions."""
        from harness.cost import param_counts

        config = self.model.config
        device = torch.cuda.get_device_name(self.device) if self.device.startswith("cuda") else "cpu"
        return {"model": self.model.name_or_path, "revision": self.revision, "config": config.to_dict(),
                "params": param_counts(config), "dtype": str(self.model.dtype).removeprefix("torch."),
                "device": device, "backend": self.name, "attention": self.attention,
                "versions": {p: _version(p) for p in ("torch", "transformers")}}

    def close(self) -> None:
        """Drop the weights now (and return cached CUDA memory) rather than at garbage collection."""
        self.model = None
        if self.device.startswith("cuda"):
            torch.cuda.empty_cache()

    def encode(self, prompt: str) -> list[int]:
        ids = self.tokenizer(prompt).input_ids
        if not ids:
            raise DataError("prompt is empty: the first token has no context")
        return ids

    def rows(self, context: int) -> int:
        """Sequences per decode batch for a context of ``context`` tokens (``max_batch`` if set)."""
        if self.max_batch is not None:
            return self.max_batch
        c = self.model.config.get_text_config()
        head_dim = getattr(c, "head_dim", None) or c.hidden_size // c.num_attention_heads
        kv_heads = getattr(c, "num_key_value_heads", None) or c.num_attention_heads
        per_token = 2 * c.num_hidden_layers * kv_heads * head_dim * self.model.dtype.itemsize
        if self.device.startswith("cuda"):
            budget = torch.cuda.mem_get_info(torch.device(self.device))[0] // 2
        else:
            budget = 2 << 30
        return max(1, min(1024, budget // (per_token * max(context, 1))))

    def sample(self, prompts: Sequence[str], settings: SamplingSettings, seeds: Sequence[int] | None = None,
               start: int = 0) -> list[list[Completion]]:
        """Samples ``start..settings.n-1`` per prompt (sample i of prompt k: seed ``seeds[k] + i``,
        default ``settings.seed``), one prefill per prompt; with the stock attention, problems
        whose samples fit in one decode batch decode together."""
        return in_order(self.stream(requests_of(prompts, settings, seeds, start), settings, in_flight=0),
                        len(prompts))

    def stream(self, requests: Iterable[SampleRequest], settings: SamplingSettings,
               in_flight: int | None = None) -> Iterator[tuple[Any, list[Completion]]]:
        """(key, samples start..n-1) per request, a decode batch at a time: requests are taken in
        windows of consecutive ones with the same ``start`` holding at most ``in_flight`` samples
        (None: 256; 0: no bound; always at least one request), and each window's problems are
        yielded as their decode batch ends. Finished rows are not refilled inside a decode batch:
        a new prompt would need its own prefill merged into the batch's left-padded cache."""
        limit = in_flight if in_flight is not None else SAMPLES_IN_FLIGHT
        window: list[SampleRequest] = []
        for request in itertools.chain(requests, [None]):
            full = window and (request is None or request.start != window[0].start
                               or (limit and (len(window) + 1) * (settings.n - window[0].start) > limit))
            if full:
                for batch, completions in self._batches([self.encode(r.prompt) for r in window],
                                                        [r.seed for r in window], window[0].start, settings):
                    yield from ((window[k].key, c) for k, c in zip(batch, completions, strict=True))
                window = []
            if request is not None:
                window.append(request)

    def _batches(self, ids: list[list[int]], bases: list[int], start: int,
                 settings: SamplingSettings) -> Iterator[tuple[list[int], list[list[Completion]]]]:
        """(prompt indices, their samples start..n-1) per decode batch: prompts sorted by length
        and packed, whole problems, into batches of at most ``rows`` sequences."""
        count = settings.n - start
        order = sorted(range(len(ids)), key=lambda k: len(ids[k]))  # similar lengths pad less
        done = 0
        while done < len(order):
            cap = self.rows(len(ids[order[done]]) + settings.max_tokens)
            per = 1 if self.attention == "prefix" else max(1, cap // count)
            batch = order[done:done + per]
            while len(batch) > 1 and len(batch) * count > self.rows(len(ids[batch[-1]]) + settings.max_tokens):
                batch.pop()  # longer prompts: fewer rows fit
            if len(batch) == 1:
                yield batch, [self._sample_one(ids[batch[0]], bases[batch[0]], start, settings)]
            else:
                yield batch, self._sample_many([ids[k] for k in batch], [bases[k] for k in batch], start, settings)
            done += len(batch)

    def _context(self, padded: bool = False):
        from harness.kernels import hf_attention

        if self.attention != "prefix":
            if padded and self.device == "cpu" and self.model.config._attn_implementation == "sdpa":
                _register_gqa_sdpa()
                return hf_attention.attention_implementation(self.model, GQA_SDPA)
            return contextlib.nullcontext()

        hf_attention.register()
        return hf_attention.attention_implementation(self.model, hf_attention.ATTN_NAME)

    @torch.inference_mode()
    def _sample_one(self, ids: list[int], base: int, first_idx: int, s: SamplingSettings) -> list[Completion]:
        """One problem, no padding: prefill once, decode its samples in groups of ``rows``."""
        rows = self.rows(len(ids) + s.max_tokens)
        with self._context():
            if self.attention == "prefix":
                from harness.kernels.hf_attention import SharedPrefixCache

                cache = SharedPrefixCache()
            else:
                cache = DynamicCache(config=self.model.config)
            out = self.model(torch.tensor([ids], device=self.device), past_key_values=cache, use_cache=True,
                             logits_to_keep=1)
            prefix, first = out.past_key_values, out.logits[:, -1]
            done: list[Completion] = []
            for start in range(first_idx, s.n, rows):
                group = range(start, min(s.n, start + rows))
                if self.attention == "prefix":
                    cache = prefix.fork() if start + rows < s.n else prefix
                else:
                    cache = copy.deepcopy(prefix) if start + rows < s.n else prefix
                    cache.batch_repeat_interleave(len(group))
                found = self._decode([(0, i) for i in group], [(len(ids), base, ids)], first_idx, cache,
                                     first.expand(len(group), -1), None, None, s)
                done += [found[(0, i)] for i in group]
        return done

    @torch.inference_mode()
    def _sample_many(self, batch: list[list[int]], bases: list[int], first_idx: int,
                     s: SamplingSettings) -> list[list[Completion]]:
        """Several problems, samples first_idx..n-1 each, in one decode batch: left-padded prefill once."""
        width = max(map(len, batch))
        input_ids = torch.tensor([[self.pad] * (width - len(x)) + x for x in batch], device=self.device)
        mask = positions = None
        if any(len(x) < width for x in batch):
            mask = torch.tensor([[0] * (width - len(x)) + [1] * len(x) for x in batch], device=self.device)
            positions = (mask.cumsum(1) - 1).clamp_(min=0)
        with self._context(padded=mask is not None):
            out = self.model(input_ids, attention_mask=mask, position_ids=positions,
                             past_key_values=DynamicCache(config=self.model.config), use_cache=True,
                             logits_to_keep=1)
            cache, n, drawn = out.past_key_values, s.n - first_idx, range(first_idx, s.n)
            cache.batch_repeat_interleave(n)
            logits = out.logits[:, -1].repeat_interleave(n, dim=0)
            if mask is not None:
                mask = mask.repeat_interleave(n, dim=0)
                positions = torch.tensor([len(x) for x in batch], device=self.device).repeat_interleave(n)
            found = self._decode([(k, i) for k in range(len(batch)) for i in drawn],
                                 [(len(x), b, x) for x, b in zip(batch, bases)], first_idx, cache, logits, mask,
                                 positions, s)
        return [[found[(k, i)] for i in drawn] for k in range(len(batch))]

    def _decode(self, rows: list[tuple[int, int]], problems: list[tuple[int, int]], first_idx: int, cache,
                logits: torch.Tensor, mask: torch.Tensor | None, positions: torch.Tensor | None,
                s: SamplingSettings) -> dict[tuple[int, int], Completion]:
        """Decode ``rows`` ((problem, sample_idx) per batch row) from the first-step ``logits``;
        ``problems[k]`` = (prompt tokens, seed of sample 0, prompt ids) of problem k; sample i's seed
        is base + i.
        ``mask`` [rows, context] and ``positions`` [rows] (the next token's position) for padded
        batches, else None (the positions follow from the cache length)."""
        seeds = [problems[k][1] + i for k, i in rows]
        u = sampling.uniforms(seeds, s.max_tokens, self.device) if s.temperature != 0 else None
        tokens: list[list[int]] = [[] for _ in rows]
        logprob = [0.0] * len(rows)
        result: dict[tuple[int, int], Completion] = {}
        active = list(range(len(rows)))  # indices into ``rows`` of the batch rows still decoding
        penalties = sampling.Penalties.of(s, [problems[k][2] for k, _ in rows], logits.shape[-1], self.device)
        for step in range(s.max_tokens):
            drawn_from = logits if penalties is None else penalties.apply(logits, active)
            nxt = sampling.sample(drawn_from, None if u is None else u[active, step], s.temperature, s.top_k,
                                  s.top_p, s.min_p)
            if penalties is not None:
                penalties.add(nxt, active)
            lp = torch.log_softmax(logits.float(), dim=-1).gather(1, nxt[:, None]).squeeze(1)
            keep = []
            for row, (j, token, token_lp) in enumerate(zip(active, nxt.tolist(), lp.tolist())):
                tokens[j].append(token)
                logprob[j] += token_lp
                hit = self._stop_at(tokens[j], s.stop)
                if token in self.eos or hit >= 0 or len(tokens[j]) == s.max_tokens:
                    reason = "length" if token not in self.eos and hit < 0 else "stop"
                    text = self.tokenizer.decode(tokens[j], skip_special_tokens=True)
                    k, i = rows[j]
                    n_prompt = problems[k][0]
                    result[rows[j]] = Completion(i, seeds[j], text[:hit] if hit >= 0 else text, n_prompt,
                                                 len(tokens[j]), n_prompt if i > first_idx else 0, reason, logprob[j])
                else:
                    keep.append(row)
            if not keep:
                break
            if len(keep) < len(active):
                index = torch.tensor(keep, device=self.device)
                cache.batch_select_indices(index)
                nxt = nxt[index]
                active = [active[r] for r in keep]
                if mask is not None:
                    mask, positions = mask[index], positions[index]
            if mask is None:
                logits = self.model(nxt[:, None], past_key_values=cache, use_cache=True).logits[:, -1]
            else:
                mask = torch.cat([mask, mask.new_ones(len(active), 1)], dim=1)
                logits = self.model(nxt[:, None], attention_mask=mask, position_ids=positions[:, None],
                                    past_key_values=cache, use_cache=True).logits[:, -1]
                positions = positions + 1
        return result

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
                raise DataError(f"answer {answer!r} adds no tokens to its prompt")
            ids_t = torch.tensor([ids], device=self.device)
            hidden = self.model.model(input_ids=ids_t).last_hidden_state[0, n_prompt - 1:-1]
            logits = self.model.lm_head(hidden).float()
            nll = torch.nn.functional.cross_entropy(logits, ids_t[0, n_prompt:], reduction="sum")
            result.append((float(nll), len(ids) - n_prompt))
        return result

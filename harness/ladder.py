"""The micro-ladder: small Llama models trained here on the synthetic tasks' corpora.

Each rung is a `LlamaForCausalLM` of a given width and depth trained for exactly D tokens
(D = steps × batch × seq_len) with AdamW and a cosine schedule, saved as a normal HF folder with
its tokenizer, so both the hf and the vllm backends load it. The folder's ``t2_training.json``
records N (total and non-embedding parameters), D, the 6ND convention and the FLOPs measured by
``torch.utils.flop_counter.FlopCounterMode`` on one training step (× steps), the wall and CPU
times. :func:`matmul_peak_flops` measures the machine's float32 matmul rate, the ceiling that
training FLOPs per CPU-second are reported against. Everything is deterministic from the seed.
"""

from __future__ import annotations

import json
import math
import multiprocessing
import os
import shutil
import time
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass
from itertools import repeat
from pathlib import Path

import numpy as np
import torch

from harness.models import TRAINING_FILE
from harness.progress import progress_bar

SEQ_LEN = 64


@dataclass(frozen=True)
class Rung:
    """One model of the ladder: width, depth, training tokens D, attention heads, sequences per optimizer step
    (at the ladder's small D, the number of steps D/(batch·SEQ_LEN) limits what a model learns)
    and AdamW's peak learning rate."""

    d_model: int
    n_layers: int
    tokens: int
    n_heads: int = 4
    batch_size: int = 32
    lr: float = 3e-3

    @property
    def name(self) -> str:
        heads = f"-h{self.n_heads}" if self.n_heads != 4 else ""
        batch = f"-b{self.batch_size}" if self.batch_size != 32 else ""
        lr = f"-lr{self.lr:g}" if self.lr != 3e-3 else ""
        return f"d{self.d_model}-l{self.n_layers}{heads}-D{self.tokens}{batch}{lr}"


def matmul_peak_flops(size: int = 1024, repeats: int = 8, trials: int = 5) -> float:
    """FLOPs per CPU-second of a float32 ``size``×``size`` matmul (2·size³ FLOPs each) with torch's
    current thread count: the best of ``trials`` timings of ``repeats`` products. CPU time, not wall
    time, so other processes on a shared machine do not lower it (threads add their CPU time up)."""
    a, b = torch.randn(size, size), torch.randn(size, size)
    a @ b  # warm-up
    best = math.inf
    for _ in range(trials):
        start = time.process_time()
        for _ in range(repeats):
            a @ b
        best = min(best, time.process_time() - start)
    return 2.0 * size**3 * repeats / max(best, 1e-9)


def build_tokenizer(texts: Sequence[str], vocab_size: int, out: Path):
    """A byte-level BPE tokenizer trained on ``texts`` (exact round trip of any text, including
    newlines), saved into ``out`` as a transformers tokenizer."""
    from tokenizers import ByteLevelBPETokenizer
    from transformers import PreTrainedTokenizerFast

    bpe = ByteLevelBPETokenizer()
    bpe.train_from_iterator(texts, vocab_size=vocab_size, min_frequency=2,
                            special_tokens=["<|endoftext|>"], show_progress=False)
    tok = PreTrainedTokenizerFast(tokenizer_object=bpe._tokenizer, bos_token="<|endoftext|>",
                                  eos_token="<|endoftext|>", unk_token="<|endoftext|>",
                                  pad_token="<|endoftext|>")
    tok.save_pretrained(out)
    return tok


def llama_config(rung: Rung, vocab_size: int, eos_id: int):
    from transformers import LlamaConfig

    return LlamaConfig(
        vocab_size=vocab_size, hidden_size=rung.d_model, intermediate_size=int(8 * rung.d_model / 3) // 8 * 8,
        num_hidden_layers=rung.n_layers, num_attention_heads=rung.n_heads,
        num_key_value_heads=rung.n_heads, max_position_embeddings=4 * SEQ_LEN,
        tie_word_embeddings=True, bos_token_id=eos_id, eos_token_id=eos_id, pad_token_id=eos_id,
        torch_dtype="float32",
    )


def encode_corpus(texts: Sequence[str], tokenizer) -> np.ndarray:
    """All documents' token ids, each followed by EOS, as one int32 stream."""
    ids = tokenizer(list(texts), add_special_tokens=False)["input_ids"]
    eos = tokenizer.eos_token_id
    return np.fromiter((t for doc in ids for t in (*doc, eos)), dtype=np.int32)


def train(rung: Rung, stream: np.ndarray, tokenizer, out: Path, seed: int = 0, device: str = "cpu") -> dict:
    """Train one rung on random SEQ_LEN windows of ``stream`` (``rung.batch_size`` per step) for
    exactly ``rung.tokens`` tokens (rounded up to whole steps; AdamW at peak ``rung.lr``, linear
    warmup over 5% of the steps, cosine decay to 0),
    save it to ``out`` (atomically: a temporary folder renamed at the end) and return its
    training record. A folder that already has a record is reused, not retrained."""
    from torch.utils.flop_counter import FlopCounterMode
    from transformers import LlamaForCausalLM

    from .cost import param_counts

    if (out / TRAINING_FILE).exists():
        return json.loads((out / TRAINING_FILE).read_text())
    torch.manual_seed(seed)
    config = llama_config(rung, len(tokenizer), tokenizer.eos_token_id)
    model = LlamaForCausalLM(config).to(device)
    batch_size = rung.batch_size
    tokens_per_step = batch_size * SEQ_LEN
    steps = max(1, math.ceil(rung.tokens / tokens_per_step))
    opt = torch.optim.AdamW(model.parameters(), lr=rung.lr, betas=(0.9, 0.95), weight_decay=0.1)
    warmup = max(1, steps // 20)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: min(1.0, (s + 1) / warmup) * 0.5 * (1 + math.cos(math.pi * min(s, steps) / steps)))
    rng = np.random.default_rng(seed)
    data = torch.from_numpy(stream.astype(np.int64))
    step_flops = 0.0
    start, cpu_start = time.perf_counter(), time.process_time()
    model.train()
    for step in progress_bar(range(steps), desc=f"train {rung.name}", leave=False):
        starts = torch.from_numpy(rng.integers(0, len(data) - SEQ_LEN - 1, size=batch_size))
        batch = data[starts[:, None] + torch.arange(SEQ_LEN + 1)].to(device)
        if step == 0:  # measure one step's FLOPs (forward + backward)
            with FlopCounterMode(display=False) as counter:
                loss = model(input_ids=batch[:, :-1], labels=batch[:, :-1]).loss
                loss.backward()
            step_flops = float(counter.get_total_flops())
        else:
            loss = model(input_ids=batch[:, :-1], labels=batch[:, :-1]).loss
            loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        sched.step()
        opt.zero_grad(set_to_none=True)
    wall, cpu = time.perf_counter() - start, time.process_time() - cpu_start
    counts = param_counts(config)
    record = {
        "rung": asdict(rung), "seed": seed, "steps": steps, "batch_size": batch_size, "seq_len": SEQ_LEN,
        "params_total": counts["total"], "params_non_embedding": counts["non_embedding"],
        "tokens_trained": steps * tokens_per_step,
        "training_flops_6nd": 6.0 * counts["non_embedding"] * steps * tokens_per_step,
        "training_flops_measured": step_flops * steps, "final_loss": float(loss.item()), "wall_s": wall,
        "cpu_s": cpu,
    }
    tmp = out.with_name(out.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    model.save_pretrained(tmp, safe_serialization=True)
    tokenizer.save_pretrained(tmp)
    (tmp / TRAINING_FILE).write_text(json.dumps(record, indent=2) + "\n")
    shutil.rmtree(out, ignore_errors=True)
    os.replace(tmp, out)
    return record


def train_many(jobs: Sequence[tuple[Rung, Path]], stream: np.ndarray, tokenizer, seed: int = 0,
               device: str = "cpu", workers: int | None = None) -> None:
    """:func:`train` every (rung, folder) of ``jobs`` whose folder has no record yet, the largest
    (d_model² · tokens) first, in ``workers`` spawned processes (default: the CPUs this process may
    use), each running torch on one thread: a micro-model does not use a second thread, so rungs side
    by side fill the cores. Each rung is seeded on its own, so the models equal those trained one
    after another. On CUDA, or with one worker or one job, in this process."""
    todo = sorted([(r, out) for r, out in jobs if not (out / TRAINING_FILE).exists()],
                  key=lambda job: -job[0].d_model ** 2 * job[0].tokens)
    workers = min(workers or len(os.sched_getaffinity(0)), len(todo))
    if device != "cpu" or workers <= 1:
        for rung, out in todo:
            train(rung, stream, tokenizer, out, seed, device)
        return
    with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn"),
                             initializer=torch.set_num_threads, initargs=(1,)) as pool:
        rungs, outs = zip(*todo)
        list(pool.map(train, rungs, repeat(stream), repeat(tokenizer), outs, repeat(seed), repeat(device)))

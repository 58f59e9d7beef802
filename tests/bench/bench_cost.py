"""Benchmark: metering a sampling run with harness.cost.sampling_cost (closed forms, numpy) against
a reference that loops over completions and sums forward_flops over each one's fed tokens
(an arange of contexts per completion), on a SmolLM2-135M config.

Run by hand: python tests/bench/bench_cost.py  (writes results/bench/cost.md)
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
from transformers import AutoConfig

from harness.cost import forward_flops, model_shape, sampling_cost

CONFIG = AutoConfig.for_model("llama", hidden_size=576, intermediate_size=1536, num_hidden_layers=30,
                              num_attention_heads=9, num_key_value_heads=3, vocab_size=49152,
                              tie_word_embeddings=True)  # SmolLM2-135M


def reference_total(prompts: np.ndarray, completions: np.ndarray) -> float:
    """Prompt shared: Σ_problems Σ_{c<P} forward(c) - (P-1)·head + Σ_samples Σ_{c=P}^{P+T-2} forward(c)."""
    head = 2.0 * model_shape(CONFIG).head_params
    total = 0.0
    for p, row in zip(prompts, completions):
        total += forward_flops(CONFIG, np.arange(p)).sum() - (p - 1) * head
        for t in row:
            total += forward_flops(CONFIG, np.arange(p, p + t - 1)).sum()
    return total


def timed(fn, *args):
    start = time.perf_counter()
    out = fn(*args)
    return out, time.perf_counter() - start


def main() -> None:
    rng = np.random.default_rng(0)
    rows = []
    for problems, n, ref in ((100, 100, True), (1000, 1000, False)):
        prompts = rng.integers(64, 512, size=problems)
        completions = rng.integers(1, 256, size=(problems, n))
        cost, fast = timed(sampling_cost, CONFIG, prompts.tolist(), completions.tolist())
        if ref:
            total, slow = timed(reference_total, prompts, completions)
            rel = abs(cost["total_flops"] - total) / total
            rows.append((problems * n, f"{slow:.3f}", f"{fast:.4f}", f"{slow / fast:.0f}x", f"{rel:.1e}"))
        else:
            rows.append((problems * n, "not run (too slow)", f"{fast:.4f}", "", ""))
    lines = ["| completions | per-completion loop (s) | sampling_cost (s) | speed-up | rel. difference |",
             "|---:|---:|---:|---:|---:|"] + ["| " + " | ".join(map(str, r)) + " |" for r in rows]
    table = "\n".join(lines)
    print(table)
    out = Path(__file__).resolve().parents[2] / "results" / "bench" / "cost.md"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text("# sampling_cost vs per-token loop (SmolLM2-135M config, CPU)\n\n" + table + "\n")


if __name__ == "__main__":
    main()

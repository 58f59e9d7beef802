"""Benchmark: the hf backend's seeded sampler (harness.kernels.sampling: inverse CDF on one Philox
uniform per row and step) against Gumbel-max on Philox noise for every vocabulary entry (the
batch-invariant sampler the project had before, kept here as the baseline), per decode step on CPU.

Both draw from the same filtered softmax and are keyed by (seed, step), so both are
batch-invariant given equal logits; Gumbel-max needs B·V Philox evaluations per step, inverse CDF B.
Shapes: the micro-ladder's vocabulary (384) and SmolLM2's (49,152), 8 and 64 rows, T = 1.

Run by hand: OMP_NUM_THREADS=1 python tests/bench/bench_sampling.py  (writes results/bench/sampling.md)
"""

from __future__ import annotations

import time
from pathlib import Path

import torch
from harness.kernels import sampling

REPO = Path(__file__).resolve().parents[2]


def gumbel_max(logits: torch.Tensor, seeds: torch.Tensor, step: int) -> torch.Tensor:
    """argmax_v z_v − log(−log u_v), u_v from Philox keyed by (seed, step, token v) for every v."""
    token = torch.arange(logits.shape[-1], dtype=torch.int64)[None, :]
    zero = torch.zeros_like(token)
    x = sampling.philox4x32(token, zero + step, zero, zero, seeds[:, None] & 0xFFFFFFFF, seeds[:, None] >> 32)[0]
    u = ((x >> 9).float() + 0.5) * 2.0**-23
    return (logits.float() - torch.log(-torch.log(u))).argmax(dim=-1)


def best_ms(fn, repeats: int = 5) -> float:
    fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return 1e3 * min(times)


def main() -> None:
    torch.set_num_threads(1)
    rows = []
    for vocab, batch in ((384, 8), (384, 64), (49152, 8), (49152, 64)):
        logits = torch.randn(batch, vocab, generator=torch.Generator().manual_seed(0)) * 3
        seeds = list(range(1000, 1000 + batch))
        ours = best_ms(lambda: sampling.sample(logits, sampling.uniforms(seeds, 1)[:, 0]))
        base = best_ms(lambda: gumbel_max(logits, torch.tensor(seeds), 0))
        rows.append(f"| {vocab} | {batch} | {base:.2f} | {ours:.3f} | {base / ours:.1f}× |")
        print(rows[-1], flush=True)
    table = ["# Seeded sampler per decode step (CPU, one thread)", "",
             "Gumbel-max on Philox noise per vocabulary entry (baseline) vs the hf backend's inverse CDF on "
             "one Philox uniform per row (ours, uniforms computed per call here; the backend computes a "
             "decode batch's uniforms once). Best of 5, milliseconds per step.", "",
             "| vocab | rows | Gumbel-max ms | ours ms | ours faster by |", "|---|---|---|---|---|", *rows, ""]
    out = REPO / "results" / "bench" / "sampling.md"
    out.write_text("\n".join(table))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()

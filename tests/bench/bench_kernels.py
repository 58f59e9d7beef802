"""Benchmark: shared-prefix decode attention vs SDPA over the expanded KV cache (GPU).

    python tests/bench/bench_kernels.py                      # on a CUDA machine: results/bench/kernels.md
    python tests/bench/bench_kernels.py --model PATH_OR_ID   # adds end-to-end tokens/s of the hf backend
    python tests/bench/bench_kernels.py --dry-run            # CPU: tiny shapes, checks the code path only

1. Memory bandwidth B from a large device-to-device copy (read + write bytes / time).
2. The floor per configuration: the KV bytes one decode step must read at least once (the prefix
   KV once + every sample's suffix KV), over B. Attention times are reported as multiples of it.
3. Decode attention for prefix lengths 1K-16K and n = 16-1024 (Llama-like 32 heads / 8 KV heads /
   d 128, bf16, suffix length --suffix): ours (Triton) vs SDPA (enable_gqa) over the expanded
   cache, which holds the prefix n times; configurations whose expanded cache does not fit are
   skipped and marked. Memory: KV bytes ours vs expanded.
4. With --model: end-to-end tokens/s of the hf backend (``harness.samplers.hf``, one prompt of
   --e2e-prompt tokens, n samples) with ``attention="prefix"`` (shared prefix, these kernels) vs
   "stock" (the model's attention over a DynamicCache holding the prompt n times).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))  # run from a checkout without installing

from harness.kernels import prefix_attention  # noqa: E402

from harness.samplers import SamplingSettings  # noqa: E402
from harness.samplers.hf import HFBackend  # noqa: E402


def timeit(fn, device: torch.device) -> float:
    """Median seconds per call (triton.testing.do_bench on CUDA, a wall-clock loop on CPU)."""
    if device.type == "cuda":
        import triton.testing

        return triton.testing.do_bench(fn, warmup=25, rep=100, return_mode="median") / 1e3
    fn()
    times = []
    for _ in range(3):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return sorted(times)[1]


def bandwidth(device: torch.device, nbytes: int) -> float:
    """Bytes/s of a device-to-device copy, counting the read and the write."""
    x = torch.empty(nbytes, dtype=torch.uint8, device=device)
    y = torch.empty_like(x)
    return 2 * nbytes / timeit(lambda: y.copy_(x), device)


def attention_rows(args, device: torch.device, dtype: torch.dtype, bw: float) -> list[list[str]]:
    heads, kv_heads, d, s = args.heads, args.kv_heads, args.head_dim, args.suffix
    item = torch.tensor([], dtype=dtype).element_size()
    free = torch.cuda.mem_get_info(device)[0] if device.type == "cuda" else 8 << 30
    rows = []
    for p in args.prefix_lens:
        for n in args.ns:
            ours_bytes = 2 * (p + n * s) * kv_heads * d * item  # K and V: prefix once, suffix per sample
            expanded_bytes = 2 * n * (p + s) * kv_heads * d * item
            floor = ours_bytes / bw
            g = torch.Generator(device=device).manual_seed(0)
            shapes = [(n, heads, d), (p, kv_heads, d), (p, kv_heads, d), (n, s, kv_heads, d), (n, s, kv_heads, d)]
            q, pk, pv, sk, sv = (torch.randn(*shape, device=device, dtype=dtype, generator=g) for shape in shapes)
            t_ours = timeit(lambda: prefix_attention.shared_prefix_attention(q, pk, pv, sk, sv), device)
            row = [f"{p}", f"{n}", f"{floor * 1e6:.1f}", f"{t_ours * 1e6:.1f}", f"{t_ours / floor:.2f}"]
            if 2.2 * expanded_bytes > free:  # the cache plus SDPA's working set must fit
                row += ["skipped: expanded cache does not fit", "–"]
            else:
                k = torch.cat([pk[None].expand(n, -1, -1, -1), sk], 1).transpose(1, 2).contiguous()
                v = torch.cat([pv[None].expand(n, -1, -1, -1), sv], 1).transpose(1, 2).contiguous()
                q4 = q[:, :, None]
                t_sdpa = timeit(lambda: F.scaled_dot_product_attention(q4, k, v, enable_gqa=True), device)
                want = F.scaled_dot_product_attention(q4, k, v, enable_gqa=True)[:, :, 0].float()
                got = prefix_attention.shared_prefix_attention(q, pk, pv, sk, sv)[0].float()
                err = ((got - want).abs().max() / want.abs().max()).item()
                row += [f"{t_sdpa * 1e6:.1f}", f"{t_sdpa / t_ours:.2f}× (rel err {err:.1e})"]
                del k, v
            row += [f"{ours_bytes / 2**20:.1f}", f"{expanded_bytes / 2**20:.1f}", f"{expanded_bytes / ours_bytes:.1f}×"]
            rows.append(row)
            print(" | ".join(row), flush=True)
            q = pk = pv = sk = sv = None  # free before the next size allocates
            if device.type == "cuda":
                torch.cuda.empty_cache()
    return rows


def end_to_end_rows(args, device: torch.device, dtype: str) -> list[list[str]]:
    """Generated tokens/s of the hf backend, stock vs prefix attention, per n (EOS ends samples
    early, so tokens are counted, not assumed)."""
    backend = HFBackend(args.model, device=device.type, dtype=dtype)
    prompt = " ".join(["the quick brown fox jumps over the lazy dog"] * (args.e2e_prompt // 9 + 1))
    prompt = backend.tokenizer.decode(backend.encode(prompt)[: args.e2e_prompt])
    rows = []
    for n in args.e2e_ns:
        settings = SamplingSettings(n=n, max_tokens=args.e2e_tokens, seed=0)
        result = []
        for attention in ("stock", "prefix"):
            backend.attention = attention
            try:
                backend.sample([prompt], settings)  # warm-up (Triton compilation)
                if device.type == "cuda":
                    torch.cuda.synchronize()
                start = time.perf_counter()
                done = backend.sample([prompt], settings)[0]
                if device.type == "cuda":
                    torch.cuda.synchronize()
                result.append(sum(c.completion_tokens for c in done) / (time.perf_counter() - start))
            except torch.cuda.OutOfMemoryError:
                result.append(None)
                torch.cuda.empty_cache()
        stock, ours = result
        fmt = lambda x: "out of memory" if x is None else f"{x:.0f}"
        ratio = f"{ours / stock:.2f}×" if stock and ours else "–"
        rows.append([f"{args.e2e_prompt}", f"{n}", f"{args.e2e_tokens}", fmt(stock), fmt(ours), ratio])
        print(" | ".join(rows[-1]), flush=True)
    backend.close()
    return rows


def table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return "\n".join(lines + ["| " + " | ".join(r) + " |" for r in rows])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dry-run", action="store_true", help="tiny shapes on CPU (torch reference), checks the code path")
    ap.add_argument("--prefix-lens", type=int, nargs="+", default=[1024, 2048, 4096, 8192, 16384])
    ap.add_argument("--ns", type=int, nargs="+", default=[16, 64, 256, 1024])
    ap.add_argument("--suffix", type=int, default=128, help="tokens generated so far by each sample")
    ap.add_argument("--heads", type=int, default=32)
    ap.add_argument("--kv-heads", type=int, default=8)
    ap.add_argument("--head-dim", type=int, default=128)
    ap.add_argument("--model", help="--model spec of t2 sample (smollm2-135m, an HF id or a local folder) for the "
                    "end-to-end rows (omit to skip them; --dry-run uses smollm2-135m)")
    ap.add_argument("--e2e-prompt", type=int, default=2048)
    ap.add_argument("--e2e-ns", type=int, nargs="+", default=[16, 64, 256])
    ap.add_argument("--e2e-tokens", type=int, default=128)
    ap.add_argument("--out", type=Path, default=REPO / "results" / "bench" / "kernels.md")
    args = ap.parse_args()

    if args.dry_run:
        device, dtype = torch.device("cpu"), torch.float32
        args.prefix_lens, args.ns, args.suffix = [64, 100], [2, 4], 3
        args.heads, args.kv_heads, args.head_dim = 4, 2, 32
        args.e2e_prompt, args.e2e_ns, args.e2e_tokens = 16, [2], 4
        args.model = args.model or "smollm2-135m"
    elif not torch.cuda.is_available():
        sys.exit("bench_kernels.py measures GPU kernels and needs a CUDA device; none found. "
                 "Use --dry-run to check the code path on CPU.")
    else:
        device, dtype = torch.device("cuda"), torch.bfloat16

    bw = bandwidth(device, (1 << 20) if args.dry_run else (2 << 30))
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU (dry run)"
    print(f"device: {name}; copy bandwidth {bw / 1e9:.1f} GB/s")
    header = ["prefix", "n", "floor µs", "ours µs", "ours / floor", "SDPA expanded µs", "SDPA / ours",
              "KV MiB ours", "KV MiB expanded", "memory saved"]
    rows = attention_rows(args, device, dtype, bw)
    report = [
        "# Shared-prefix decode attention (harness.kernels)", "",
        f"Device: {name}. Measured copy bandwidth: {bw / 1e9:.1f} GB/s. "
        f"{args.heads} heads / {args.kv_heads} KV heads / head dim {args.head_dim}, {str(dtype).split('.')[-1]}, "
        f"suffix {args.suffix} tokens per sample. Floor = (prefix KV once + all suffix KV) bytes / bandwidth. "
        "SDPA runs `scaled_dot_product_attention(enable_gqa=True)` over the expanded cache (prefix copied per sample).",
        "", table(header, rows), "",
    ]
    if args.model:
        e2e = end_to_end_rows(args, device, str(dtype).split(".")[-1])
        report += ["## End to end: hf backend tokens/s, `attention=\"stock\"` vs `\"prefix\"`", "",
                   f"Model: {args.model}; sampling at T = 1, one prompt, generated tokens (EOS included) per second.", "",
                   table(["prompt", "n", "max new tokens", "stock (expanded cache) tok/s", "shared prefix tok/s",
                          "speedup"], e2e), ""]
    text = "\n".join(report)
    if args.dry_run:
        print(text)
        print("dry run: nothing written")
        return
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()

"""Benchmark: the hf backend (one prefill per prompt, KV cache repeated to the n samples) vs plain
``model.generate(do_sample=True, num_return_sequences=n)`` per problem (prefills the prompt n times).

SmolLM2-135M-Instruct on CPU, GSM8K test problems, n samples × up to T new tokens at temperature 1
(no stop strings; both stop a sample at EOS). Each side runs in its own process so its peak RSS is
its own. Prints tokens/s of both and their ratio; writes results/bench/hf_sampler.md.

    python tests/bench/bench_hf_sampler.py --problems 32 -n 64 --max-tokens 128
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "tests"))


def prompts(count: int) -> list[str]:
    from conftest import shared_dir

    lines = (shared_dir() / "data" / "gsm8k" / "test.jsonl").read_text().splitlines()[:count]
    return [f"Question: {json.loads(line)['question']}\nAnswer:" for line in lines]


def run_side(side: str, count: int, n: int, max_tokens: int, threads: int, attention: str = "stock") -> dict:
    import torch

    from harness.samplers import SamplingSettings
    from harness.samplers.hf import HFBackend

    torch.set_num_threads(threads)
    backend = HFBackend("smollm2-135m", device="cpu", attention=attention)
    model, tok = backend.model, backend.tokenizer
    eos = backend.eos
    texts = prompts(count)
    tokens = 0
    t0 = time.perf_counter()
    if side == "ours":
        out = backend.sample(texts, SamplingSettings(n=n, max_tokens=max_tokens, seed=0))  # one call: batched
        tokens += sum(c.completion_tokens for cs in out for c in cs)
    else:
        torch.manual_seed(0)
        with torch.inference_mode():
            for prompt in texts:
                ids = tok(prompt, return_tensors="pt").input_ids
                out = model.generate(ids, do_sample=True, num_return_sequences=n, max_new_tokens=max_tokens,
                                     temperature=1.0, top_p=1.0, top_k=0, pad_token_id=tok.pad_token_id)
                for row in out[:, ids.shape[1]:].tolist():  # tokens up to and including the first EOS
                    tokens += next((i + 1 for i, t in enumerate(row) if t in eos), len(row))
    seconds = time.perf_counter() - t0
    return {"side": side, "tokens": tokens, "seconds": seconds,
            "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--problems", type=int, default=32)
    parser.add_argument("-n", type=int, default=64)
    parser.add_argument("--max-tokens", type=int, default=128)
    parser.add_argument("--threads", type=int, default=1, help="torch threads per side")
    parser.add_argument("--side", choices=["ours", "generate"], default=None, help=argparse.SUPPRESS)
    parser.add_argument("--out", default=str(REPO / "results" / "bench" / "hf_sampler.md"))
    args = parser.parse_args()
    if args.side:
        print(json.dumps(run_side(args.side, args.problems, args.n, args.max_tokens, args.threads)))
        return
    results = {}
    for side in ("generate", "ours"):
        cmd = [sys.executable, __file__, "--side", side, "--problems", str(args.problems), "-n", str(args.n),
               "--max-tokens", str(args.max_tokens), "--threads", str(args.threads)]
        env = {**os.environ, "OMP_NUM_THREADS": str(args.threads), "TOKENIZERS_PARALLELISM": "false"}
        proc = subprocess.run(cmd, env=env, capture_output=True, text=True, check=True)
        results[side] = json.loads(proc.stdout.strip().splitlines()[-1])
        r = results[side]
        print(f"{side}: {r['tokens']} tokens in {r['seconds']:.1f} s = {r['tokens'] / r['seconds']:.1f} tok/s, "
              f"peak RSS {r['peak_rss_mib']:.0f} MiB", flush=True)
    base, ours = results["generate"], results["ours"]
    speedup = (ours["tokens"] / ours["seconds"]) / (base["tokens"] / base["seconds"])
    print(f"tokens/s ratio ours/generate = {speedup:.2f}x")
    rows = [f"| {name} | {r['tokens']} | {r['seconds']:.1f} | {r['tokens'] / r['seconds']:.1f} | "
            f"{r['peak_rss_mib']:.0f} |" for name, r in (("model.generate(num_return_sequences=n)", base),
                                                         ("hf backend (prefill once)", ours))]
    table = "\n".join([
        "# hf sampler vs model.generate", "",
        f"SmolLM2-135M-Instruct (float32) on CPU, {args.threads} torch thread(s), GSM8K test problems "
        f"0..{args.problems - 1}, n = {args.n} samples × up to {args.max_tokens} new tokens, temperature 1, "
        "no stop strings (EOS ends a sample). Each side in its own process; tokens counted up to and "
        "including EOS.", "",
        "| sampler | tokens | seconds | tokens/s | peak RSS (MiB) |", "|---|---:|---:|---:|---:|", *rows, "",
        f"tokens/s ratio (hf backend / generate): **{speedup:.2f}×**", "",
        f"Command: `python tests/bench/bench_hf_sampler.py --problems {args.problems} -n {args.n} "
        f"--max-tokens {args.max_tokens} --threads {args.threads}`", ""])
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(table)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()

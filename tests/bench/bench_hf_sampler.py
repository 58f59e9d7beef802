"""Benchmark: the hf backend (one prefill per prompt, KV cache repeated to the n samples) vs plain
``model.generate(do_sample=True, num_return_sequences=n)`` per problem (prefills the prompt n times).

SmolLM2-135M-Instruct on CPU, GSM8K test problems, n samples × up to T new tokens at temperature 1
(no stop strings; both stop a sample at EOS). Each side runs in its own process so its peak RSS is
its own. Prints tokens/s of both and their ratio; writes results/bench/hf_sampler.md.

    python tests/bench/bench_hf_sampler.py --problems 32 -n 64 --max-tokens 128

``--batching tiny|smollm2`` measures instead what packing several problems into one decode batch
(left-padded prefill, the default) gains over one problem per decode batch (``max_batch = n``), in
one process, best of ``--repeats`` alternating runs: ``tiny`` is a random LlamaForCausalLM (hidden
32, 2 layers, vocab 384; micro-ladder size) on the synthetic tasks' prompts, ``smollm2`` is
SmolLM2-135M on GSM8K. It rewrites the "## Batching" section of the output file.

    python tests/bench/bench_hf_sampler.py --batching tiny --problems 64 -n 64 --max-tokens 6
    python tests/bench/bench_hf_sampler.py --batching smollm2 --problems 8 -n 16 --max-tokens 32
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


def tiny_model(folder: Path) -> str:
    """A random LlamaForCausalLM (hidden 32, 2 layers, 4 heads / 2 KV heads, vocab 384) with a
    byte-level BPE tokenizer trained on GSM8K questions, saved into ``folder``."""
    import torch
    from conftest import shared_dir
    from tokenizers import ByteLevelBPETokenizer
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    lines = (shared_dir() / "data" / "gsm8k" / "test.jsonl").read_text().splitlines()[:300]
    bpe = ByteLevelBPETokenizer()
    bpe.train_from_iterator([json.loads(line)["question"] for line in lines], vocab_size=384, min_frequency=2,
                            special_tokens=["<|endoftext|>"], show_progress=False)
    eos = "<|endoftext|>"
    PreTrainedTokenizerFast(tokenizer_object=bpe._tokenizer, bos_token=eos, eos_token=eos, unk_token=eos,
                            pad_token=eos).save_pretrained(folder)
    torch.manual_seed(0)
    LlamaForCausalLM(LlamaConfig(vocab_size=384, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                                 num_attention_heads=4, num_key_value_heads=2, bos_token_id=0, eos_token_id=0,
                                 pad_token_id=0, max_position_embeddings=512)).save_pretrained(folder)
    return str(folder)


def batching(which: str, count: int, n: int, max_tokens: int, threads: int, repeats: int, out: Path) -> None:
    import tempfile

    import torch

    from harness.samplers import SamplingSettings
    from harness.samplers.hf import HFBackend

    torch.set_num_threads(threads)
    with tempfile.TemporaryDirectory() as tmp:
        if which == "tiny":
            from harness.tasks import get_task

            names = ("knowledge", "arithmetic", "causal", "spatial")
            texts = [p.prompt for name in names for p in get_task(name, n=-(-count // 4), seed=0).problems()][:count]
            backend = HFBackend(tiny_model(Path(tmp)), device="cpu")
            label = "random LlamaForCausalLM (hidden 32, 2 layers, vocab 384), synthetic-task prompts"
        else:
            texts = prompts(count)
            backend = HFBackend("smollm2-135m", device="cpu")
            label = "SmolLM2-135M-Instruct (float32), GSM8K test prompts"
    settings = SamplingSettings(n=n, max_tokens=max_tokens, seed=0)
    lengths = [len(backend.encode(t)) for t in texts]
    best = {"one problem per decode batch (max_batch = n)": float("inf"), "problems batched (default)": float("inf")}
    outputs = {}
    backend.sample(texts[:2], settings)  # warm-up
    for _ in range(repeats):
        for name, max_batch in zip(best, (n, None)):
            backend.max_batch = max_batch
            t0 = time.perf_counter()
            result = backend.sample(texts, settings)
            best[name] = min(best[name], time.perf_counter() - t0)
            outputs[name] = [[c.text for c in cs] for cs in result]
    tokens = sum(c.completion_tokens for cs in result for c in cs)
    a, b = best.values()
    same = sum(x == y for xs, ys in zip(*outputs.values()) for x, y in zip(xs, ys))
    load = os.getloadavg()
    print(f"{which}: one-at-a-time {a:.2f} s, batched {b:.2f} s -> {a / b:.2f}x; identical texts {same}/{count * n}")
    rows = [f"| {name} | {tokens} | {t:.2f} | {tokens / t:.0f} |" for name, t in best.items()]
    section = "\n".join([
        f"### {label}", "",
        f"{count} prompts ({min(lengths)}–{max(lengths)} tokens) × n = {n} × up to {max_tokens} new tokens, "
        f"temperature 1, {threads} torch thread(s), best of {repeats}; load average at the end "
        f"{load[0]:.1f} / {load[1]:.1f} / {load[2]:.1f} (1/5/15 min). Identical completions between the two: "
        f"{same} of {count * n}.", "",
        "| decode batches | tokens | seconds | tokens/s |", "|---|---:|---:|---:|", *rows, "",
        f"Speed-up from batching problems: **{a / b:.2f}×**. Command: `python tests/bench/bench_hf_sampler.py "
        f"--batching {which} --problems {count} -n {n} --max-tokens {max_tokens} --repeats {repeats}`", ""])
    text = out.read_text() if out.exists() else ""
    head, marker, rest = text.partition("## Batching problems together")
    parts = {}
    for chunk in rest.split("\n### ")[1:]:
        parts[chunk.split("\n", 1)[0]] = "### " + chunk.rstrip() + "\n"
    parts[label] = section
    out.write_text(head.rstrip() + "\n\n## Batching problems together\n\n" + "\n".join(parts.values()))
    print(f"wrote {out}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--problems", type=int, default=32)
    parser.add_argument("-n", type=int, default=64)
    parser.add_argument("--max-tokens", type=int, default=128)
    parser.add_argument("--threads", type=int, default=1, help="torch threads per side")
    parser.add_argument("--batching", choices=["tiny", "smollm2"], default=None,
                        help="measure batching problems together instead (see above)")
    parser.add_argument("--repeats", type=int, default=3, help="--batching: best of this many runs")
    parser.add_argument("--side", choices=["ours", "generate"], default=None, help=argparse.SUPPRESS)
    parser.add_argument("--out", default=str(REPO / "results" / "bench" / "hf_sampler.md"))
    args = parser.parse_args()
    if args.batching:
        batching(args.batching, args.problems, args.n, args.max_tokens, args.threads, args.repeats, Path(args.out))
        return
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
        f"including EOS. CPUs this ran on: {sorted(os.sched_getaffinity(0))}; load average at the end "
        + " / ".join(f"{x:.1f}" for x in os.getloadavg()) + " (1/5/15 min).", "",
        "| sampler | tokens | seconds | tokens/s | peak RSS (MiB) |", "|---|---:|---:|---:|---:|", *rows, "",
        f"tokens/s ratio (hf backend / generate): **{speedup:.2f}×**", "",
        f"Command: `python tests/bench/bench_hf_sampler.py --problems {args.problems} -n {args.n} "
        f"--max-tokens {args.max_tokens} --threads {args.threads}`", ""])
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    old = Path(args.out).read_text() if Path(args.out).exists() else ""
    marker = "## Batching problems together"
    Path(args.out).write_text(table + (f"\n{marker}{old.partition(marker)[2]}" if marker in old else ""))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()

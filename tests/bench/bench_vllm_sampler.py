"""vLLM backend throughput: one request per problem with n samples vs n duplicated single-sample
requests per problem (what lm-eval's ``repeats`` sends), on the same engine, in the same run.

Both arms draw the same completions (duplicate i of a problem carries seed base+i, as child i of
our n-request does), so they generate the same tokens; the prefix cache is reset before every
timed run, and the arms alternate. Peak memory = the largest sum of RSS over this process and its
children (the vLLM engine) sampled every 50 ms during an arm (pages shared between processes
count once per process).

    python tests/bench/bench_vllm_sampler.py                      # 32 problems x n=64 x 128 tokens
    python tests/bench/bench_vllm_sampler.py --problems 8 -n 16   # a smaller run
"""

from __future__ import annotations

import argparse
import os
import threading
import time
from pathlib import Path

import psutil
from harness.tasks.gsm8k import GSM8K

from harness.samplers import SamplingSettings

OUT = Path(__file__).resolve().parents[2] / "results" / "bench" / "vllm_sampler.md"


def tree_rss() -> int:
    """Bytes of resident memory of this process and all its children."""
    total = 0
    for p in [psutil.Process(), *psutil.Process().children(recursive=True)]:
        try:
            total += p.memory_info().rss
        except psutil.NoSuchProcess:
            pass
    return total


def measure(fn) -> tuple[float, int, object]:
    """(seconds, peak tree RSS in bytes, result) of ``fn()``."""
    peak, done = [tree_rss()], threading.Event()

    def poll():
        while not done.wait(0.05):
            peak[0] = max(peak[0], tree_rss())

    thread = threading.Thread(target=poll)
    thread.start()
    start = time.perf_counter()
    result = fn()
    seconds = time.perf_counter() - start
    done.set()
    thread.join()
    return seconds, max(peak[0], tree_rss()), result


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--problems", type=int, default=32)
    ap.add_argument("-n", type=int, default=64)
    ap.add_argument("--max-tokens", type=int, default=128)
    ap.add_argument("--num-fewshot", type=int, default=0, help="GSM8K train examples before each prompt")
    ap.add_argument("--repeats", type=int, default=1, help="timed runs per arm (alternating)")
    ap.add_argument("--model", default="smollm2-135m")
    args = ap.parse_args()

    os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "4")
    from vllm import SamplingParams

    from harness.samplers.vllm import VLLMBackend

    problems = GSM8K(num_fewshot=args.num_fewshot, limit=args.problems).problems()
    prompts = [p.prompt for p in problems]
    settings = SamplingSettings(n=args.n, temperature=1.0, max_tokens=args.max_tokens, seed=0,
                                stop=tuple(GSM8K.stop))
    backend = VLLMBackend(args.model, max_model_len=2048)
    llm = backend.llm

    def run_ours():
        out = backend.sample(prompts, settings)
        return [[c.text for c in cs] for cs in out], sum(c.completion_tokens for cs in out for c in cs)

    def run_repeats():
        dup_prompts = [p for p in prompts for _ in range(args.n)]
        dup_params = [SamplingParams(n=1, seed=settings.seed + i, temperature=settings.temperature,
                                     max_tokens=settings.max_tokens, stop=list(settings.stop), logprobs=0)
                      for _ in prompts for i in range(args.n)]
        out = llm.generate(dup_prompts, dup_params, use_tqdm=False)
        texts = [[out[j * args.n + i].outputs[0].text for i in range(args.n)] for j in range(len(prompts))]
        return texts, sum(len(o.outputs[0].token_ids) for o in out)

    backend.sample(prompts[:2], SamplingSettings(n=4, max_tokens=8))  # warm-up
    arms = {"ours: 1 request x n per problem": run_ours, "lm-eval repeats: n requests x 1": run_repeats}
    results: dict[str, list[tuple[float, int, int]]] = {name: [] for name in arms}
    texts = {}
    for _ in range(args.repeats):
        for name, fn in arms.items():
            llm.reset_prefix_cache()
            seconds, peak, (text, tokens) = measure(fn)
            results[name].append((seconds, peak, tokens))
            texts[name] = text
            print(f"{name}: {tokens} tokens in {seconds:.1f} s = {tokens / seconds:.1f} tok/s, "
                  f"peak RSS {peak / 2**30:.2f} GiB", flush=True)
    info = backend.model_info()
    backend.close()
    names = list(arms)

    same = texts[names[0]] == texts[names[1]]
    load = " / ".join(f"{x:.1f}" for x in os.getloadavg()) + " (1/5/15 min)"
    rows = []
    for name in names:
        seconds = min(r[0] for r in results[name])
        tokens = results[name][0][2]
        rows.append((name, tokens, seconds, tokens / seconds, max(r[1] for r in results[name])))
    base_rate, base_peak = rows[1][3], rows[1][4]
    table = ["# vLLM sampler: n samples per request vs n duplicated requests",
             "",
             f"{args.model} ({info['dtype']}) on {info['device']} ({os.cpu_count()} cores, engine threads bound "
             f"to CPUs {os.environ.get('VLLM_CPU_OMP_THREADS_BIND', 'auto')}), "
             f"vllm {info['versions']['vllm']}, torch {info['versions']['torch']}; "
             f"{len(prompts)} GSM8K problems ({args.num_fewshot}-shot) x n = {args.n} x max {args.max_tokens} "
             f"new tokens, temperature 1, GSM8K stop strings; best of {args.repeats} run(s) per arm, "
             f"prefix cache reset before each; load average at the end {load}. "
             f"Both arms produced identical completions: {same}.",
             "",
             "| arm | completion tokens | seconds | tokens/s | tokens/s ratio | peak RSS (GiB) | peak ratio |",
             "|---|---:|---:|---:|---:|---:|---:|"]
    for name, tokens, seconds, rate, peak in rows:
        table.append(f"| {name} | {tokens} | {seconds:.1f} | {rate:.1f} | {rate / base_rate:.2f} | "
                     f"{peak / 2**30:.2f} | {peak / base_peak:.2f} |")
    text = "\n".join(table) + "\n"
    print(text)
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(text)
    print(f"wrote {OUT}")


if __name__ == "__main__":
    main()

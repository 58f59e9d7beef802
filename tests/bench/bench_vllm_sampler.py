"""vLLM backend throughput, two comparisons on one engine in one run.

``--arms requests`` (default): one request per problem with n samples vs n duplicated single-sample
requests per problem (what lm-eval's ``repeats`` sends).

``--arms streaming``: the harness's streaming path (``_sample_loop``: ``VLLMBackend.stream`` into a
fresh run store, exactly what ``t2 sample --backend vllm`` runs once the engine is up) vs ONE bare
``LLM.generate`` call over all prompts x n (the engine's own ceiling: everything submitted at once,
no store) vs the chunked loop the harness ran before streaming (``sample`` over ⌈256/n⌉ problems
at a time, the engine drained at each chunk's end, then stored). Same seeds in every arm (the
problem-hash rule), so all three draw the same completions; writes ``vllm_streaming.md``.

    python tests/bench/bench_vllm_sampler.py --arms streaming --problems 48 -n 8 --max-tokens 24 --repeats 2

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
import dataclasses
import os
import threading
import time
from pathlib import Path

import psutil
from harness.tasks.gsm8k import GSM8K

from harness.samplers import SamplingSettings

OUT = Path(__file__).resolve().parents[2] / "results" / "bench" / "vllm_sampler.md"
STREAMING_OUT = OUT.with_name("vllm_streaming.md")


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
    ap.add_argument("--arms", choices=["requests", "streaming"], default="requests")
    args = ap.parse_args()
    if args.arms == "streaming":
        return streaming(args)

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


def streaming_arms(backend, problems, settings, workdir: Path) -> dict:
    """name → fn() returning ({problem id: texts}, completion tokens) for the three streaming arms."""
    from vllm import SamplingParams

    from harness.rundir import RunDir
    from harness.samplers import sample_seeds
    from harness.sampling import _sample_loop

    seeds = sample_seeds("problem-hash", settings.seed, "gsm8k", [p.id for p in problems])
    runs = iter(range(10**6))

    def stored(run: RunDir) -> tuple[dict, int]:
        rows = sorted(run.store.read().select(["problem_id", "sample_idx", "text", "completion_tokens"]).to_pylist(),
                      key=lambda r: (r["problem_id"], r["sample_idx"]))
        texts: dict[str, list[str]] = {}
        for r in rows:
            texts.setdefault(r["problem_id"], []).append(r["text"])
        return texts, sum(r["completion_tokens"] for r in rows)

    def bare():
        params = [SamplingParams(n=settings.n, seed=seed, temperature=settings.temperature,
                                 max_tokens=settings.max_tokens, stop=list(settings.stop), logprobs=0)
                  for seed in seeds]
        out = backend.llm.generate([p.prompt for p in problems], params, use_tqdm=False)
        texts = {p.id: [c.text for c in sorted(o.outputs, key=lambda c: c.index)] for p, o in zip(problems, out)}
        return texts, sum(len(c.token_ids) for o in out for c in o.outputs)

    def streamed():
        run = RunDir(workdir / f"run{next(runs)}")
        _sample_loop(backend, run, "gsm8k", [(p, 0) for p in problems], settings, "problem-hash",
                     lambda p: p.prompt, None)
        return stored(run)

    def chunked():
        run, size = RunDir(workdir / f"run{next(runs)}"), -(-256 // settings.n)
        for i in range(0, len(problems), size):
            batch = problems[i:i + size]
            for problem, completions in zip(batch, backend.sample([p.prompt for p in batch], settings,
                                                                  seeds[i:i + size])):
                run.store.append([{"task": "gsm8k", "problem_id": problem.id, **dataclasses.asdict(c)}
                                  for c in completions])
        return stored(run)

    return {"bare LLM.generate, all at once, no store": bare, "t2 sample: streaming + store": streamed,
            "chunked loop (before): ⌈256/n⌉ problems per call + store": chunked}


def streaming(args) -> None:
    """The streaming comparison (``--arms streaming``): arms interleaved, table to STREAMING_OUT."""
    import tempfile

    from harness.samplers.vllm import VLLMBackend

    problems = GSM8K(n_shot=args.n_shot, limit=args.problems).problems()
    settings = SamplingSettings(n=args.n, temperature=1.0, max_tokens=args.max_tokens, seed=0,
                                stop=tuple(GSM8K.stop))
    backend = VLLMBackend(args.model, max_model_len=2048)
    backend.sample([p.prompt for p in problems[:2]], SamplingSettings(n=4, max_tokens=8))  # warm-up
    results: dict[str, list[tuple[float, int]]] = {}
    texts = {}
    with tempfile.TemporaryDirectory() as workdir:
        arms = streaming_arms(backend, problems, settings, Path(workdir))
        for i in range(args.repeats):
            order = list(arms)[i % len(arms):] + list(arms)[:i % len(arms)]  # each arm takes each slot in turn
            for name, fn in ((name, arms[name]) for name in order):
                backend.llm.reset_prefix_cache()
                seconds, _, (text, tokens) = measure(fn)
                results.setdefault(name, []).append((seconds, tokens))
                texts[name] = text
                print(f"{name}: {tokens} tokens in {seconds:.1f} s = {tokens / seconds:.1f} tok/s", flush=True)
    info = backend.model_info()
    backend.close()
    names = list(arms)
    same = all(texts[name] == texts[names[0]] for name in names)
    load = " / ".join(f"{x:.1f}" for x in os.getloadavg()) + " (1/5/15 min)"
    base = {i: results[names[0]][i][1] / results[names[0]][i][0] for i in range(args.repeats)}
    table = ["# vLLM sampler: streaming vs one bare generate call vs the chunked loop", "",
             f"{args.model} ({info['dtype']}) on {info['device']} ({os.cpu_count()} cores shared with other users), "
             f"vllm {info['versions']['vllm']}, torch {info['versions']['torch']}; {len(problems)} GSM8K problems "
             f"({args.n_shot}-shot) x n = {args.n} x max {args.max_tokens} new tokens, temperature 1, GSM8K stops; "
             f"engine max_num_seqs {backend.max_num_seqs}; arms interleaved (their order rotated each round), "
             f"{args.repeats} round(s), prefix cache reset before each run; rows \"all\": the rounds summed; load average at the end {load}. All arms drew identical completions: {same}.",
             "", "| round | arm | completion tokens | seconds | tokens/s | ratio to bare (same round) |",
             "|---:|---|---:|---:|---:|---:|"]
    for i in range(args.repeats):
        for name in names:
            seconds, tokens = results[name][i]
            table.append(f"| {i + 1} | {name} | {tokens} | {seconds:.1f} | {tokens / seconds:.1f} | "
                         f"{tokens / seconds / base[i]:.3f} |")
    total = {name: (sum(r[0] for r in results[name]), sum(r[1] for r in results[name])) for name in names}
    for name in names:
        seconds, tokens = total[name]
        table.append(f"| all | {name} | {tokens} | {seconds:.1f} | {tokens / seconds:.1f} | "
                     f"{tokens / seconds / (total[names[0]][1] / total[names[0]][0]):.3f} |")
    text = "\n".join(table) + "\n"
    print(text)
    STREAMING_OUT.write_text(text)
    print(f"wrote {STREAMING_OUT}")


if __name__ == "__main__":
    main()

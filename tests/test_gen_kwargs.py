"""--gen-kwargs (lm-eval's syntax) as sampler settings: parsing, refusals, min-p and the penalties
in the hf sampler (against transformers' own generate on SmolLM2), and the run identity."""

from __future__ import annotations

import json
import math

import pytest
import torch
from harness.kernels import sampling as S

from harness import gen_kwargs
from harness.cli import main
from harness.errors import InvalidSetting
from harness.rundir import differences
from harness.samplers import SamplingSettings


def test_parse_splits_pairs_at_keys_only():
    parsed = gen_kwargs.parse('temperature=0.7,until=["a, b", "\\n\\n"],max_gen_toks=32,do_sample=true')
    assert parsed == {"temperature": 0.7, "until": ["a, b", "\n\n"], "max_gen_toks": 32, "do_sample": True}


def test_apply_maps_aliases_and_adds_stops():
    base = SamplingSettings(stop=("Question:",))
    s = gen_kwargs.apply(base, gen_kwargs.parse("max_gen_toks=12,until=[X, 'Question:'],min_p=0.1,top_k=5,"
                                                "repetition_penalty=1.2,seed=3"), "hf")
    assert (s.max_tokens, s.min_p, s.top_k, s.repetition_penalty, s.seed) == (12, 0.1, 5, 1.2, 3)
    assert s.stop == ("Question:", "X")
    assert gen_kwargs.apply(base, {"do_sample": False}, "vllm").temperature == 0.0


@pytest.mark.parametrize("text, named", [("num_beams=4", "num_beams"), ("foo=1", "foo"), ("top_k=1.5", "top_k"),
                                         ("max_tokens=8,max_gen_toks=9", "max_gen_toks"), ("until=[1]", "until")])
def test_refused_kwargs_name_themselves(text, named):
    with pytest.raises(InvalidSetting) as e:
        gen_kwargs.apply(SamplingSettings(), gen_kwargs.parse(text), "hf")
    assert e.value.field == f"gen_kwargs.{named}"


def test_cli_refuses_in_one_line(capsys, tmp_path):
    code = main(["sample", "--task", "gsm8k", "--model", "smollm2-135m", "--out", str(tmp_path / "r"),
                 "--gen-kwargs", "temperature=0.5,num_beams=4"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and "\n" not in err
    assert err.startswith("t2 sample: error: --gen-kwargs num_beams:") and "not honoured by the hf backend" in err
    assert not (tmp_path / "r").exists()
    assert main(["sample", "--task", "gsm8k", "--model", "smollm2-135m", "--out", str(tmp_path / "r"),
                 "--gen-kwargs", "min_p=1.5"]) == 2
    assert "--gen-kwargs min_p: expected 0 <= min_p <= 1" in capsys.readouterr().err


def test_min_p_keeps_tokens_within_the_ratio_of_the_best():
    logits = torch.log(torch.tensor([[0.5, 0.3, 0.12, 0.08]]))
    cut = S.cutoffs(logits, 1.0, min_p=0.2)  # keeps p >= 0.1: the first three
    kept = (logits.float() >= cut[:, None])[0].tolist()
    assert kept == [True, True, True, False]
    u = torch.tensor([0.999])  # the top of the CDF: the last kept token
    assert S.sample(logits, u, 1.0, min_p=0.2).item() == 2
    assert S.sample(logits, u, 1.0).item() == 3


def test_penalties_follow_ctrl_and_openai():
    logits = torch.tensor([[2.0, -1.0, 0.5, 3.0]])
    p = S.Penalties([[0, 1]], vocab=4, repetition=2.0, presence=0.25, frequency=0.5)
    p.add(torch.tensor([3]), [0])
    p.add(torch.tensor([3]), [0])
    out = p.apply(logits, [0])[0].tolist()
    assert out == pytest.approx([1.0, -2.0, 0.5, 3.0 / 2 - 0.25 - 2 * 0.5])
    assert S.Penalties.of(SamplingSettings(), [[0]], 4) is None


def test_old_run_without_the_new_settings_is_the_same_run():
    new = {"sampler": {"backend": "hf", **vars(SamplingSettings()), "stop": [], "seed_rule": "problem-hash"}}
    later = ("min_p", "repetition_penalty", "presence_penalty", "frequency_penalty")
    old = {"sampler": {k: v for k, v in new["sampler"].items() if k not in later}}
    assert differences(old, new) == []
    changed = {"sampler": {**new["sampler"], "min_p": 0.05}}
    assert differences(old, changed) == [("sampler.min_p", 0.0, 0.05)]


@pytest.fixture(scope="module")
def backend():
    from harness.samplers import get_backend

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    engine = get_backend("hf", "smollm2-135m", device="cpu")
    yield engine
    engine.close()
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def prompt(gsm8k_file) -> str:
    return f"Question: {json.loads(gsm8k_file.read_text().splitlines()[0])['question']}\nAnswer:"


@pytest.mark.slow
def test_hf_top_k_one_and_min_p_one_are_greedy(backend, prompt):
    greedy = backend.sample([prompt], SamplingSettings(n=1, temperature=0.0, max_tokens=10))[0][0].text
    s = gen_kwargs.apply(SamplingSettings(n=3, max_tokens=10), gen_kwargs.parse("top_k=1"), "hf")
    assert {c.text for c in backend.sample([prompt], s)[0]} == {greedy}
    s = gen_kwargs.apply(SamplingSettings(n=3, max_tokens=10), gen_kwargs.parse("min_p=1.0"), "hf")
    assert {c.text for c in backend.sample([prompt], s)[0]} == {greedy}


@pytest.mark.slow
def test_hf_min_p_changes_what_is_drawn(backend, prompt):
    plain = [c.text for c in backend.sample([prompt], SamplingSettings(n=6, max_tokens=12, seed=5))[0]]
    cut = [c.text for c in backend.sample([prompt], SamplingSettings(n=6, max_tokens=12, seed=5, min_p=0.2))[0]]
    assert plain != cut
    # the draws of min-p are a subset of the support: fewer distinct first words than untruncated
    assert len(set(cut)) <= len(set(plain))


@pytest.mark.slow
def test_hf_repetition_penalty_is_transformers_greedy(backend, prompt):
    ids = backend.tokenizer(prompt, return_tensors="pt").input_ids
    for penalty in (1.0, 1.5):
        ref = backend.model.generate(ids, do_sample=False, max_new_tokens=16, repetition_penalty=penalty,
                                     attention_mask=torch.ones_like(ids))[0, ids.shape[1]:]
        s = SamplingSettings(n=1, temperature=0.0, max_tokens=16, repetition_penalty=penalty)
        got = backend.sample([prompt], s)[0][0]
        assert got.text == backend.tokenizer.decode(ref, skip_special_tokens=True)
    plain = backend.sample([prompt], SamplingSettings(n=1, temperature=0.0, max_tokens=16))[0][0].text
    assert got.text != plain  # the penalty changed the greedy path
    # cumulative_logprob stays the raw model's, as vLLM's: a penalised path scores lower
    assert math.isfinite(got.cumulative_logprob)


@pytest.mark.slow
def test_t2_sample_records_gen_kwargs_in_run_identity(tmp_path, gsm8k_file, capsys):
    run = tmp_path / "run"
    argv = ["sample", "--task", "gsm8k", "--model", "smollm2-135m", "--out", str(run), "--data-files",
            str(gsm8k_file), "--limit", "1", "-n", "2", "--max-tokens", "4", "--device", "cpu"]
    assert main(argv + ["--gen-kwargs", "min_p=0.05,repetition_penalty=1.1,until=[Zq]"]) == 0
    sampler = json.loads((run / "run.json").read_text())["sampler"]
    assert (sampler["min_p"], sampler["repetition_penalty"], sampler["presence_penalty"]) == (0.05, 1.1, 0.0)
    assert sampler["stop"][-1] == "Zq" and len(sampler["stop"]) > 1
    capsys.readouterr()
    assert main(argv + ["--gen-kwargs", "min_p=0.1"]) == 2
    assert "sampler.min_p=0.05" in capsys.readouterr().err


@pytest.fixture(scope="module")
def vllm_backend():
    from harness.samplers.vllm import VLLMBackend

    with pytest.MonkeyPatch.context() as env:
        env.setenv("VLLM_CPU_KVCACHE_SPACE", "2")
        engine = VLLMBackend("smollm2-135m", dtype="float32", max_model_len=1024)
    yield engine
    engine.close()


@pytest.mark.slow
@pytest.mark.vllm
def test_vllm_honours_the_same_kwargs_as_hf(vllm_backend, backend, prompt):
    greedy = vllm_backend.sample([prompt], SamplingSettings(n=1, temperature=0.0, max_tokens=10))[0][0].text
    for text in ("top_k=1", "min_p=1.0"):
        s = gen_kwargs.apply(SamplingSettings(n=3, max_tokens=10), gen_kwargs.parse(text), "vllm")
        assert {c.text for c in vllm_backend.sample([prompt], s)[0]} == {greedy}
    s = SamplingSettings(n=1, temperature=0.0, max_tokens=16, repetition_penalty=1.5)
    assert vllm_backend.sample([prompt], s)[0][0].text == backend.sample([prompt], s)[0][0].text
    plain = vllm_backend.sample([prompt], SamplingSettings(n=4, max_tokens=12, seed=5))[0]
    cut = vllm_backend.sample([prompt], SamplingSettings(n=4, max_tokens=12, seed=5, min_p=0.2,
                                                          presence_penalty=0.5, frequency_penalty=0.5))[0]
    assert [c.text for c in plain] != [c.text for c in cut]

"""Helpers shared by several test modules (test modules never import each other)."""

from __future__ import annotations

import contextlib

import numpy as np
from scipy.special import betaln, digamma, expit

from harness import fit

# Chinchilla's published law plus a k term (Approach 1) / a Beta regression (Approach 2).
CHIN = [np.log(406.4), np.log(410.7), np.log(1.69), 0.34, 0.28]
TRUE1 = fit.T2LossLaw(np.r_[CHIN, np.log(2.0), 0.5])
TRUE2 = fit.T2AccuracyLaw(np.r_[CHIN, 3.2, 4.0, 0.9, 0.5, -0.3])
MU_FLOOR = 1e-12  # keeps a = μν and b = (1 − μ)ν > 0 where the logistic saturates


def paper_grid():
    """16 sizes 5M..901M × 12 compute levels 1.25e16..2.56e19 FLOPs × k = 1, 2, 4, …, 1024."""
    sizes = np.geomspace(5e6, 901e6, 16)
    C = 1.25e16 * 2.0 ** np.arange(12)
    k = 2.0 ** np.arange(11)
    N, C, k = (v.ravel() for v in np.meshgrid(sizes, C, k, indexing="ij"))
    return N, C / (6 * N), k


def simulate(seed: int = 0):
    N, D, k = paper_grid()
    rng = np.random.default_rng(seed)
    loss = TRUE1.predict(N, D, k) * (1 + 0.01 * rng.standard_normal(N.size))
    acc = np.clip(TRUE2.predict(N, D, k) + 0.005 * rng.standard_normal(N.size), 0, 1)
    nll = TRUE2.loss_law.predict(N, D) * (1 + 0.005 * rng.standard_normal(N.size))
    return N, D, k, loss, acc, nll


def accuracy_sse(theta: np.ndarray, L: np.ndarray, k: np.ndarray, acc: np.ndarray) -> tuple[float, np.ndarray]:
    """Σ (Acc − acc)² over rows and its gradient in θ, one row at a time: the plain reference of
    ``fit.AccuracyDesign.sse`` (digamma derivatives of the log-Beta ratio)."""
    t0, t1, t2, t3, t4 = theta
    s = expit(-t1 * (L - t0))
    mu, nu = np.clip(t2 * s, MU_FLOOR, 1 - MU_FLOOR), np.exp(t3 + t4 * L)
    a, b = mu * nu, (1 - mu) * nu
    delta = np.minimum(betaln(a, b + k) - betaln(a, b), 0.0)  # B(a, b + k) <= B(a, b); clip rounding
    pred = -np.expm1(delta)
    r = pred - acc
    dd = -2 * r * np.exp(delta)  # ∂SSE/∂delta
    psi_ab, psi_abk = digamma(a + b), digamma(a + b + k)
    d_a = psi_ab - psi_abk  # ∂delta/∂a
    d_b = digamma(b + k) - psi_abk - digamma(b) + psi_ab
    d_mu = nu * (d_a - d_b)
    d_nu = mu * d_a + (1 - mu) * d_b
    ds = -s * (1 - s)  # ∂s/∂z, z = θ1 (L − θ0)
    grad = np.array([(dd * d_mu * t2 * ds * -t1).sum(), (dd * d_mu * t2 * ds * (L - t0)).sum(),
                     (dd * d_mu * s).sum(), (dd * d_nu * nu).sum(), (dd * d_nu * nu * L).sum()])
    return float(r @ r), grad


def tiny_causal_lm(out, config, texts: list[str]):
    """Save into ``out`` a randomly initialised causal LM of ``config`` (weights from seed 0, the
    global torch RNG left as it was) and a byte-level BPE tokenizer of ``config.vocab_size`` tokens
    (>= 257) trained on ``texts``, whose "<|endoftext|>" is id 0 (bos, eos, pad); returns ``out``."""
    import torch
    from tokenizers import ByteLevelBPETokenizer
    from transformers import AutoModelForCausalLM, PreTrainedTokenizerFast

    bpe = ByteLevelBPETokenizer()
    bpe.train_from_iterator(texts, vocab_size=config.vocab_size, min_frequency=2,
                            special_tokens=["<|endoftext|>"], show_progress=False)
    eos = "<|endoftext|>"
    PreTrainedTokenizerFast(tokenizer_object=bpe._tokenizer, bos_token=eos, eos_token=eos, unk_token=eos,
                            pad_token=eos).save_pretrained(out)
    config.bos_token_id = config.eos_token_id = config.pad_token_id = 0
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        AutoModelForCausalLM.from_config(config).save_pretrained(out)
    return out


@contextlib.contextmanager
def attributes(obj, **values):
    """Set attributes of ``obj`` for the block and restore them after, so that a test leaves a
    module-scoped fixture as it found it."""
    before = {name: getattr(obj, name) for name in values}
    for name, value in values.items():
        setattr(obj, name, value)
    try:
        yield obj
    finally:
        for name, value in before.items():
            setattr(obj, name, value)


def knowledge_rung(out, d_model: int = 32, tokens: int = 300_000, questions: int = 24, seed: int = 0):
    """A micro-ladder model (``harness.ladder``: 2 layers, width ``d_model``, ``tokens`` training
    tokens) trained here on the synthetic knowledge task's corpus (seed ``seed``, ``questions``
    held-out questions); reused when ``out`` already holds it. Returns ``out``."""
    from harness.tasks import get_task

    from harness.ladder import Rung, build_tokenizer, encode_corpus, train

    docs = get_task("knowledge", n=questions, seed=seed).corpus(1500, seed=seed)
    tokenizer = build_tokenizer(docs, 384, out.with_name(out.name + "-tokenizer"))
    train(Rung(d_model, 2, tokens), encode_corpus(docs, tokenizer), tokenizer, out, seed=seed)
    return out

"""Reliability from repeated samples: vote-share calibration, selective prediction, proper scores, shift.

Majority vote of a size-k subset S of a question's n samples: every sample with an extracted answer
votes for it (a sample with none abstains); the answer with the most votes v wins, a tie among t + 1
answers is broken uniformly at random (the rule of :func:`harness.passk.maj_at_k`); a subset with
no votes has v = 0 and is wrong. Its confidence is the vote share v / k (abstentions count in k);
it is correct with the winning answer's verdict.

Unbiased subset averages: per question the exact joint distribution of (v, correct) over all
C(n, k) subsets is counted from its answer groups (:func:`harness.passk.group_majority_distribution`),
never the first k samples. Every question carries weight 1/P, spread over its subsets, so the
task's (confidence, correct) sample is a weighted mixture of atoms (confidence v/k, weight P(v)/P,
accuracy P(correct | v)). Means over it (accuracy = maj@k, mean confidence, Brier) are
U-statistics: unbiased for a fresh draw of k samples. ECE and AURC are plug-in values of that
mixture (consistent, not exactly unbiased).

- ECE: atoms are sorted by confidence, atoms of equal confidence pooled (so ties never depend on
  order), and the unit mass cut into ``n_bins`` (default 10) bins of equal mass at 0, 1/B, ..., 1,
  an atom straddling a cut being split by mass. ECE = Σ_b mass_b |mean confidence_b − accuracy_b|.
- Brier = mean (confidence − correct)².
- Selective prediction: keep the most confident share u of the mass (pooled ties, highest first);
  the error mass E(u) is piecewise linear in u (inside an atom errors accrue at rate 1 − accuracy,
  the expectation under a random order of its members). Selective accuracy(u) = 1 − E(u)/u and
  AURC = ∫_0^1 E(u)/u du, integrated exactly. Baselines with the same accuracy A: random order has
  constant risk, AURC = 1 − A; the oracle keeps correct mass first, AURC = 1 − A + A ln A.
- Proper scoring (likelihood mode): mean gold-answer NLL over questions, and per-token NLL
  Σ_i NLL_i / Σ_i answer_tokens_i (nats).
"""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from harness import records
from harness.dataset import run_info
from harness.errors import DataError, InvalidSetting
from harness.passk import VOTE_COLUMNS, VOTE_ROWS, answer_groups, default_ks, group_majority_distribution

COLUMNS = records.COLUMNS["reliability"]

METRICS = ("accuracy", "confidence", "ece", "brier", "aurc", "nll_mean", "nll_per_token")


@dataclass(frozen=True)
class Atoms:
    """A weighted (confidence, correct) sample: weights sum to 1, correct is P(correct) in [0, 1]."""

    confidence: np.ndarray
    correct: np.ndarray
    weight: np.ndarray


def vote_atoms(distributions: Sequence[tuple[np.ndarray, np.ndarray, np.ndarray]], k: int) -> Atoms:
    """The task's mixture at k from each question's (v, P(v), P(v, correct)) over the v with P(v) > 0
    (:func:`harness.passk.group_majority_distribution`'s row for k, zero-mass atoms dropped);
    questions weigh 1/P each."""
    v, p_v, p_ok = (np.concatenate(column) for column in zip(*distributions))
    return Atoms(v / k, np.clip(p_ok / p_v, 0.0, 1.0), p_v / len(distributions))


# ---------------------------------------------------------------- calibration and selective prediction


def _weighted(confidence, correct, weight) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Checked float64 arrays; weights default to 1 and are normalised to sum 1."""
    conf = np.atleast_1d(np.asarray(confidence, dtype=np.float64))
    ok = np.atleast_1d(np.asarray(correct, dtype=np.float64))
    w = np.ones_like(conf) if weight is None else np.atleast_1d(np.asarray(weight, dtype=np.float64))
    if conf.ndim != 1 or conf.size == 0 or ok.shape != conf.shape or w.shape != conf.shape:
        raise DataError(f"expected non-empty 1-D confidence, correct and weight of one length, got "
                         f"shapes {conf.shape}, {ok.shape}, {w.shape}")
    for name, arr in (("confidence", conf), ("correct", ok)):
        if not np.all((arr >= 0) & (arr <= 1)):
            raise DataError(f"{name}: expected values in [0, 1]")
    if not (np.all(w >= 0) and w.sum() > 0):
        raise DataError("weight: expected non-negative weights with a positive sum")
    return conf, ok, w / w.sum()


def _pooled(confidence, correct, weight) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(distinct confidences ascending, their mass, their correct mass)."""
    conf, ok, w = _weighted(confidence, correct, weight)
    levels, inverse = np.unique(conf, return_inverse=True)
    return levels, np.bincount(inverse, w), np.bincount(inverse, w * ok)


def calibration_bins(confidence, correct, weight=None, n_bins: int = 10
                     ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(mass, mean confidence, accuracy) of ``n_bins`` equal-mass bins, lowest confidence first."""
    if n_bins < 1:
        raise DataError(f"n_bins: expected >= 1, got {n_bins}")
    levels, mass, ok_mass = _pooled(confidence, correct, weight)
    cum = np.concatenate([[0.0], np.cumsum(mass)])
    cum[-1] = 1.0
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    overlap = np.clip(np.minimum(cum[1:], edges[1:, None]) - np.maximum(cum[:-1], edges[:-1, None]),
                      0.0, None)  # [bin, level]: mass of the level inside the bin
    bin_mass = overlap.sum(axis=1)
    return bin_mass, overlap @ levels / bin_mass, overlap @ (ok_mass / mass) / bin_mass


def ece(confidence, correct, weight=None, n_bins: int = 10) -> float:
    """Expected calibration error with equal-mass bins: Σ_b mass_b |confidence_b − accuracy_b|."""
    mass, conf, acc = calibration_bins(confidence, correct, weight, n_bins)
    return float(np.sum(mass * np.abs(conf - acc)))


def brier(confidence, correct, weight=None) -> float:
    """Mean (confidence − correct)², with P(correct) = a: a (1 − c)² + (1 − a) c²."""
    c, a, w = _weighted(confidence, correct, weight)
    return float(np.sum(w * (a * (1 - c) ** 2 + (1 - a) * c ** 2)))


def risk_coverage(confidence, correct, weight=None) -> tuple[np.ndarray, np.ndarray]:
    """(coverage u, error mass E(u)) at the pooled atoms' edges, most confident first, from (0, 0)
    to (1, 1 − A); E is linear between edges."""
    _, mass, ok_mass = _pooled(confidence, correct, weight)
    u = np.concatenate([[0.0], np.cumsum(mass[::-1])])
    err = np.concatenate([[0.0], np.cumsum((mass - ok_mass)[::-1])])
    return u, err


def selective_accuracy(confidence, correct, weight=None, coverage=None) -> tuple[np.ndarray, np.ndarray]:
    """(coverage, accuracy of the kept share) on a grid (default 100 points in (0, 1])."""
    u, err = risk_coverage(confidence, correct, weight)
    grid = np.linspace(0.01, 1.0, 100) if coverage is None else np.asarray(coverage, dtype=np.float64)
    return grid, 1.0 - np.interp(grid, u, err) / grid


def aurc(confidence, correct, weight=None) -> float:
    """Area under the risk-coverage curve, ∫_0^1 E(u)/u du, exact for piecewise-linear E:
    over an edge interval [u0, u1] with slope s, s (u1 − u0) + (E(u0) − s u0) ln(u1/u0)."""
    u, err = risk_coverage(confidence, correct, weight)
    u0, u1, e0 = u[:-1], u[1:], err[:-1]
    keep = u1 > u0
    u0, u1, e0, s = u0[keep], u1[keep], e0[keep], (err[1:] - err[:-1])[keep] / (u1 - u0)[keep]
    with np.errstate(divide="ignore", invalid="ignore"):
        log_term = np.where(u0 > 0, (e0 - s * u0) * np.log(u1 / np.where(u0 > 0, u0, 1.0)), 0.0)
    return float(np.sum(s * (u1 - u0) + log_term))


def aurc_baselines(correct, weight=None) -> tuple[float, float]:
    """(oracle, random) AURC at accuracy A: 1 − A + A ln A (0 ln 0 = 0), and 1 − A."""
    _, a, w = _weighted(correct, correct, weight)
    acc = float(np.sum(w * a))
    return 1.0 - acc + (acc * np.log(acc) if acc > 0 else 0.0), 1.0 - acc


def nll_scores(nll, answer_tokens) -> tuple[float, float]:
    """(mean NLL over questions, Σ NLL / Σ answer tokens), nats; NaN where some question lacks
    its NLL (or its token count)."""
    nll = np.asarray(nll, dtype=np.float64)
    tokens = np.asarray(answer_tokens, dtype=np.float64)
    if nll.size == 0 or np.any(np.isnan(nll)):
        return float("nan"), float("nan")
    per_token = nll.sum() / tokens.sum() if np.all(tokens > 0) else float("nan")
    return float(nll.mean()), float(per_token)


# ---------------------------------------------------------------- runs


Groups = tuple[np.ndarray, np.ndarray, int]  # answer-group sizes (largest first), their scores, abstentions


@dataclass
class Run:
    """What a report needs from one run directory."""

    path: Path
    checkpoint: str
    shift: int
    N: float
    D: float
    votes: dict[str, dict[str, Groups]]  # task -> problem_id -> its answer groups
    nll: dict[str, tuple[np.ndarray, np.ndarray]] = field(default_factory=dict)  # task -> (nll, tokens)


def _first(mapping: dict[str, Any], *keys: str) -> Any:
    for key in keys:
        value = mapping
        for part in key.split("."):
            value = value.get(part) if isinstance(value, dict) else None
        if value is not None:
            return value
    return None


def run_scale(path: Path, run_json: dict[str, Any], suite: dict | None = None) -> tuple[str, float, float]:
    """(checkpoint, N, D) by :func:`harness.dataset.run_info` (N: non-embedding parameters); when
    the run records no N or D (a hub model without a suite file) the model id and NaN, NaN:
    reliability does not need them, only the plot against C_train does."""
    try:
        info = run_info(path, suite)
    except ValueError:
        return _checkpoint(run_json, path), float("nan"), float("nan")
    return info["checkpoint"], float(info["N_non_embedding"]), float(info["D"])


def _checkpoint(run_json: dict[str, Any], path: Path) -> str:
    model = run_json.get("model")
    if isinstance(model, dict):
        model = _first(model, "id", "name", "path")
    return str(model) if model else path.name


def _shift(run_json: dict[str, Any]) -> int:
    """The task's shift level from run.json's task provenance: options.shift, or "shift=N" in its
    source; 0 (training distribution) for tasks without a shift knob."""
    task = run_json.get("task")
    if not isinstance(task, dict):
        return 0
    found = _first(task, "options.shift", "shift")
    if found is None:
        match = re.search(r"\bshift=(\d+)", str(task.get("source", "")))
        found = match.group(1) if match else 0
    return int(found)


def load_run(path: str | Path, suite: dict | None = None) -> Run:
    """Read RUN/run.json, RUN/scores.parquet (its :data:`VOTE_COLUMNS` only, VOTE_ROWS rows at a time,
    counted into answer groups by :func:`harness.passk.answer_groups`: memory is the distinct
    answers, not the samples) and (if present) RUN/problems.parquet's NLLs; suite:
    :func:`harness.dataset.load_suite`'s N and D per checkpoint, for runs that do not record them."""
    path = Path(path)
    if not path.is_dir():
        raise DataError(f"{path}: not a run directory")
    run_json = records.read_json(path / "run.json", "run")
    if not (path / "scores.parquet").is_file():
        raise DataError(f"{path}: no scores.parquet: reliability needs sampled answers "
                         f"(run `t2 sample` and `t2 score {path}` first)")
    votes: dict[str, dict[str, Groups]] = defaultdict(dict)
    scores = records.iter_table(path / "scores.parquet", "scores", VOTE_COLUMNS, VOTE_ROWS)
    for (task, pid), groups in answer_groups(scores).items():
        votes[task][pid] = groups
    if not votes:
        raise DataError(f"{path}: scores.parquet has no scored samples")
    nll: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    if (path / "problems.parquet").is_file():
        cols = records.read_table(path / "problems.parquet", "problems").to_pydict()
        for task in votes:
            idx = [i for i, t in enumerate(cols["task"]) if t == task]
            values = [np.nan if cols["nll"][i] is None else cols["nll"][i] for i in idx]
            tokens = [np.nan if cols["answer_tokens"][i] is None else cols["answer_tokens"][i] for i in idx]
            nll[task] = (np.array(values, dtype=np.float64), np.array(tokens, dtype=np.float64))
    checkpoint, n, d = run_scale(path, run_json, suite)
    return Run(path, checkpoint, _shift(run_json), n, d, dict(votes), nll)


@dataclass(frozen=True)
class Curves:
    """Per run, task and k: the calibration bins and the (confidence, correct) mixture, for plots."""

    run: str
    task: str
    k: int
    bins: tuple[np.ndarray, np.ndarray, np.ndarray]
    atoms: Atoms


def task_reliability(run: Run, task: str, ks: Sequence[int] | None, n_bins: int = 10
                     ) -> tuple[list[dict[str, Any]], list[Curves]]:
    """Rows (one per k, :data:`COLUMNS`) and curves of one task of one run."""
    problems = run.votes[task]
    sizes = {pid: int(group_sizes.sum()) + abstain for pid, (group_sizes, _, abstain) in problems.items()}
    small = min(sizes, key=sizes.get)
    task_ks = sorted(set(ks)) if ks else default_ks(sizes[small])
    if task_ks[0] < 1:
        raise InvalidSetting("k", int(task_ks[0]), "values >= 1")
    if task_ks[-1] > sizes[small]:
        raise DataError(f"{run.path}: task {task} problem {small} has only {sizes[small]} scored "
                         f"samples; k={task_ks[-1]} needs at least {task_ks[-1]}")
    per_k: list[list[tuple[np.ndarray, np.ndarray, np.ndarray]]] = [[] for _ in task_ks]
    for groups in problems.values():  # one problem's [K, max k + 1] at a time; only its atoms are kept
        p_v, p_ok = group_majority_distribution(*groups, task_ks)
        for i, k in enumerate(task_ks):
            v = np.flatnonzero(p_v[i, : k + 1] > 0)
            per_k[i].append((v, p_v[i, v], p_ok[i, v]))
    nll_mean, nll_tok = nll_scores(*run.nll.get(task, ([], [])))
    rows, curves = [], []
    for k, distributions in zip(task_ks, per_k):
        atoms = vote_atoms(distributions, k)
        a = (atoms.confidence, atoms.correct, atoms.weight)
        oracle, random = aurc_baselines(atoms.correct, atoms.weight)
        rows.append({
            "run": str(run.path), "checkpoint": run.checkpoint, "task": task, "shift": run.shift, "k": k,
            "n_problems": len(problems), "accuracy": float(np.sum(atoms.weight * atoms.correct)),
            "confidence": float(np.sum(atoms.weight * atoms.confidence)), "ece": ece(*a, n_bins=n_bins),
            "brier": brier(*a), "aurc": aurc(*a), "aurc_oracle": oracle, "aurc_random": random,
            "nll_mean": nll_mean, "nll_per_token": nll_tok, "N": run.N, "D": run.D, "C_train": 6 * run.N * run.D,
        })
        curves.append(Curves(str(run.path), task, k, calibration_bins(*a, n_bins=n_bins), atoms))
    return rows, curves


def reliability_table(runs: Sequence[Run], ks: Sequence[int] | None = None, n_bins: int = 10
                      ) -> tuple[pa.Table, list[Curves]]:
    """The report table (one row per run × task × k) and its curves."""
    rows, curves = [], []
    for run in runs:
        for task in sorted(run.votes):
            r, c = task_reliability(run, task, ks, n_bins)
            rows += r
            curves += c
    return records.to_table("reliability", pa.Table.from_pylist(rows)), curves


def shift_table(table: pa.Table) -> pa.Table | None:
    """In-distribution (shift 0) beside each shifted run of the same checkpoint, task and k: one row
    per (checkpoint, task, shift > 0, k) with each metric as ``<metric>_id`` and ``<metric>_shift``;
    None when no run is shifted."""
    rows = table.to_pylist()
    base = {(r["checkpoint"], r["task"], r["k"]): r for r in rows if r["shift"] == 0}
    out = []
    for r in rows:
        ref = base.get((r["checkpoint"], r["task"], r["k"]))
        if r["shift"] > 0 and ref is not None:
            pair = {"checkpoint": r["checkpoint"], "task": r["task"], "shift": r["shift"], "k": r["k"]}
            for m in METRICS:
                pair[f"{m}_id"], pair[f"{m}_shift"] = ref[m], r[m]
            out.append(pair)
    return pa.Table.from_pylist(out) if out else None

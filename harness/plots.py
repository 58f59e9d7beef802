"""Figures of a fitted T² law against its fitting dataset (matplotlib Agg; each saved as PNG and PDF).

- isoflop:   the law along D = C_train/(6N), k = C_inf/(2N) for several training budgets, with the
             T² optimum and the Chinchilla-only choice of each budget (the two frontiers)
- passk:     the fitted metric (task loss or pass@k accuracy) vs k for a spread of checkpoints
- predicted: predicted vs measured metric over all rows, with the y = x line

Reliability (``t2 reliability``) and the real demo:

- reliability curves: reliability diagram and selective accuracy vs coverage of one run and task
- metrics vs compute: each reliability metric against C_train = 6ND, one line per (k, shift)
- extrapolation: measured pass@k, its Beta-binomial fit past n and the fit's interval
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pyarrow as pa  # noqa: E402
from matplotlib.ticker import NullFormatter  # noqa: E402

from harness.fit import Law  # noqa: E402
from harness.reliability import METRICS, Curves, selective_accuracy  # noqa: E402


def _save(fig, out: Path, name: str) -> list[Path]:
    out.mkdir(parents=True, exist_ok=True)
    paths = [out / f"{name}.png", out / f"{name}.pdf"]
    for p in paths:
        fig.savefig(p, dpi=120, bbox_inches="tight")
    plt.close(fig)
    return paths


def _measured(law: Law, cols: dict[str, np.ndarray]) -> np.ndarray:
    return cols["task_loss" if law.METRIC == "loss" else "accuracy"]


def plot_isoflop(law: Law, cols: dict[str, np.ndarray], C_inf: float = 2e9, levels: int = 6):
    """Figure: the law vs N on isoFLOP slices spanning the dataset's C_train, with both frontiers."""
    C = np.geomspace(cols["C_train"].min(), cols["C_train"].max(), levels)
    front = law.frontier(C, C_inf)
    fig, ax = plt.subplots(figsize=(6, 4))
    for c, color in zip(C, plt.cm.viridis(np.linspace(0, 0.9, levels))):
        N = np.geomspace(1e3, min(C_inf / 2, c / 6), 300)
        ax.plot(N, law.predict(N, c / (6 * N), C_inf / (2 * N)), color=color, label=f"C_train={c:.2g}")
    ax.plot(front["N"], front["value"], "k*-", label="T² optimum")
    ax.plot(front["chinchilla_N"], front["chinchilla_value"], "o--", color="tab:red", mfc="none",
            label="Chinchilla-only choice")
    ax.set(xscale="log", xlabel="N (parameters)", ylabel=law.METRIC,
           title=f"isoFLOP slices, C_inf = {C_inf:.2g} FLOPs/token")
    ax.legend(fontsize=7)
    return fig


def plot_passk(law: Law, cols: dict[str, np.ndarray], curves: int = 6):
    """Figure: measured metric vs k (markers) and the law (lines) for a spread of checkpoints."""
    pairs = np.unique(np.stack([cols["N"], cols["D"]], 1), axis=0)
    order = np.argsort(6 * pairs[:, 0] * pairs[:, 1])
    pick = pairs[order[np.linspace(0, len(order) - 1, min(curves, len(order))).astype(int)]]
    y = _measured(law, cols)
    kk = np.geomspace(cols["k"].min(), cols["k"].max(), 200)
    fig, ax = plt.subplots(figsize=(6, 4))
    for (N, D), color in zip(pick, plt.cm.plasma(np.linspace(0, 0.9, len(pick)))):
        m = (cols["N"] == N) & (cols["D"] == D)
        ax.plot(cols["k"][m], y[m], "o", color=color, ms=3)
        ax.plot(kk, law.predict(N, D, kk), color=color, label=f"N={N:.2g}, D={D:.2g}")
    ax.set(xscale="log", xlabel="k (samples per query)", ylabel=law.METRIC, title="pass@k: measured and fitted")
    ax.legend(fontsize=7)
    return fig


def plot_predicted(law: Law, cols: dict[str, np.ndarray]):
    """Figure: predicted vs measured metric over every row."""
    y, pred = _measured(law, cols), law.predict(cols["N"], cols["D"], cols["k"])
    fig, ax = plt.subplots(figsize=(4.5, 4.5))
    ax.scatter(y, pred, s=4, c=np.log10(cols["k"]), cmap="viridis")
    lim = [min(y.min(), pred.min()), max(y.max(), pred.max())]
    ax.plot(lim, lim, "k--", lw=1)
    ax.set(xlabel=f"measured {law.METRIC}", ylabel=f"predicted {law.METRIC}", title="predicted vs measured")
    return fig


def plot_all(law: Law, cols: dict[str, np.ndarray], out: str | Path, task: str, C_inf: float = 2e9) -> list[Path]:
    """Write the three figures for one task into ``out``; returns the PNG and PDF paths."""
    out = Path(out)
    return [*_save(plot_isoflop(law, cols, C_inf), out, f"{task}-isoflop"),
            *_save(plot_passk(law, cols), out, f"{task}-passk"),
            *_save(plot_predicted(law, cols), out, f"{task}-predicted")]


# ---------------------------------------------------------------- reliability


def plot_curves(curves: Sequence[Curves], path: Path) -> Path:
    """Reliability diagram (bin confidence vs accuracy, one line per k) and accuracy vs coverage
    (one line per k; oracle and random baselines of the largest k) for one run and task."""
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 4.2))
    left.plot([0, 1], [0, 1], color="0.6", ls=":", label="calibrated")
    for c in curves:
        _, conf, acc = c.bins
        left.plot(conf, acc, marker="o", ms=3, label=f"k={c.k}")
        cov, sel = selective_accuracy(c.atoms.confidence, c.atoms.correct, c.atoms.weight)
        right.plot(cov, sel, label=f"k={c.k}")
    last = curves[-1].atoms
    acc = float(np.sum(last.weight * last.correct))
    grid = np.linspace(0.01, 1.0, 100)
    right.plot(grid, np.minimum(1.0, acc / grid), color="k", ls="--", lw=1, label=f"oracle k={curves[-1].k}")
    right.axhline(acc, color="0.5", ls=":", lw=1, label=f"random k={curves[-1].k}")
    left.set(xlabel="vote-share confidence (equal-mass bins)", ylabel="accuracy", xlim=(0, 1), ylim=(0, 1),
             title="reliability diagram")
    right.set(xlabel="coverage", ylabel="selective accuracy", xlim=(0, 1), ylim=(0, 1.02),
              title="accuracy vs coverage")
    left.legend(fontsize=7)
    right.legend(fontsize=7)
    fig.suptitle(f"{curves[0].task} — {curves[0].run}", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def plot_vs_compute(table: pa.Table, task: str, path: Path) -> Path | None:
    """Each reliability metric against C_train = 6ND (log x), one line per (k, shift); None without C_train."""
    rows = [r for r in table.to_pylist() if r["task"] == task and np.isfinite(r["C_train"])]
    if not rows:
        return None
    fig, grid = plt.subplots(2, 4, figsize=(13, 6))
    axes, key = grid.flat[: len(METRICS)], grid.flat[-1]
    ks = sorted({r["k"] for r in rows})
    for (k, shift) in sorted({(r["k"], r["shift"]) for r in rows}):
        line = sorted((r for r in rows if r["k"] == k and r["shift"] == shift), key=lambda r: r["C_train"])
        for ax, m in zip(axes, METRICS):
            ax.plot([r["C_train"] for r in line], [r[m] for r in line], marker="o", ms=3,
                    color=f"C{ks.index(k) % 10}", ls="-" if shift == 0 else "--",
                    label=f"k={k}" + (f" shift={shift}" if shift else ""))
    for ax, m in zip(axes, METRICS):
        ax.set(xscale="log", xlabel="C_train = 6ND (FLOPs)", title=m + (" (nats)" if m.startswith("nll") else ""))
        ax.xaxis.set_minor_formatter(NullFormatter())
    key.legend(*axes[0].get_legend_handles_labels(), fontsize=7, loc="center", ncol=2)
    key.axis("off")
    fig.suptitle(task, fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


# ---------------------------------------------------------------- extrapolation past n


def plot_extrapolation(ks: np.ndarray, measured: np.ndarray, far: np.ndarray, fitted: np.ndarray,
                       band: tuple[np.ndarray, np.ndarray], n: int, level: float, fit_label: str, title: str,
                       path: Path) -> Path:
    """Measured unbiased pass@k at ``ks`` (markers), the fitted curve over ``far`` (``fit_label``)
    with its ``level`` interval ``band`` (low, high), and a dotted line at k = n."""
    fig, ax = plt.subplots(figsize=(6, 4))
    ax.plot(ks, measured, "o", label=f"unbiased pass@k (n = {n})")
    ax.plot(far, fitted, "-", label=fit_label)
    ax.fill_between(far, *band, alpha=0.25, label=f"{level:.0%} interval")
    ax.axvline(n, color="grey", lw=0.8, ls=":")
    ax.set(xscale="log", xlabel="k (samples per problem)", ylabel="pass@k", title=title)
    ax.legend(fontsize=8)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120, bbox_inches="tight")
    plt.close(fig)
    return path

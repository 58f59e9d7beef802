"""Figures of a fitted T² law against its fitting dataset (matplotlib Agg; each saved as PNG and PDF).

- isoflop:   the law along D = C_train/(6N), k = C_inf/(2N) for several training budgets, with the
             T² optimum and the Chinchilla-only choice of each budget (the two frontiers)
- passk:     the fitted metric (task loss or pass@k accuracy) vs k for a spread of checkpoints
- predicted: predicted vs measured metric over all rows, with the y = x line
"""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from harness.fit import Law  # noqa: E402


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

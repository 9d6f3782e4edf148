"""Plots of a search run (matplotlib).

The files a run writes are drawn on bare ``Figure`` objects with the Agg
canvas, so no display is needed and a notebook's backend is left alone; the
``plot_*`` helpers draw on a given axis, or on a new pyplot one.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure


def _ax(ax):  # noqa: ANN001, ANN202
    if ax is None:
        import matplotlib.pyplot as plt

        _, ax = plt.subplots(figsize=(6, 4))
    return ax


def plot_rewards(trials: pd.DataFrame, ax=None):  # noqa: ANN001, ANN201
    """Reward per finished trial and the running best (accuracy for a pareto run)."""
    ax = _ax(ax)
    done = trials[trials["state"] == "COMPLETE"].sort_values("number")
    col = "reward" if done["reward"].notna().any() or done.empty else "accuracy"
    y = done[col]
    ax.scatter(done["number"], y, s=14, alpha=0.7, label="trial")
    ax.plot(done["number"], y.cummax(), color="C3", label="best so far")
    ax.set_xlabel("trial")
    ax.set_ylabel(col)
    ax.legend(loc="lower right")
    ax.grid(alpha=0.3)
    return ax


def plot_accuracy_vs_latency(trials: pd.DataFrame, pareto: pd.DataFrame, references: dict,
                             target_ms: float | None = None, ax=None):  # noqa: ANN001, ANN201
    """Validation accuracy vs predicted latency; references as vertical marks."""
    ax = _ax(ax)
    done = trials[(trials["state"] == "COMPLETE") & trials["accuracy"].notna()]
    ax.scatter(done["latency_ms"], done["accuracy"], s=14, alpha=0.6, label="trials")
    if len(pareto):
        p = pareto.sort_values("latency_ms")
        ax.plot(p["latency_ms"], p["accuracy"], "-o", color="C3", ms=4, label="Pareto front")
    if target_ms:
        ax.axvline(target_ms, color="k", ls="--", lw=1, label=f"target {target_ms:g} ms")
    for name, ms in (references or {}).items():
        ax.axvline(ms, color="C2", lw=0.8, alpha=0.6)
        ax.annotate(name, (ms, 0.02), xycoords=("data", "axes fraction"), rotation=90,
                    fontsize=7, color="C2", va="bottom", ha="right")
    ax.set_xlabel("predicted latency (ms)")
    ax.set_ylabel("validation accuracy")
    ax.legend(loc="lower right", fontsize=8)
    ax.grid(alpha=0.3)
    return ax


def save_run_plots(run_dir: Path, trials: pd.DataFrame, pareto: pd.DataFrame, references: dict,
                   target_ms: float | None) -> None:
    for name, draw in (
        ("reward.png", lambda ax: plot_rewards(trials, ax=ax)),
        ("acc_vs_latency.png",
         lambda ax: plot_accuracy_vs_latency(trials, pareto, references, target_ms, ax=ax)),
    ):
        fig = Figure(figsize=(6, 4))
        FigureCanvasAgg(fig)
        draw(fig.add_subplot())
        fig.tight_layout()
        tmp = run_dir / f".{name}.tmp.png"
        fig.savefig(tmp, dpi=110)
        tmp.replace(run_dir / name)

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
from matplotlib.ticker import MaxNLocator

from hwnas.common.atomic import atomic_write


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
    ax.plot(done["number"], y.cummax(), color="C3", drawstyle="steps-post", label="best so far")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("trial")
    ax.set_ylabel(col)
    ax.legend(loc="upper left", bbox_to_anchor=(1.02, 1.0), fontsize=8, frameon=False)
    ax.grid(alpha=0.3)
    return ax


def plot_accuracy_vs_latency(trials: pd.DataFrame, pareto: pd.DataFrame, references: dict,
                             target_ms: float | None = None, ax=None,  # noqa: ANN001
                             family: list[dict] | None = None):  # noqa: ANN201
    """Validation accuracy vs predicted latency; references as vertical marks.

    ``family``: hand-designed nets scored by the run's estimator
    (``[{name, width, latency_ms, accuracy}]``, :mod:`hwnas.search.family`),
    drawn as points on the same axes, one line per network, and left out of the
    vertical marks.
    """
    ax = _ax(ax)
    family = family or []
    for i, name in enumerate(sorted({f["name"] for f in family})):
        pts = sorted((f for f in family if f["name"] == name), key=lambda f: f["latency_ms"])
        widths = ", ".join(format(f["width"], "g") for f in pts)
        ax.plot([f["latency_ms"] for f in pts], [f["accuracy"] for f in pts], "-s", ms=5,
                color=f"C{4 + i}", label=f"{name} x{widths} (same estimator)")
    drawn = {f["name"] for f in family}
    references = {n: ms for n, ms in (references or {}).items() if n not in drawn}
    done = trials[(trials["state"] == "COMPLETE") & trials["accuracy"].notna()]
    ax.scatter(done["latency_ms"], done["accuracy"], s=14, alpha=0.6, label="trials")
    if len(pareto):
        p = pareto.sort_values("latency_ms")
        ax.plot(p["latency_ms"], p["accuracy"], "-o", color="C3", ms=4, label="Pareto front")
    if target_ms:
        ax.axvline(target_ms, color="k", ls="--", lw=1, label=f"target {target_ms:g} ms")
    # Reference nets as dotted lines named in the legend (their latencies crowd
    # together, so labels on the plot would overlap).
    refs = sorted((references or {}).items(), key=lambda kv: kv[1])
    colors = _colors("viridis", len(refs))
    for (name, ms), color in zip(refs, colors, strict=True):
        ax.axvline(ms, color=color, lw=1.0, ls=":", label=f"{name} {ms:.1f} ms")
    ax.set_xlabel("predicted latency (ms)")
    ax.set_ylabel("validation accuracy")
    ax.legend(loc="upper left", bbox_to_anchor=(1.02, 1.0), fontsize=7, frameon=False)
    ax.grid(alpha=0.3)
    return ax


def _colors(name: str, n: int) -> list:
    """``n`` colours spread over a matplotlib colormap."""
    from matplotlib import colormaps

    cmap = colormaps[name]
    return [cmap(0.9 * i / max(1, n - 1)) for i in range(n)]


def save_run_plots(run_dir: Path, trials: pd.DataFrame, pareto: pd.DataFrame, references: dict,
                   target_ms: float | None, family: list[dict] | None = None) -> None:
    for name, draw in (
        ("reward.png", lambda ax: plot_rewards(trials, ax=ax)),
        ("acc_vs_latency.png",
         lambda ax: plot_accuracy_vs_latency(trials, pareto, references, target_ms, ax=ax,
                                             family=family)),
    ):
        fig = Figure(figsize=(8, 4))
        FigureCanvasAgg(fig)
        draw(fig.add_subplot())
        # bbox_inches="tight" keeps the legend beside the axes
        atomic_write(run_dir / name, lambda f, fig=fig: fig.savefig(f, format="png", dpi=110,
                                                                     bbox_inches="tight"))

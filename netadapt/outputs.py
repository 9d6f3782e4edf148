"""The output folder of a refine: state for resuming, history, plot, final files.

Layout of ``<out>/``::

    config.yaml        the resolved run.yaml (format_version inside)
    state.json         last finished iteration: arch, weights file, latency, accuracy
    iter_NNNN.pt       weights of that iteration (state_dict); older ones are removed
    pretrained.pt      the input after its initial training (inputs without weights)
    history.parquet    one row per proposal (also history.csv)
    arch.txt           the final architecture string
    final.pt           final weights (state_dict) after the long-term fine-tune
    final.onnx         the final net with those weights
    final.json         summary: latency (predicted, and measured where the target can measure) and accuracy before/after
    trajectory.png     accuracy vs predicted latency per iteration

Every file is written to a temporary name and renamed, so an interrupted
refine leaves the previous iteration's files intact.
"""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from hwnas.common.atomic import (
    atomic_save_figure,
    atomic_write_df,
    atomic_write_text,
)
from hwnas.common.errors import HwnasError

STATE_FORMAT_VERSION = 1
HISTORY_COLUMNS = [
    "iteration", "unit", "filters_before", "filters_after", "latency_ms", "latency_drop_ms",
    "accuracy", "accuracy_change", "score", "selected", "dr_ms", "constraint_ms", "seconds",
]


def write_json(path: Path, data: dict) -> None:
    atomic_write_text(path, json.dumps(data, indent=2) + "\n")


def read_json(path: Path) -> dict:
    return json.loads(Path(path).read_text())


def read_state(out: Path) -> dict | None:
    """The saved state of ``out``, or None when no iteration has finished there."""
    p = out / "state.json"
    if not p.is_file():
        return None
    state = json.loads(p.read_text())
    version = state.get("format_version")
    if version != STATE_FORMAT_VERSION:
        raise HwnasError(f"{p}: state format_version {version!r}; this hwnas reads "
                         f"{STATE_FORMAT_VERSION}")
    return state


def history_frame(rows: list[dict]) -> pd.DataFrame:
    df = pd.DataFrame(rows, columns=HISTORY_COLUMNS)
    return df.astype({"iteration": "int64", "filters_before": "int64", "filters_after": "int64",
                      "selected": "bool"})


def read_history(out: Path, upto: int) -> list[dict]:
    """History rows of iterations ``<= upto`` (later ones belong to an unfinished iteration)."""
    p = out / "history.parquet"
    if not p.is_file():
        return []
    df = pd.read_parquet(p)
    return df[df["iteration"] <= upto].to_dict("records")


def write_history(out: Path, rows: list[dict]) -> None:
    df = history_frame(rows)
    atomic_write_df(df, out / "history.parquet")
    atomic_write_df(df, out / "history.csv")


def plot_trajectory(path: Path, rows: list[dict], initial: tuple[float, float],
                    final: tuple[float, float] | None, goal_ms: float) -> Path:
    """Accuracy vs predicted latency: every proposal, the chosen path, the final net."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    df = history_frame(rows)
    fig, ax = plt.subplots(figsize=(7, 4.5))
    if not df.empty:
        ax.scatter(df["latency_ms"], 100 * df["accuracy"], s=10, c="0.75", label="proposals")
    chosen = df[df["selected"]].sort_values("iteration")
    xs = [initial[0], *chosen["latency_ms"]]
    ys = [100 * initial[1], *(100 * chosen["accuracy"])]
    ax.plot(xs, ys, "o-", c="tab:blue", ms=4, label="selected (short-term fine-tuned)")
    for it, x, y in zip(chosen["iteration"], chosen["latency_ms"], 100 * chosen["accuracy"],
                        strict=True):
        ax.annotate(str(it), (x, y), textcoords="offset points", xytext=(3, 3), fontsize=7)
    ax.plot([initial[0]], [100 * initial[1]], "*", c="k", ms=12, label="input")
    if final is not None:
        ax.plot([final[0]], [100 * final[1]], "*", c="tab:red", ms=12, label="final (long-term)")
    ax.axvline(goal_ms, ls="--", c="tab:green", lw=1, label=f"goal {goal_ms:.2f} ms")
    ax.set_xlabel("predicted latency (ms)")
    ax.set_ylabel("held-out accuracy (%)")
    ax.set_title("NetAdapt trajectory")
    ax.invert_xaxis()
    ax.legend(fontsize=8, loc="best")
    fig.tight_layout()
    try:
        return atomic_save_figure(fig, path)
    finally:
        plt.close(fig)

"""Validation of a measured target: random networks measured end to end vs predicted.

:func:`validate` measures random networks of a space end to end
(:func:`hwnas.latency.measurement.measure_arch`, through the target),
compares them with the predictions; :func:`record_validation` stores the
errors in the table's provenance (``nas-latency targets`` shows them) and
:func:`write_validation` writes the CSV and the plot.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from hwnas.common.errors import HwnasError

from .measured_target import MeasuredTarget
from .table import now_iso
from .target import Target


@dataclass(frozen=True)
class Validation:
    """Predicted vs measured end-to-end latencies of random networks of a space."""

    rows: pd.DataFrame  # arch, predicted_ms, measured_ms, p10_ms, p90_ms, error
    mape: float  # mean |predicted / measured - 1|
    max_error: float  # largest |predicted / measured - 1|
    spearman: float

    def summary(self) -> dict:
        return {
            "n": len(self.rows),
            "mape": self.mape,
            "max_error": self.max_error,
            "spearman": self.spearman,
        }


def validate(
    target: Target,
    space: Any,
    n: int = 20,
    seed: int = 0,
    resolution: int = 224,
    progress: Callable[[int], None] | None = None,
) -> Validation:
    """Measure ``n`` random networks of ``space`` end to end and compare with predictions.

    Predictions come first (missing layers are measured then); each network
    is measured with the target's runner and protocol.
    """
    from scipy.stats import spearmanr

    from .space_latency import resolve_space

    if not target.can_measure:
        raise target.not_measured_here()
    if n < 2:
        raise HwnasError(f"validation needs at least 2 networks, got {n}")
    sp = resolve_space(space)
    rng = np.random.default_rng(seed)
    archs = [sp.sample_random(rng) for _ in range(n)]
    predicted = [target.predict(a, resolution) for a in archs]
    rows = []
    for arch, pred in zip(archs, predicted, strict=True):
        s = target.measure(arch, resolution)
        rows.append(
            {
                "arch": arch.to_str(),
                "predicted_ms": pred,
                "measured_ms": s.median,
                "p10_ms": s.p10,
                "p90_ms": s.p90,
                "error": pred / s.median - 1.0,
            }
        )
        if progress:
            progress(1)
    frame = pd.DataFrame(rows)
    err = frame["error"].abs()
    rho = float(spearmanr(frame["predicted_ms"], frame["measured_ms"]).statistic)
    return Validation(frame, float(err.mean()), float(err.max()), rho)


def record_validation(target: MeasuredTarget, result: Validation, **context: Any) -> None:
    """Store the numbers of ``result`` (and e.g. space, seed, resolution) in the provenance."""
    target.table = target.table.update(
        provenance={"validation": {**result.summary(), **context, "date": now_iso()}}
    )


def write_validation(result: Validation, out: Path, title: str) -> tuple[Path, Path]:
    """``validation.csv`` and a predicted-vs-measured ``validation.png`` in ``out`` (atomic)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    from hwnas.common.atomic import atomic_save_figure, atomic_write_df

    out.mkdir(parents=True, exist_ok=True)
    csv, png = out / "validation.csv", out / "validation.png"
    atomic_write_df(result.rows, csv)
    fig = Figure(figsize=(5, 5))
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    r = result.rows
    ax.scatter(r["measured_ms"], r["predicted_ms"], s=18)
    lo = min(r["measured_ms"].min(), r["predicted_ms"].min()) * 0.95
    hi = max(r["measured_ms"].max(), r["predicted_ms"].max()) * 1.05
    ax.plot([lo, hi], [lo, hi], "k--", lw=0.8, label="predicted = measured")
    ax.set(
        xlim=(lo, hi),
        ylim=(lo, hi),
        xlabel="measured (ms)",
        ylabel="predicted (ms)",
        title=f"{title}\nMAPE {result.mape:.1%}, max {result.max_error:.1%}, "
        f"Spearman {result.spearman:.3f}",
    )
    ax.legend(loc="upper left")
    fig.tight_layout()
    atomic_save_figure(fig, png)
    return csv, png

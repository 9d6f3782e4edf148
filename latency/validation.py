"""Validation of a measured target: random networks measured end to end vs predicted.

:func:`validate` measures random networks of a space end to end the way a
user would (:data:`~hwnas.latency.measurement.STANDARD`: warm, repeated
``session.run``; see :mod:`hwnas.latency.measurement`) and, when asked, also
under the cache-flushed layer protocol, and compares both with the
predictions. :func:`fidelity` holds the statistics (share within a band,
MAPE, largest error, mean signed error, Spearman) as a pure function;
:func:`record_validation` stores them in the table's provenance
(``nas-latency targets`` shows them) and :func:`write_validation` writes the
CSV and the plot.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from hwnas.common.errors import HwnasError

from .measured_target import MeasuredTarget
from .measurement import FLUSHED, STANDARD
from .table import now_iso
from .target import Target

BAND = 0.10  # the +-10% band of nn-Meter's headline metric (Zhang et al., MobiSys 2021)


def fidelity(predicted: Sequence[float], measured: Sequence[float], band: float = BAND) -> dict:
    """How well ``predicted`` matches ``measured`` (same order, milliseconds).

    Returns ``n``, ``within`` (share with ``|p/m - 1| <= band``), ``mape``
    (mean ``|p/m - 1|``), ``max_error``, ``bias`` (mean ``p/m - 1``) and
    ``spearman`` (rank correlation; NaN when either side is constant).

    >>> r = fidelity([1.1, 2.0, 2.5], [1.0, 2.0, 2.0])
    >>> r["within"], round(r["mape"], 4), r["max_error"], r["spearman"]
    (0.6666666666666666, 0.1167, 0.25, 1.0)
    """
    from scipy.stats import spearmanr

    p = np.asarray(predicted, dtype=float)
    m = np.asarray(measured, dtype=float)
    if p.shape != m.shape or p.ndim != 1 or p.size < 2:
        raise HwnasError(
            f"fidelity needs two equal-length lists of at least 2 latencies, got "
            f"{p.size} and {m.size}"
        )
    if (m <= 0).any():
        raise HwnasError(f"measured latencies must be > 0 ms, got {float(m.min())}")
    err = p / m - 1.0
    rho = np.nan
    if np.ptp(p) > 0 and np.ptp(m) > 0:
        rho = float(spearmanr(p, m).statistic)
    return {
        "n": int(p.size),
        "within": float(np.mean(np.abs(err) <= band + 1e-12)),
        "band": band,
        "mape": float(np.mean(np.abs(err))),
        "max_error": float(np.max(np.abs(err))),
        "bias": float(np.mean(err)),
        "spearman": rho,
    }


@dataclass(frozen=True)
class Validation:
    """Predicted vs measured end-to-end latencies of random networks of a space.

    ``rows``: arch, predicted_ms, measured_ms, p10_ms, p90_ms, error (against
    the standard measurement), and with the flushed protocol also
    flushed_ms, flushed_p10_ms, flushed_p90_ms, flushed_error.
    """

    rows: pd.DataFrame
    mape: float  # mean |predicted / measured - 1| (standard measurement)
    max_error: float  # largest |predicted / measured - 1|
    spearman: float
    stats: dict = field(default_factory=dict)  # fidelity() against the standard measurement
    flushed: dict | None = None  # fidelity() against the flushed protocol, when measured

    def summary(self) -> dict:
        out = {
            "n": len(self.rows),
            "mape": self.mape,
            "max_error": self.max_error,
            "spearman": self.spearman,
            "within": self.stats.get("within"),
            "bias": self.stats.get("bias"),
            "measured_as": STANDARD,
        }
        if self.flushed is not None:
            out["flushed"] = self.flushed
        return out


def validate(
    target: Target,
    space: Any,
    n: int = 20,
    seed: int = 0,
    resolution: int = 224,
    progress: Callable[[int], None] | None = None,
    *,
    flushed: bool = False,
) -> Validation:
    """Measure ``n`` random networks of ``space`` end to end and compare with predictions.

    Predictions come first (missing layers are measured then); each network
    is measured with the target's runner under the standard protocol and,
    with ``flushed``, also under the cache-flushed one.
    """
    from .space_latency import resolve_space

    if not target.can_measure:
        raise target.not_measured_here()
    if n < 2:
        raise HwnasError(f"validation needs at least 2 networks, got {n}")
    sp = resolve_space(space)
    rng = np.random.default_rng(seed)
    archs = [sp.sample_random(rng) for _ in range(n)]
    predicted = [target.predict(a, resolution) for a in archs]
    protocols = (STANDARD, FLUSHED) if flushed else (STANDARD,)
    rows = []
    for arch, pred in zip(archs, predicted, strict=True):
        row: dict[str, Any] = {"arch": arch.to_str(), "predicted_ms": pred}
        for proto in protocols:
            s = measure_network(target, arch, resolution, proto)
            pre = "" if proto == STANDARD else f"{proto}_"
            row.update(
                {
                    f"{pre or 'measured_'}ms": s.median,
                    f"{pre}p10_ms": s.p10,
                    f"{pre}p90_ms": s.p90,
                    f"{pre}error": pred / s.median - 1.0,
                }
            )
        rows.append(row)
        if progress:
            progress(1)
    frame = pd.DataFrame(rows)
    stats = fidelity(frame["predicted_ms"], frame["measured_ms"])
    other = fidelity(frame["predicted_ms"], frame["flushed_ms"]) if flushed else None
    return Validation(frame, stats["mape"], stats["max_error"], stats["spearman"], stats, other)


def measure_network(target: Target, arch: Any, resolution: int, protocol: str = STANDARD) -> Any:
    """``arch`` measured end to end on ``target`` under ``protocol`` (standard or flushed)."""
    if not target.can_measure:
        raise target.not_measured_here()
    return target.measure(arch, resolution, protocol=protocol)


def record_validation(target: MeasuredTarget, result: Validation, **context: Any) -> None:
    """Store the numbers of ``result`` (and e.g. space, seed, resolution) in the provenance."""
    target.table = target.table.update(
        provenance={"validation": {**result.summary(), **context, "date": now_iso()}}
    )


def write_validation(result: Validation, out: Path, title: str) -> tuple[Path, Path]:
    """``validation.csv`` and a predicted-vs-measured ``validation.png`` in ``out`` (atomic).

    The plot shows each network against its standard measurement (with the
    p10-p90 spread) and, when measured, against the flushed one, with the
    line ``predicted = measured`` and the +-10% band.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    from hwnas.common.atomic import atomic_save_figure, atomic_write_df

    out.mkdir(parents=True, exist_ok=True)
    csv, png = out / "validation.csv", out / "validation.png"
    atomic_write_df(result.rows, csv)
    fig = Figure(figsize=(5.5, 5.5))
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    r = result.rows
    cols = [c for c in ("measured_ms", "flushed_ms") if c in r]
    lo = min(min(r[c].min() for c in cols), r["predicted_ms"].min()) * 0.9
    hi = max(max(r[c].max() for c in cols), r["predicted_ms"].max()) * 1.1
    xs = np.array([lo, hi])
    ax.fill_between(xs, xs * (1 - BAND), xs * (1 + BAND), color="0.9", label="±10%")
    ax.plot(xs, xs, "k--", lw=0.8, label="predicted = measured")
    ax.errorbar(
        r["measured_ms"],
        r["predicted_ms"],
        xerr=[r["measured_ms"] - r["p10_ms"], r["p90_ms"] - r["measured_ms"]],
        fmt="o",
        ms=4,
        lw=0.6,
        label="standard (warm session.run), p10-p90",
    )
    if "flushed_ms" in r:
        ax.scatter(r["flushed_ms"], r["predicted_ms"], s=14, marker="x", label="cache-flushed")
    s = result.stats
    within = f"{s['within']:.0%} within ±10%, " if s else ""
    ax.set(
        xlim=(lo, hi),
        ylim=(lo, hi),
        xlabel="measured (ms)",
        ylabel="predicted (ms)",
        title=f"{title}\n{within}MAPE {result.mape:.1%}, max {result.max_error:.1%}, "
        f"Spearman {result.spearman:.3f}",
    )
    ax.legend(loc="upper left", fontsize=8)
    fig.tight_layout()
    atomic_save_figure(fig, png)
    return csv, png

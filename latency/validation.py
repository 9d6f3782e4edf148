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

from .correction import ANCHORS, BAND
from .measured_target import MeasuredTarget
from .measurement import FLUSHED, STANDARD, reuse_exports
from .table import now_iso
from .target import Target

# Each network is measured in this many rounds, interleaved with the other networks, and the
# least disturbed round (lowest median) counts. The spread is not the session or the clock:
# one session run continuously for 3 minutes moved by 7.7% (SD of 20-run medians), two
# networks moving together, with the memory bandwidth left by other cores and tenants, not
# with preemption (wall = CPU time), steal or the clock frequency (bench/noise_floor.py,
# 2026-12-02). So more rounds spread over the whole call: two independent 6-round
# measurements of one network differ by a median 2.7% (p90 4.9%), 3-round ones 3.2% (p90 7.2%).
ROUNDS = 6

def fidelity(predicted: Sequence[float], measured: Sequence[float], band: float = BAND) -> dict:
    """How well ``predicted`` matches ``measured`` (same order, milliseconds).

    Returns ``n``, ``within`` (share with ``|p/m - 1| <= band``), ``mape``
    (mean ``|p/m - 1|``), ``max_error``, ``bias`` (mean ``p/m - 1``) and
    ``spearman`` (rank correlation; NaN when either side is constant).

    >>> r = fidelity([1.1, 2.0, 2.5], [1.0, 2.0, 2.0])
    >>> r["within"], round(r["mape"], 4), r["max_error"], round(r["spearman"], 4)
    (0.6666666666666666, 0.1167, 0.25, 0.866)
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
    rounds: int = 1  # interleaved rounds per network (the least disturbed counts)
    calibration_overlap: int = 0  # networks that the target's correction was fitted on
    # fidelity() of the predictions scaled by the machine's level (anchor panel now / then),
    # with the anchors' times; None when the target stores no anchors (older tables)
    level: dict | None = None

    def summary(self) -> dict:
        out = {
            "n": len(self.rows),
            "mape": self.mape,
            "max_error": self.max_error,
            "spearman": self.spearman,
            "within": self.stats.get("within"),
            "bias": self.stats.get("bias"),
            "measured_as": STANDARD,
            "rounds": self.rounds,
            "round_spread_median": float(self.rows["round_spread"].median()),
            "calibration_overlap": self.calibration_overlap,
        }
        if self.flushed is not None:
            out["flushed"] = self.flushed
        if self.level is not None:
            out["level_corrected"] = self.level
        return out


def validate(
    target: Target,
    space: Any,
    n: int = 20,
    seed: int = 0,
    resolution: int = 224,
    progress: Callable[[float], None] | None = None,
    *,
    flushed: bool = False,
    rounds: int = ROUNDS,
) -> Validation:
    """Measure ``n`` random networks of ``space`` end to end and compare with predictions.

    Predictions come first (missing layers are measured then); each network
    is measured with the target's runner under the standard protocol and,
    with ``flushed``, also under the cache-flushed one, in ``rounds``
    interleaved rounds (:func:`measure_networks`). ``progress`` gets the
    fraction of a network done with each measurement.

    When the target stores an anchor panel (:func:`stored_anchors`, written by
    ``build --calibrate``), its networks are measured first in every standard round too
    (any that is one of the validated networks is left out), and ``level``
    (``summary()["level_corrected"]``) scores the predictions times the machine's level
    (:func:`panel_level`) against the same measurements; the other fields are unchanged.
    """
    if not target.can_measure:
        raise target.not_measured_here()
    if n < 2:
        raise HwnasError(f"validation needs at least 2 networks, got {n}")
    archs = validation_archs(space, n, seed)
    predicted = [target.predict(a, resolution) for a in archs]
    protocols = (STANDARD, FLUSHED) if flushed else (STANDARD,)
    rows: list[dict[str, Any]] = [
        {"arch": a.to_str(), "predicted_ms": p} for a, p in zip(archs, predicted, strict=True)
    ]
    step = None if progress is None else (lambda k: progress(k / len(protocols)))
    then = stored_anchors(target)
    panel = apart(then, archs) if then else None
    anchor_rounds: list[list[Any]] = []
    for proto in protocols:
        pre = "" if proto == STANDARD else f"{proto}_"
        measured, got = measure_with_anchors(target, archs, resolution,
                                             panel if proto == STANDARD else None, proto,
                                             rounds, step, anchor_shape=anchor_shape(then))
        anchor_rounds = got if proto == STANDARD else anchor_rounds
        for row, (s, spread) in zip(rows, measured, strict=True):
            row.update(
                {
                    f"{pre or 'measured_'}ms": s.median,
                    f"{pre}p10_ms": s.p10,
                    f"{pre}p90_ms": s.p90,
                    f"{pre}round_spread": spread,
                    f"{pre}error": row["predicted_ms"] / s.median - 1.0,
                }
            )
    frame = pd.DataFrame(rows)
    stats = fidelity(frame["predicted_ms"], frame["measured_ms"])
    other = fidelity(frame["predicted_ms"], frame["flushed_ms"]) if flushed else None
    corr = getattr(target, "correction", None)
    fitted = {(n.get("arch"), n.get("resolution")) for n in (corr.nets if corr else ())}
    overlap = sum((a.to_str(), resolution) in fitted for a in archs)
    level = None
    if then is not None and panel:
        level = level_corrected(frame, {**then, "nets": panel}, anchor_rounds)
    return Validation(
        frame, stats["mape"], stats["max_error"], stats["spearman"], stats, other, rounds, overlap,
        level,
    )


def stored_anchors(target: Target) -> dict | None:
    """The anchor panel stored in ``target``'s provenance by ``build --calibrate`` (``nets``:
    name, arch, then_ms; resolution, num_classes, date), or None: a table calibrated before
    anchors (its one-network ``reference`` is not read: a worse gauge than none) or never."""
    table = getattr(target, "table", None)
    got = getattr(table, "provenance", {}).get(ANCHORS) if table is not None else None
    nets = got.get("nets") if isinstance(got, dict) else None
    if not isinstance(nets, list) or not nets or not all(
            isinstance(got.get(k), int) and got[k] > 0 for k in ("resolution", "num_classes")):
        return None
    for a in nets:
        ms = a.get("then_ms") if isinstance(a, dict) else None
        if not (isinstance(a, dict) and isinstance(a.get("arch"), str) and isinstance(
                ms, (int, float)) and np.isfinite(ms) and ms > 0):
            return None
    return got


def anchor_shape(panel: dict | None) -> tuple[int, int] | None:
    """The (resolution, classes) the anchors of ``panel`` were measured at, if stored."""
    return None if not panel else (int(panel["resolution"]), int(panel["num_classes"]))


def apart(panel: dict, archs: Sequence[Any]) -> list[dict]:
    """The anchors of ``panel`` that are none of ``archs``: a network is never its own gauge."""
    drawn = {a.to_str() for a in archs}
    return [a for a in panel["nets"] if a["arch"] not in drawn]


def panel_level(then_ms: Sequence[float], rounds_ms: Sequence[Sequence[float]]) -> tuple[
        float, list[float]]:
    """The machine's level: the median over anchors of (the anchor's median over its rounds
    now / ``then_ms``), and each anchor's ratio. ``rounds_ms[a]``: anchor ``a``'s round medians.

    Contention only adds time and hits a round of one network as often as a round of
    another, so each anchor's median over rounds and the median over anchors shrug off a
    disturbed round or anchor, where one anchor's fastest round moved by 3-8.5% alone.

    >>> panel_level([2.0, 10.0, 4.0], [[2.2, 2.1, 9.0], [11.0, 10.5, 11.5], [4.0, 4.4, 4.2]])
    (1.05, [1.1, 1.1, 1.05])
    """
    if not rounds_ms or len(then_ms) != len(rounds_ms) or not all(len(r) for r in rounds_ms):
        raise HwnasError(f"a level needs rounds of each of {len(then_ms)} anchors, got "
                         f"{[len(r) for r in rounds_ms]}")
    ratios = [float(np.median(r)) / float(t) for t, r in zip(then_ms, rounds_ms, strict=True)]
    return float(np.median(ratios)), ratios


def level_corrected(frame: pd.DataFrame, then: dict, anchor_rounds: Sequence[Sequence[Any]]
                    ) -> dict:
    """Add ``level_predicted_ms`` and ``level_error`` to ``frame`` (the predictions times the
    level of :func:`panel_level`: ``then["nets"]``' then_ms against ``anchor_rounds``, each
    anchor's ``Stats`` per round) and return fidelity() of them with the anchors' numbers."""
    nets = then["nets"]
    rounds_ms = [[float(s.median) for s in r] for r in anchor_rounds]
    level, ratios = panel_level([a["then_ms"] for a in nets], rounds_ms)
    frame["level_predicted_ms"] = frame["predicted_ms"] * level
    frame["level_error"] = frame["level_predicted_ms"] / frame["measured_ms"] - 1.0
    return {
        **fidelity(frame["level_predicted_ms"], frame["measured_ms"]),
        "scaled": "predictions",
        "level": level,
        "anchors": len(nets),
        "anchor_levels": {a.get("name", a["arch"]): r for a, r in zip(nets, ratios, strict=True)},
        "anchor_rounds_ms": {a.get("name", a["arch"]): r for a, r in zip(nets, rounds_ms,
                                                                          strict=True)},
        "then_date": then.get("date"),
    }


def validation_archs(space: Any, n: int, seed: int = 0) -> list[Any]:
    """The ``n`` random networks :func:`validate` draws (``default_rng(seed)``)."""
    from .space_latency import resolve_space

    sp = resolve_space(space)
    rng = np.random.default_rng(seed)
    return [sp.sample_random(rng) for _ in range(n)]


def least_disturbed(rounds: Sequence[Any]) -> tuple[Any, float]:
    """The round with the lowest median, and the spread of the round medians
    (``max / min - 1``), of one network's repeated measurements (``Stats``).

    >>> from hwnas.latency.runners import Stats
    >>> best, spread = least_disturbed([Stats(11.0, 10.0, 13.0, 50), Stats(10.0, 9.5, 11.0, 50)])
    >>> best, round(spread, 6)
    (Stats(median=10.0, p10=9.5, p90=11.0, n=50), 0.1)
    """
    if not rounds:
        raise HwnasError("least_disturbed needs at least one measurement")
    best = min(rounds, key=lambda s: s.median)
    top = max(s.median for s in rounds)
    return best, (top / best.median - 1.0) if best.median > 0 else 0.0


def measure_networks(
    target: Target,
    archs: Sequence[Any],
    resolution: int = 224,
    protocol: str = STANDARD,
    rounds: int = ROUNDS,
    progress: Callable[[float], None] | None = None,
    num_classes: int = 1000,
) -> list[tuple[Any, float]]:
    """Each network measured end to end in ``rounds`` rounds, interleaved (every network
    once per round), as :func:`least_disturbed` of its rounds: ``(Stats, spread)``.

    Interleaving spreads each network's rounds over the whole call, so a burst
    of load from other processes disturbs one round of many networks rather
    than every round of one. Each network is exported once
    (:func:`~hwnas.latency.measurement.reuse_exports`); every round builds a
    fresh session. ``progress`` gets ``1 / rounds`` per measurement.
    """
    got, _ = measure_with_anchors(target, archs, resolution, None, protocol, rounds, progress,
                                  num_classes)
    return got


def measure_with_anchors(
    target: Target,
    archs: Sequence[Any],
    resolution: int = 224,
    anchors: Sequence[dict] | None = None,
    protocol: str = STANDARD,
    rounds: int = ROUNDS,
    progress: Callable[[float], None] | None = None,
    num_classes: int = 1000,
    anchor_shape: tuple[int, int] | None = None,
) -> tuple[list[tuple[Any, float]], list[list[Any]]]:
    """:func:`measure_networks`, and the ``anchors`` (each with ``arch``, an arch string) too,
    first in every round, at ``anchor_shape`` (resolution, classes; default the networks').

    Returns the networks' ``(Stats, spread)`` and each anchor's ``Stats`` of each round
    (``[]`` without anchors). ``progress`` counts the networks only."""
    from hwnas.space.spec import Arch

    if rounds < 1:
        raise HwnasError(f"rounds must be >= 1, got {rounds}")
    if not target.can_measure:
        raise target.not_measured_here()
    panel = [Arch.from_str(a["arch"]) for a in anchors or ()]
    ares, acls = anchor_shape or (resolution, num_classes)
    seen: list[list[Any]] = [[] for _ in archs]
    anchor_seen: list[list[Any]] = [[] for _ in panel]
    with reuse_exports():
        for _ in range(rounds):
            for got, arch in zip(anchor_seen, panel, strict=True):
                got.append(target.measure(arch, ares, acls, protocol=protocol))
            for i, arch in enumerate(archs):
                seen[i].append(target.measure(arch, resolution, num_classes, protocol=protocol))
                if progress:
                    progress(1 / rounds)
    return [least_disturbed(r) for r in seen], anchor_seen


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
    ax.fill_between(xs, xs * (1 - BAND), xs * (1 + BAND), color="0.9", label=f"±{BAND:.0%}")
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

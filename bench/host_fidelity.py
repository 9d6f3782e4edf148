"""Benchmark: how well ``host`` predicts whole networks as a user measures them.

    HWNAS_HOME=DIR taskset -c 0 .venv/bin/python bench/host_fidelity.py --space mobilenetv3 \\
        --n 100 [--rounds 6] [--lock /tmp/hwnas-core0.lock] [--block 20] [--flushed]

Draws the ``--n`` random networks ``nas-latency validate --seed S`` draws
(:func:`hwnas.latency.validation.validation_archs`), predicts each with the
``host`` target under ``HWNAS_HOME`` twice, with its learned correction
(``build --calibrate``; :mod:`hwnas.latency.correction`) and as the raw layer
sum, and measures each end to end the standard way (warm, repeated
``session.run``, one thread) in ``--rounds`` interleaved rounds (default
:data:`hwnas.latency.validation.ROUNDS`, as ``validate``), the least
disturbed round counting (:func:`hwnas.latency.validation.measure_networks`),
and with ``--flushed`` also under the cache-flushed layer protocol. When the
table stores an anchor panel (``build --calibrate``), each block also measures
its networks first in every round (anchors that are benchmark networks are left
out), and ``corrected_level`` / ``raw_level`` score the predictions scaled by
that block's level (:func:`hwnas.latency.validation.panel_level`: the median over
anchors of their median round now / at calibration), so each network is scaled
by the level measured beside it in time; ``corrected_level_run`` /
``raw_level_run`` by one level from all blocks' rounds together. With
``--lock``, each block of ``--block`` networks is measured holding that file
lock (``flock``'s), so other timing jobs on the core interleave with this one.

``--refit`` first fits the stored correction again on its stored networks
(:func:`hwnas.latency.correction.refit`, no measuring); ``--from-csv FILE``
takes the measurements from an earlier run's CSV (same networks, same order)
instead of measuring, and says so in the JSON.

Writes ``bench/results/host_fidelity_<space>[_tag].json`` (statistics of
both predictions, the repeatability of the measurement itself, the 5 worst
networks, whether any network was one the correction was fitted on, machine,
load, date, command) and the per-network CSV beside it. Goals (issue 13):
>= 95% within ±10%, MAPE <= 4%, Spearman >= 0.98.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import fcntl
import json
import os
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd

from hwnas.common.atomic import atomic_write_df, atomic_write_text
from hwnas.latency import load_target
from hwnas.latency.correction import refit
from hwnas.latency.measured_target import MeasuredTarget
from hwnas.latency.measurement import FLUSHED, STANDARD
from hwnas.latency.runners.protocol import cpu_model, device_info
from hwnas.latency.validation import (
    ROUNDS,
    anchor_shape,
    apart,
    fidelity,
    measure_with_anchors,
    panel_level,
    stored_anchors,
    validation_archs,
)

RESULTS = Path(__file__).resolve().parent / "results"
GOALS = {"within": 0.95, "mape": 0.04, "spearman": 0.98}


@contextlib.contextmanager
def held(lock: Path | None) -> Iterator[None]:
    """Hold ``lock`` (an exclusive ``flock``, as the ``flock`` command takes it), if given."""
    if lock is None:
        yield
        return
    with open(lock, "a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--space", default="mobilenetv3")
    p.add_argument("--n", type=int, default=100)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--resolution", type=int, default=224)
    p.add_argument("--rounds", type=int, default=ROUNDS)
    p.add_argument("--flushed", action="store_true")
    p.add_argument("--lock", type=Path, default=None, help="flock this file around each block")
    p.add_argument("--block", type=int, default=20, help="networks measured per lock hold")
    p.add_argument("--tag", default="", help="suffix of the result files")
    p.add_argument("--refit", action="store_true", help="refit the correction on its networks")
    p.add_argument("--from-csv", type=Path, default=None, help="measurements of an earlier run")
    args = p.parse_args(argv)

    target = load_target("host")
    assert isinstance(target, MeasuredTarget)
    if args.refit:
        refit(target)
    raw = MeasuredTarget(target.name, target.table, target.runner, corrected=False)
    archs = validation_archs(args.space, args.n, args.seed)
    rows = pd.DataFrame(
        {
            "arch": [a.to_str() for a in archs],
            "predicted_ms": [target.predict(a, args.resolution) for a in archs],
            "raw_ms": [raw.predict(a, args.resolution) for a in archs],
        }
    )
    load_before = os.getloadavg()
    start = time.perf_counter()
    held_s = 0.0
    protocols = (STANDARD, FLUSHED) if args.flushed else (STANDARD,)
    if args.from_csv is not None:
        old = pd.read_csv(args.from_csv)
        if old["arch"].tolist() != rows["arch"].tolist():
            raise SystemExit(f"{args.from_csv}: not the networks of --space/--n/--seed")
        keep = [c for c in old if c.startswith(("measured_", "flushed_"))]
        rows[keep] = old[keep]
    then = stored_anchors(target) if args.from_csv is None else None
    panel = apart(then, archs) if then else []
    then_ms = [a["then_ms"] for a in panel]
    blocks: list[dict] = []  # each block's level, anchor ratios and anchor round medians
    for lo in range(0, args.n if args.from_csv is None else 0, args.block):
        block = archs[lo : lo + args.block]
        with held(args.lock):
            t0 = time.perf_counter()
            for proto in protocols:
                pre = "measured_" if proto == STANDARD else f"{proto}_"
                ref = panel if proto == STANDARD else None
                got, anchor_rounds = measure_with_anchors(target, block, args.resolution, ref,
                                                          proto, args.rounds,
                                                          anchor_shape=anchor_shape(then))
                for i, (s, spread) in enumerate(got, lo):
                    rows.loc[i, [f"{pre}ms", f"{pre}p10_ms", f"{pre}p90_ms", f"{pre}spread"]] = (
                        s.median, s.p10, s.p90, spread)
                if panel and proto == STANDARD:  # this block's level, measured beside it
                    ms = [[float(r.median) for r in a] for a in anchor_rounds]
                    level, ratios = panel_level(then_ms, ms)
                    rows.loc[lo : lo + len(block) - 1, "level"] = level
                    blocks.append({"first": lo, "level": level, "anchor_levels": ratios,
                                   "anchor_rounds_ms": ms, "load": os.getloadavg()[0],
                                   "at": dt.datetime.now(dt.timezone.utc).isoformat(
                                       timespec="seconds")})
            held_s += time.perf_counter() - t0
        print(f"  {lo + len(block)}/{args.n} networks, {time.perf_counter() - start:.0f} s "
              f"(load {os.getloadavg()[0]:.1f})", flush=True)
    rows["error"] = rows["predicted_ms"] / rows["measured_ms"] - 1
    rows["raw_error"] = rows["raw_ms"] / rows["measured_ms"] - 1
    corr = target.correction
    fitted = {n["arch"] for n in corr.nets} if corr else set()
    stats = {
        "corrected": fidelity(rows["predicted_ms"], rows["measured_ms"]),
        "raw": fidelity(rows["raw_ms"], rows["measured_ms"]),
    }
    run_level = None
    if blocks:  # predictions scaled by the machine's level: each block's, and the whole run's
        run_level = panel_level(then_ms, [sum((b["anchor_rounds_ms"][a] for b in blocks), [])
                                          for a in range(len(panel))])[0]
        for name, col in (("corrected", "predicted_ms"), ("raw", "raw_ms")):
            stats[f"{name}_level"] = fidelity(rows[col] * rows["level"], rows["measured_ms"])
            stats[f"{name}_level_run"] = fidelity(rows[col] * run_level, rows["measured_ms"])
    if args.flushed:
        stats["corrected_vs_flushed"] = fidelity(rows["predicted_ms"], rows["flushed_ms"])
        stats["raw_vs_flushed"] = fidelity(rows["raw_ms"], rows["flushed_ms"])
    spread = rows["measured_spread"]
    worst = rows.reindex(rows["error"].abs().sort_values(ascending=False).index).head(5)
    doc = {
        "benchmark": "host_fidelity",
        "command": " ".join([Path(sys.argv[0]).name, *(argv or sys.argv[1:])]),
        "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "machine": f"{cpu_model()}, {os.cpu_count()} cores",
        "device": device_info(),
        "load_before": load_before,
        "load_after": os.getloadavg(),
        "seconds_measuring": held_s,
        "space": args.space,
        "seed": args.seed,
        "resolution": args.resolution,
        "rounds": args.rounds,
        "measurements_from": str(args.from_csv) if args.from_csv else "this run",
        "table": str(target.table.path),
        "table_entries": len(target.table),
        "correction": corr.summary() if corr else None,
        "correction_coefficients": (
            {k: v for k, v in corr.to_dict().items() if k != "nets"} if corr else None
        ),
        "calibration_overlap": int(sum(a in fitted for a in rows["arch"])),
        "stats": stats,
        "anchors": None if then is None else {
            "then": {**then, "nets": panel}, "left_out": len(then["nets"]) - len(panel),
            "run_level": run_level, "blocks": blocks},
        # how far one network's round medians lie apart (max / min - 1): the measurement's own noise
        "round_spread": {"median": float(spread.median()), "p90": float(spread.quantile(0.9)),
                         "share_over_10pct": float(np.mean(spread > 0.10))},
        "goals": GOALS,
        "worst": worst.to_dict(orient="records"),
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    stem = f"host_fidelity_{args.space}{'_' + args.tag if args.tag else ''}"
    atomic_write_text(RESULTS / f"{stem}.json", json.dumps(doc, indent=1, default=float) + "\n")
    atomic_write_df(rows, RESULTS / f"{stem}.csv")
    for name, s in stats.items():
        print(
            f"{args.space} {name}: n={s['n']} within ±10% {s['within']:.0%}, MAPE {s['mape']:.2%}, "
            f"max {s['max_error']:.1%}, bias {s['bias']:+.2%}, Spearman {s['spearman']:.3f}"
        )
    print(f"round spread median {spread.median():.1%}, {np.mean(spread > 0.1):.0%} over 10%; "
          f"{held_s:.0f} s measuring")
    return 0


if __name__ == "__main__":
    sys.exit(main())

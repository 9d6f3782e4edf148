"""Benchmark: how well ``host`` predicts whole networks as a user measures them.

    HWNAS_HOME=DIR .venv/bin/python bench/host_fidelity.py --space mobilenetv3 --n 100 [--flushed]

Draws ``--n`` random networks of the space (``numpy.random.default_rng(seed)``),
predicts each with the ``host`` table under ``HWNAS_HOME`` (build it first:
``nas-latency build --target host --space S --workers 2``; missing layers are
measured on demand) and measures each end to end the standard way (warm,
repeated ``session.run``, one thread; :mod:`hwnas.latency.measurement`), and
with ``--flushed`` also under the cache-flushed layer protocol. Writes
``bench/results/host_fidelity_<space>.json`` (statistics, the 5 worst networks,
machine, load, date, command) and the per-network CSV beside it; prints the
statistics. Goals (issue 13): >= 95% within ±10%, MAPE <= 4%, Spearman >= 0.98.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import sys
import time
from pathlib import Path

from hwnas.common.atomic import atomic_write_df, atomic_write_text
from hwnas.latency import load_target
from hwnas.latency.runners.protocol import cpu_model, device_info
from hwnas.latency.validation import validate

RESULTS = Path(__file__).resolve().parent / "results"
GOALS = {"within": 0.95, "mape": 0.04, "spearman": 0.98}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--space", default="mobilenetv3")
    p.add_argument("--n", type=int, default=100)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--resolution", type=int, default=224)
    p.add_argument("--flushed", action="store_true")
    p.add_argument("--tag", default="", help="suffix of the result files")
    args = p.parse_args(argv)

    target = load_target("host")
    load_before = os.getloadavg()
    start = time.perf_counter()
    done = [0]

    def tick(k: int) -> None:
        done[0] += k
        if done[0] % 10 == 0:
            print(f"  {done[0]}/{args.n} networks, {time.perf_counter() - start:.0f} s", flush=True)

    result = validate(
        target, args.space, args.n, args.seed, args.resolution, tick, flushed=args.flushed
    )
    secs = time.perf_counter() - start
    rows = result.rows.assign(abs_error=result.rows["error"].abs())
    worst = rows.sort_values("abs_error", ascending=False).head(5)
    doc = {
        "benchmark": "host_fidelity",
        "command": " ".join([Path(sys.argv[0]).name, *(argv or sys.argv[1:])]),
        "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "machine": f"{cpu_model()}, {os.cpu_count()} cores",
        "device": device_info(),
        "load_before": load_before,
        "load_after": os.getloadavg(),
        "seconds": secs,
        "space": args.space,
        "seed": args.seed,
        "resolution": args.resolution,
        "table": str(target.table.path),
        "table_entries": len(target.table),
        "overhead_ms": target.overhead_ms,
        "standard": result.stats,
        "flushed": result.flushed,
        "goals": GOALS,
        "worst": worst.drop(columns="abs_error").to_dict(orient="records"),
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    stem = f"host_fidelity_{args.space}{'_' + args.tag if args.tag else ''}"
    atomic_write_text(RESULTS / f"{stem}.json", json.dumps(doc, indent=1, default=float) + "\n")
    atomic_write_df(result.rows, RESULTS / f"{stem}.csv")
    s = result.stats
    print(
        f"{args.space}: n={s['n']} within ±10% {s['within']:.0%}, MAPE {s['mape']:.2%}, max "
        f"{s['max_error']:.1%}, bias {s['bias']:+.2%}, Spearman {s['spearman']:.3f} ({secs:.0f} s)"
    )
    if result.flushed:
        f = result.flushed
        print(
            f"  vs flushed: within {f['within']:.0%}, MAPE {f['mape']:.2%}, rho {f['spearman']:.3f}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())

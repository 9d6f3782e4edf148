"""Benchmark: networks per second predicted by the vectorised path vs per-Arch Python.

    .venv/bin/python bench/latency_predict.py [--space mobilenetv3] [--target pixel] [--n 1000000]

Builds :class:`hwnas.latency.space_latency.SpaceLatency` for the space on the target
(``pixel`` needs no measurements; a measured target must have its table
built), draws ``n`` random index rows, and times ``predict_indices`` (best
of ``--repeat``) and, for comparison, ``Target.predict_many`` over decoded
``Arch`` objects on a small sample. Prints one Markdown row for docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import platform
import time

import numpy as np

from hwnas.latency import load_target
from hwnas.latency.space_latency import SpaceLatency, space_structure
from hwnas.space.searchspace import get_space

SLOW_SAMPLE = 2000  # networks for the per-Arch path (it is ~1000x slower)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--space", default="mobilenetv3")
    p.add_argument("--target", default="pixel")
    p.add_argument("--n", type=int, default=1_000_000)
    p.add_argument("--repeat", type=int, default=5)
    args = p.parse_args()

    space, target = get_space(args.space), load_target(args.target)
    t0 = time.perf_counter()
    space_structure(space)
    t_struct = time.perf_counter() - t0
    t0 = time.perf_counter()
    fast = SpaceLatency(target, space)
    t_tables = time.perf_counter() - t0
    idx = space.sample_indices(np.random.default_rng(0), args.n)
    best = min(_time(lambda: fast.predict_indices(idx)) for _ in range(args.repeat))
    archs = [space.decode(space.from_indices(r)) for r in idx[:SLOW_SAMPLE]]
    target.predict_many(archs)  # warm the key cache: time the Python summing, not the lookups
    slow = _time(lambda: target.predict_many(archs))
    t0 = time.perf_counter()
    fastest = fast.fastest()
    t_dp = time.perf_counter() - t0
    print(
        f"space {space.name}: {len(space_structure(space).keys)} layer keys, structure "
        f"{t_struct:.2f} s, tables {t_tables:.2f} s, fastest() {t_dp * 1e3:.1f} ms "
        f"({fastest.ms:.2f} ms on {target.name})"
    )
    print(f"machine: {platform.processor() or platform.machine()}, numpy {np.__version__}")
    print(
        f"| predict_many, {space.name}, {target.name}, index matrix of {args.n:,} nets "
        f"| {args.n / best:,.0f} nets/s | per-Arch path: {SLOW_SAMPLE / slow:,.0f} nets/s |"
    )


def _time(fn) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


if __name__ == "__main__":
    main()

"""Benchmark: build the ``host`` table of a space from scratch, then validate it.

    .venv/bin/python bench/host_table.py [--space mobilenetv3] [--workers 2] [--n 20] [--home DIR]

Times what ``nas-latency build --target host --workers W`` does (every layer
key of the space measured into a fresh table under ``--home``, default a new
temp folder, so an existing table is never touched) and then runs
``nas-latency validate --target host --n N`` on it. Prints the load average
before and after (the machine may be shared) and one Markdown row per step
for docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

from hwnas.common.home import HOME_ENV
from hwnas.latency import load_target, space_keys
from hwnas.latency.runners.protocol import cpu_model
from hwnas.latency.validation import record_validation, validate, write_validation
from hwnas.space.searchspace import get_space


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--space", default="mobilenetv3")
    p.add_argument("--resolution", type=int, default=224)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--n", type=int, default=20)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--home", type=Path, default=None, help="HWNAS_HOME to build in (default: temp)")
    args = p.parse_args()

    home = args.home or Path(tempfile.mkdtemp(prefix="hwnas-bench-"))
    os.environ[HOME_ENV] = str(home)
    print(f"machine: {cpu_model()}, {os.cpu_count()} cores; HWNAS_HOME={home}")
    print(f"load average before: {os.getloadavg()}")
    space = get_space(args.space)
    keys = space_keys(space, args.resolution)
    target = load_target("host")
    missing = target.missing(keys)
    done = [0]

    def tick(k: int) -> None:
        done[0] += k
        if done[0] % 512 < k:
            print(f"  {done[0]}/{len(missing)} keys, {time.perf_counter() - t0:.0f} s", flush=True)

    t0 = time.perf_counter()
    target.fill(missing, workers=args.workers, progress=tick)
    build_s = time.perf_counter() - t0
    print(f"load average after build: {os.getloadavg()}")
    print(
        f"| build host, {space.name} @ {args.resolution}, {len(missing)} keys, "
        f"{args.workers} workers | {build_s / 60:.1f} min | overhead {target.overhead_ms:.3f} ms |"
    )

    t0 = time.perf_counter()
    result = validate(target, space, args.n, args.seed, args.resolution)
    val_s = time.perf_counter() - t0
    csv, png = write_validation(result, home / "validation", f"host: {space.name}")
    record_validation(target, result, space=space.name, seed=args.seed, resolution=args.resolution)
    print(result.rows.to_string())
    print(f"load average after validate: {os.getloadavg()}")
    print(
        f"| validate host, {args.n} {space.name} nets, seed {args.seed} | MAPE {result.mape:.2%}, "
        f"max {result.max_error:.2%}, Spearman {result.spearman:.3f} | {val_s:.0f} s | {csv} |"
    )


if __name__ == "__main__":
    main()

"""Benchmark: how repeatable a whole-network measurement is here, per runtime (the noise floor).

    HWNAS_HOME=DIR flock /tmp/hwnas-core0.lock taskset -c 0 \\
        .venv/bin/python bench/runtime_repeat.py [--n 10] [--repeats 3] [--rounds 1] [--seed 0]

Measures the first ``--n`` random networks of the space (the ones
``nas-latency validate --seed S`` draws first) ``--repeats`` times each with
both local targets (``host``: onnxruntime, ``host-tflite``: LiteRT), rounds
interleaved, under the standard protocol (warm repeated runs, as validation
times them). With ``--rounds R`` each repeat is one whole validation-style
measurement (:func:`hwnas.latency.validation.measure_networks`: R interleaved
rounds, the least disturbed counting) instead of a single one. Reports per
network the spread of its repeats (max / min - 1) and over all networks the
median and largest spread: a prediction cannot be checked closer than this.
Writes ``--out`` (JSON).
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import numpy as np

from hwnas.common.atomic import atomic_write_text
from hwnas.latency import load_target
from hwnas.latency.measurement import STANDARD
from hwnas.latency.runners.protocol import cpu_model
from hwnas.latency.validation import measure_networks
from hwnas.space.searchspace import get_space


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--space", default="mobilenetv3")
    p.add_argument("--resolution", type=int, default=224)
    p.add_argument("--n", type=int, default=10)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--rounds", type=int, default=1, help="interleaved rounds per repeat")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", type=Path, default=Path("bench/results/runtime_repeat.json"))
    args = p.parse_args()

    space = get_space(args.space)
    targets = {"onnxruntime": load_target("host"), "tflite": load_target("host-tflite")}
    rng = np.random.default_rng(args.seed)
    archs = [space.sample_random(rng) for _ in range(args.n)]
    times: dict[str, list[list[float]]] = {rt: [[] for _ in archs] for rt in targets}
    load_before = os.getloadavg()
    t0 = time.perf_counter()
    for r in range(args.repeats):
        if args.rounds == 1:  # one measurement per network and runtime, runtimes interleaved
            for i, arch in enumerate(archs):
                for rt, target in targets.items():
                    times[rt][i].append(target.measure(arch, args.resolution,
                                                       protocol=STANDARD).median)
        else:
            for rt, target in targets.items():
                got = measure_networks(target, archs, args.resolution, STANDARD, args.rounds)
                for i, (s, _) in enumerate(got):
                    times[rt][i].append(s.median)
        print(f"round {r + 1}/{args.repeats} done, {time.perf_counter() - t0:.0f} s", flush=True)
    doc: dict = {
        "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
        "machine": f"{cpu_model()}, {os.cpu_count()} cores",
        "affinity": sorted(os.sched_getaffinity(0)),
        "load_before": load_before,
        "load_after": os.getloadavg(),
        "space": space.name,
        "resolution": args.resolution,
        "seed": args.seed,
        "repeats": args.repeats,
        "rounds": args.rounds,
        "wall_s": time.perf_counter() - t0,
    }
    for rt in targets:
        spread = [max(t) / min(t) - 1 for t in times[rt]]
        doc[rt] = {
            "spread_median": float(np.median(spread)),
            "spread_max": float(np.max(spread)),
            "per_net_ms": times[rt],
        }
    doc["archs"] = [a.to_str() for a in archs]
    atomic_write_text(args.out, json.dumps(doc, indent=1) + "\n")
    print(json.dumps({rt: {k: v for k, v in doc[rt].items() if k != "per_net_ms"}
                      for rt in targets}, indent=1))


if __name__ == "__main__":
    main()

"""Benchmark: how much the runtime choice (onnxruntime vs LiteRT) changes a network ranking.

    HWNAS_HOME=DIR flock /tmp/hwnas-core0.lock taskset -c 0 \\
        .venv/bin/python bench/runtime_agreement.py [--n 200] [--measured 30] [--seed 0]

Needs the ``host`` (onnxruntime) and ``host-tflite`` (LiteRT interpreter)
tables of the space built under ``$HWNAS_HOME`` (``nas-latency build``).
Draws ``--n`` random networks of the space, predicts each with both tables
(the sum of its layers plus one overhead) and reports the Spearman rank
correlation of the two predictions. On the first ``--measured`` of them it
also times each whole network with both runtimes on this machine (the
standard protocol: warm repeated runs, as ``nas-latency validate`` does) and
reports the Spearman of the two measured latencies and of each table against
its own runtime. Writes everything, per network too, to ``--out`` (JSON).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path

import numpy as np
from scipy.stats import spearmanr

from hwnas.common.atomic import atomic_write_text
from hwnas.latency import load_target
from hwnas.latency.runners.protocol import cpu_model
from hwnas.latency.validation import fidelity
from hwnas.space.searchspace import get_space


def _rho(a: list[float], b: list[float]) -> float:
    return float(spearmanr(a, b).statistic)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--space", default="mobilenetv3")
    p.add_argument("--resolution", type=int, default=224)
    p.add_argument("--n", type=int, default=200, help="networks predicted by both tables")
    p.add_argument("--measured", type=int, default=30, help="of them, networks timed end to end")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", type=Path, default=Path("bench/results/runtime_agreement.json"))
    args = p.parse_args()

    space = get_space(args.space)
    ort, lite = load_target("host"), load_target("host-tflite")
    rng = np.random.default_rng(args.seed)
    archs = [space.sample_random(rng) for _ in range(args.n)]
    t0 = time.perf_counter()
    pred_ort = [ort.predict(a, args.resolution) for a in archs]
    pred_lite = [lite.predict(a, args.resolution) for a in archs]
    predict_s = time.perf_counter() - t0

    load_before = os.getloadavg()
    rows = []
    t0 = time.perf_counter()
    for i, arch in enumerate(archs[: args.measured]):
        m_ort = ort.measure(arch, args.resolution, protocol="standard")
        m_lite = lite.measure(arch, args.resolution, protocol="standard")
        rows.append(
            {
                "arch": arch.to_str(),
                "predicted_onnxruntime_ms": pred_ort[i],
                "predicted_tflite_ms": pred_lite[i],
                "measured_onnxruntime_ms": m_ort.median,
                "measured_tflite_ms": m_lite.median,
            }
        )
        print(f"{i + 1}/{args.measured}: ort {m_ort.median:.2f} ms, tflite {m_lite.median:.2f} ms",
              flush=True)
    measure_s = time.perf_counter() - t0
    load_after = os.getloadavg()

    col = {k: [r[k] for r in rows] for k in rows[0]} if rows else {}
    doc = {
        "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
        "machine": f"{cpu_model()}, {os.cpu_count()} cores, {platform.platform()}",
        "affinity": sorted(os.sched_getaffinity(0)),
        "load_before": load_before,
        "load_after": load_after,
        "space": space.name,
        "resolution": args.resolution,
        "seed": args.seed,
        "n_predicted": args.n,
        "spearman_predicted": _rho(pred_ort, pred_lite),
        "ratio_tflite_over_ort_predicted": {
            "median": float(np.median(np.divide(pred_lite, pred_ort))),
            "min": float(np.min(np.divide(pred_lite, pred_ort))),
            "max": float(np.max(np.divide(pred_lite, pred_ort))),
        },
        "predict_s": predict_s,
        "n_measured": len(rows),
        "measure_s": measure_s,
    }
    if rows:
        doc.update(
            spearman_measured=_rho(col["measured_onnxruntime_ms"], col["measured_tflite_ms"]),
            spearman_predicted_subset=_rho(
                col["predicted_onnxruntime_ms"], col["predicted_tflite_ms"]
            ),
            onnxruntime_fidelity=fidelity(
                col["predicted_onnxruntime_ms"], col["measured_onnxruntime_ms"]
            ),
            tflite_fidelity=fidelity(col["predicted_tflite_ms"], col["measured_tflite_ms"]),
            cross_ort_table_vs_tflite_measured=_rho(
                col["predicted_onnxruntime_ms"], col["measured_tflite_ms"]
            ),
            nets=rows,
        )
    atomic_write_text(args.out, json.dumps(doc, indent=1, default=float) + "\n")
    print(json.dumps({k: v for k, v in doc.items() if k != "nets"}, indent=1, default=float))


if __name__ == "__main__":
    main()

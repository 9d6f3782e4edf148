"""A budget below nearly all of the space: does TPE find networks that meet it?

Each run is ``nas-search --target pixel --lat {B}ms --reward hard --sampler tpe
--estimator supernet --supernet ID --trials N --pruner none --timeout none --seed S``
(inherited supernet scores: the point is where the sampler goes, not the estimate).
Four arms, same seeds: ``warm`` (as shipped since 2026-12-02 14:18 UTC: ``constrained``
plus TPE's 10 start-up trials queued among nets predicted within the budget,
``hwnas.search.budget``); ``constrained`` (``--warm-start 0``, as shipped before: a
skipped candidate, over 1.25 x the budget, scores ``0.01 x budget / latency``, and
every trial carries the Optuna constraint ``latency / budget - 1``, which TPE uses);
``plain`` (the same with
``optuna.trial.Trial.set_constraint`` made a no-op: TPE sees only the reward); and
``flat0`` (also ``SKIP_REWARD`` = 0: every skipped candidate scores 0, as before
2026-12-02).
Counted per run: trials within the budget, trials trained (within 1.25 x), the first
trial within the budget, the lowest latency seen.

    taskset -c 1 nice .venv/bin/python bench/tight_budget.py \\
        --supernet mobilenetv3-fashion-mnist-r32-spos-e12-s0-d2d698ca8b

Writes ``bench/results/tight_budget.json`` (``--out``) and prints a markdown table.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
import tempfile
import time
from pathlib import Path
from unittest import mock

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent))
import supernet_fidelity as sf  # noqa: E402

from hwnas.common.atomic import atomic_write_text  # noqa: E402

OUT = Path(__file__).resolve().parent / "results" / "tight_budget.json"
ARMS = ("warm", "constrained", "plain", "flat0")


def one_run(arm: str, seed: int, args: argparse.Namespace, root: Path) -> dict:
    import optuna

    from hwnas.search.cli import main as nas_search

    out = root / f"{arm}-s{seed}"
    argv = ["--target", "pixel", "--lat", f"{args.budget:g}ms", "--reward", "hard", "--sampler", "tpe",
            "--estimator", "supernet", "--supernet", args.supernet, "--trials", str(args.trials),
            "--pruner", "none", "--timeout", "none", "--seed", str(seed), "--out", str(out), "--quiet",
            "--warm-start", "10" if arm == "warm" else "0"]
    t0 = time.perf_counter()
    with contextlib.ExitStack() as stack:
        if arm in ("plain", "flat0"):
            stack.enter_context(mock.patch.object(optuna.trial.Trial, "set_constraint",
                                                  lambda self, key, value: None))
        if arm == "flat0":
            stack.enter_context(mock.patch("hwnas.search.objective.SKIP_REWARD", 0.0))
        assert nas_search(argv) == 0
    df = pd.read_parquet(out / "trials.parquet").sort_values("number")
    lat = df["latency_ms"].to_numpy()
    within = np.flatnonzero(lat <= args.budget)
    return {"arm": arm, "seed": seed, "trials": len(df), "within_budget": int(len(within)),
            "trained": int(df["accuracy"].notna().sum()),
            "first_within": int(df["number"].iloc[within[0]]) if len(within) else None,
            "within_first_48": int((within < 48).sum()),
            "min_latency_ms": float(lat.min()),
            "median_latency_last_half": float(np.median(lat[len(lat) // 2:])),
            "seconds": time.perf_counter() - t0}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--supernet", required=True)
    ap.add_argument("--budget", type=float, default=20.0)
    ap.add_argument("--trials", type=int, default=100)
    ap.add_argument("--seeds", default="0,1,2,3,4")
    ap.add_argument("--arms", default=",".join(ARMS), help=f"some of {', '.join(ARMS)}")
    ap.add_argument("--out", type=Path, default=OUT)
    args = ap.parse_args()
    import torch

    torch.set_num_threads(1)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for seed in (int(s) for s in args.seeds.split(",")):
            for arm in args.arms.split(","):
                rows.append(one_run(arm, seed, args, Path(tmp)))
                print(rows[-1], flush=True)
    atomic_write_text(args.out, json.dumps({
        "command": " ".join(sys.argv), "budget_ms": args.budget, "trials": args.trials,
        "machine": sf._machine(), "rows": rows}, indent=2) + "\n")
    print("| arm | seed | within budget | trained | first within | lowest ms | median ms, 2nd half |")
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['arm']} | {r['seed']} | {r['within_budget']} | {r['trained']} | {r['first_within']} | "
              f"{r['min_latency_ms']:.1f} | {r['median_latency_last_half']:.1f} |")


if __name__ == "__main__":
    main()

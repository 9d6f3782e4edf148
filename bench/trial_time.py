"""Time one search trial (build + proxy training + validation) on this machine.

Run from the repository root::

    .venv/bin/python bench/trial_time.py                          # V3-Large, default recipe
    .venv/bin/python bench/trial_time.py --subset 10000 20000 --epochs 1 2 --threads 2
    .venv/bin/python bench/trial_time.py --arch mobilenetv3_small --lr 0.1 0.2

Every combination of ``--subset``, ``--epochs`` and ``--lr`` is trained once
per ``--repeats`` and timed. Prints a table and writes
``results/benchmarks/trial_time.json`` (or ``--out``) with the machine, the
load average and the process CPU time beside each wall time: on a shared
machine ``cpu_s / (wall_s * threads)`` well below 1 means the run was starved
and its wall time overstates the cost. The zero-cost prefilter is timed too.

On a busy machine run it with ``OMP_WAIT_POLICY=PASSIVE``: with OpenMP's
default spin-waiting, two torch threads competing with other processes for
two cores ran the default trial in 331 s instead of 34 s here.
"""

from __future__ import annotations

import argparse
import datetime as dt
import itertools
import json
import os
import platform
import resource
import sys
import time
from pathlib import Path

import numpy as np
import torch

from hwnas.common.atomic import atomic_write_text
from hwnas.latency.runners.protocol import cpu_model
from hwnas.proxy.data import DataError, load_dataset
from hwnas.proxy.train import DEFAULT_LR, NonFiniteLoss, TrainConfig, train
from hwnas.search.prefilter import PREFILTER_METHODS, zero_cost_score
from hwnas.space import REFERENCE_NAMES, Arch, build, reference

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "results" / "benchmarks" / "trial_time.json"
# Proposed search defaults: 10,000 images x 2 epochs = 156 steps, the same accuracy as
# 20,000 x 1 (0.837 vs 0.835 for V3-Large) but with an epoch-0 report the pruner can use.
DEFAULT_SUBSET = 10000
DEFAULT_EPOCHS = 2


def _cpu_s() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime




def _arch(text: str) -> Arch:
    if text in REFERENCE_NAMES:
        return reference(text)
    try:
        return Arch.from_str(text)
    except ValueError as e:
        raise ValueError(f"--arch {text!r}: not a reference ({', '.join(REFERENCE_NAMES)}) "
                         f"nor an arch string ({e})") from None


def _step_clock(model: torch.nn.Module) -> list[float]:
    """Timestamps of the model's training-mode forwards with gradients (one per optimizer step)."""
    ticks: list[float] = []

    def hook(m: torch.nn.Module, _inputs: tuple) -> None:
        if m.training and torch.is_grad_enabled():
            ticks.append(time.perf_counter())

    model.register_forward_pre_hook(hook)
    return ticks


def _write(out: Path, report: dict) -> None:
    out.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out, json.dumps(report, indent=2) + "\n")


def run(args: argparse.Namespace) -> dict:
    torch.set_num_threads(args.threads)
    arch = _arch(args.arch)
    rows: list[dict] = []
    report = {
        "benchmark": "trial_time", "date": dt.datetime.now().isoformat(timespec="seconds"),
        "machine": {"cpu": cpu_model(), "cores": os.cpu_count(), "threads": args.threads,
                    "torch": torch.__version__, "python": platform.python_version(),
                    "device": args.device or ("cuda" if torch.cuda.is_available() else "cpu")},
        "arch": args.arch, "data": args.data, "resolution": args.resolution,
        "val_size": args.val_size, "rows": rows, "prefilter": {},
    }
    for subset, epochs, lr in itertools.product(args.subset, args.epochs, args.lr):
        t0 = time.perf_counter()
        data = load_dataset(args.data, resolution=args.resolution, val_size=args.val_size,
                            train_subset=subset, seed=args.seed)
        load_s = time.perf_counter() - t0
        for rep in range(args.repeats):
            config = TrainConfig(epochs=epochs, lr=lr, resolution=args.resolution,
                                 seed=args.seed + rep, device=args.device)
            load0, cpu0, t0 = os.getloadavg()[0], _cpu_s(), time.perf_counter()
            torch.manual_seed(config.seed)  # what train() does before building an Arch
            model = build(arch, num_classes=data.num_classes)
            ticks = _step_clock(model)
            try:
                res = train(model, data, config)
                acc, steps, err = res.val_accuracy, res.steps, None
            except NonFiniteLoss as e:
                acc, steps, err = float("nan"), 0, str(e)
            wall = time.perf_counter() - t0
            cpu = _cpu_s() - cpu0
            step_s = np.diff(np.asarray(ticks))
            p10, med = (np.percentile(step_s, [10, 50]) if len(step_s) >= 10 else (np.nan,) * 2)
            row = {"train_subset": subset, "epochs": epochs, "lr": lr, "seed": args.seed + rep,
                   "val_accuracy": acc, "steps": steps, "wall_s": round(wall, 2),
                   "cpu_s": round(cpu, 2), "cpu_share": round(cpu / (wall * args.threads), 3),
                   "s_per_step": round(wall / max(steps, 1), 4), "data_load_s": round(load_s, 2),
                   "step_s_p10": round(float(p10), 4), "step_s_median": round(float(med), 4),
                   # the optimizer steps alone at the fastest tenth's pace: a floor for an
                   # otherwise idle machine (validation and BN re-estimation come on top)
                   "steps_at_p10_s": round(float(steps * p10), 1),
                   "non_step_s": round(float(wall - step_s.sum()), 1) if len(step_s) else None,
                   "loadavg_1m": [round(load0, 2), round(os.getloadavg()[0], 2)], "error": err}
            rows.append(row)
            print(f"subset {subset:6d}  epochs {epochs}  lr {lr:<6g} seed {row['seed']}  "
                  f"acc {acc:.4f}  steps {steps:4d}  wall {wall:6.1f} s  (steps at p10 pace "
                  f"{row['steps_at_p10_s']} s, rest {row['non_step_s']} s; step p10/median "
                  f"{row['step_s_p10']}/{row['step_s_median']} s)  cpu-share {row['cpu_share']:.2f}  "
                  f"load {row['loadavg_1m']}", flush=True)
            _write(args.out, report)  # after every row, so an interrupted sweep keeps its rows
    prefilter = report["prefilter"]
    for method in PREFILTER_METHODS:
        times = []
        for rep in range(3):
            t0 = time.perf_counter()
            score = zero_cost_score(arch, data, method, seed=rep)
            times.append(time.perf_counter() - t0)
        prefilter[method] = {"median_s": round(sorted(times)[1], 3), "score_seed2": score}
        print(f"prefilter {method}: median {sorted(times)[1]:.3f} s (3 runs)")
    return report


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--arch", default="mobilenetv3_large", help="reference name or arch string")
    ap.add_argument("--data", default="fashion-mnist")
    ap.add_argument("--subset", type=int, nargs="+", default=[DEFAULT_SUBSET])
    ap.add_argument("--epochs", type=int, nargs="+", default=[DEFAULT_EPOCHS])
    ap.add_argument("--lr", type=float, nargs="+", default=[DEFAULT_LR])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=1)
    ap.add_argument("--val-size", type=int, default=5000)
    ap.add_argument("--resolution", type=int, default=32)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--device", default=None, help="cpu, cuda, ... (default: cuda if present)")
    ap.add_argument("--out", type=Path, default=OUT)
    args = ap.parse_args(argv)
    for name in ("threads", "repeats"):
        if getattr(args, name) < 1:
            ap.error(f"--{name} must be >= 1, got {getattr(args, name)}")
    try:
        report = run(args)
    except (DataError, ValueError) as e:
        print(f"trial_time: {e}", file=sys.stderr)
        return 2
    _write(args.out, report)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Search-quality benchmark: TPE vs RL vs random search at one trial budget.

Every sampler gets the same proxy recipe, the same latency goal and the same
number of trials, once per seed (the seed also picks the proxy data subset, so
for one seed all samplers see the same data). Each run is a real
``hwnas.search.run.run_search``; two runs go in parallel, one torch thread
each. Reports the best reward found per run (mean +- std over seeds per
sampler) and the best-so-far reward curve (mean over seeds) per sampler.

Run from the repository root::

    nice -n 5 .venv/bin/python bench/search_quality.py             # 5 seeds x 3 samplers
    nice -n 5 .venv/bin/python bench/search_quality.py --quick     # smoke run, ~1 minute
    # on one cached supernet (nas-supernet info), at a fair scale:
    nice -n 5 .venv/bin/python bench/search_quality.py --estimator supernet --supernet ID \
        --trials 300 --samplers tpe nsga2 rl random

Writes ``results/benchmarks/search_quality/`` (or ``--out``): ``runs/<sampler>-s<seed>/``
(the run folders), ``runs.csv`` (one row per run), ``curves.csv`` (best so far
per trial), ``summary.json`` and ``best_so_far.png``. Finished run folders are
reused when the script is run again with the same settings.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import multiprocessing as mp
import os
import shutil
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

from hwnas.common.atomic import atomic_save_figure, atomic_write_text

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "results" / "benchmarks" / "search_quality"
SAMPLERS = ("tpe", "rl", "random")
SAMPLER_CHOICES = (*SAMPLERS, "nsga2")


def _run_config(args: argparse.Namespace, sampler: str, seed: int, run_dir: Path) -> dict:
    return {
        "target": args.target, "latency": args.lat, "space": args.space, "trials": args.trials,
        "timeout_s": None, "sampler": sampler, "reward": args.reward, "epochs": args.epochs,
        "proxy_resolution": args.proxy_resolution, "train_subset": args.train_subset,
        "val_size": args.val_size, "workers": 1, "seed": seed, "out": str(run_dir),
        "estimator": args.estimator, "supernet": args.supernet,
    }


def _one_run(raw: dict) -> tuple[str, float]:
    """Run one search in this (pool) process with one torch thread; returns (folder, seconds)."""
    import optuna
    import torch

    from hwnas.search.config import parse_config
    from hwnas.search.run import run_search

    torch.set_num_threads(1)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    t0 = time.perf_counter()
    run_dir = run_search(parse_config(raw))
    return str(run_dir), time.perf_counter() - t0


def _finished(run_dir: Path, raw: dict) -> bool:
    """A run folder from an earlier call with the same settings and all its trials."""
    import yaml

    try:
        cfg = yaml.safe_load((run_dir / "config.yaml").read_text())
        df = pd.read_parquet(run_dir / "trials.parquet")
    except (OSError, ValueError):
        return False
    same = all(cfg.get(k) == v for k, v in raw.items() if k not in ("out", "timeout_s"))
    return same and len(df) >= raw["trials"]


def _curve(df: pd.DataFrame, trials: int) -> np.ndarray:
    """Best reward so far after each trial (NaN until the first finished one)."""
    reward = np.full(trials, np.nan)
    ok = df[(df["state"] == "COMPLETE") & df["reward"].notna()]
    for n, r in zip(ok["number"], ok["reward"], strict=True):
        if n < trials:
            reward[int(n)] = r
    best = np.fmax.accumulate(reward)
    return best


def _plot(curves: dict[str, np.ndarray], path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    for sampler, c in curves.items():  # c: (seeds, trials)
        x = np.arange(1, c.shape[1] + 1)
        mean = np.nanmean(c, axis=0)
        ax.plot(x, mean, label=f"{sampler} (mean of {c.shape[0]})")
        ax.fill_between(x, np.nanmin(c, axis=0), np.nanmax(c, axis=0), alpha=0.15)
    ax.set_xlabel("trial")
    ax.set_ylabel("best reward so far")
    ax.set_title(title, fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    atomic_save_figure(fig, path)
    plt.close(fig)


def _write_json(path: Path, obj: object) -> None:
    atomic_write_text(path, json.dumps(obj, indent=2))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--target", default="pixel")
    ap.add_argument("--lat", default="30ms", help="latency goal with a unit")
    ap.add_argument("--space", default="mobilenetv3")
    ap.add_argument("--reward", default="soft", choices=("soft", "hard", "abs"))
    ap.add_argument("--samplers", nargs="+", default=list(SAMPLERS), choices=SAMPLER_CHOICES)
    ap.add_argument("--estimator", default="train", choices=("train", "supernet"))
    ap.add_argument("--supernet", default=None,
                    help="estimator supernet: one supernet id for every seed (default: the "
                         "cached one matching each seed, trained if none)")
    ap.add_argument("--seeds", type=int, default=5)
    ap.add_argument("--trials", type=int, default=16)
    ap.add_argument("--epochs", type=int, default=1)
    ap.add_argument("--train-subset", type=int, default=2000)
    ap.add_argument("--val-size", type=int, default=1000)
    ap.add_argument("--proxy-resolution", type=int, default=32)
    ap.add_argument("--parallel", type=int, default=2, help="runs at once (one thread each)")
    ap.add_argument("--out", type=Path, default=OUT)
    ap.add_argument("--quick", action="store_true", help="smoke run: 2 seeds, 3 trials, 256 images")
    args = ap.parse_args(argv)
    if args.quick:
        args.seeds, args.trials, args.train_subset, args.val_size = 2, 3, 256, 128
        if args.out == OUT:
            args.out = OUT.with_name("search_quality_quick")
    for name in ("seeds", "trials", "parallel"):
        if getattr(args, name) < 1:
            ap.error(f"--{name} must be at least 1 (got {getattr(args, name)})")

    runs_dir = args.out / "runs"
    runs_dir.mkdir(parents=True, exist_ok=True)
    jobs, done = [], []
    for seed in range(args.seeds):  # seed-major, so a partial run is balanced over samplers
        for sampler in args.samplers:
            run_dir = runs_dir / f"{sampler}-s{seed}"
            raw = _run_config(args, sampler, seed, run_dir)
            if _finished(run_dir, raw):
                done.append(str(run_dir))
                continue
            shutil.rmtree(run_dir, ignore_errors=True)
            jobs.append(raw)
    load0 = os.getloadavg()[0]
    t0 = time.perf_counter()
    seconds: dict[str, float] = {}
    if jobs:
        print(f"{len(jobs)} runs to do ({len(done)} reused), {args.parallel} at a time", flush=True)
        with mp.get_context("spawn").Pool(args.parallel, maxtasksperchild=1) as pool:
            for run_dir, s in pool.imap_unordered(_one_run, jobs):
                seconds[run_dir] = s
                print(f"  {Path(run_dir).name}: {s:.0f} s (load {os.getloadavg()[0]:.1f})",
                      flush=True)
    wall = time.perf_counter() - t0

    rows, curves = [], {s: [] for s in args.samplers}
    for seed in range(args.seeds):
        for sampler in args.samplers:
            run_dir = runs_dir / f"{sampler}-s{seed}"
            df = pd.read_parquet(run_dir / "trials.parquet")
            curve = _curve(df, args.trials)
            curves[sampler].append(curve)
            ok = df[df["state"] == "COMPLETE"]
            best = ok.loc[ok["reward"].idxmax()] if len(ok) else None
            within = ok[ok["latency_ms"] <= float(args.lat.removesuffix("ms"))] \
                if args.lat.endswith("ms") else ok.iloc[0:0]
            rows.append({
                "sampler": sampler, "seed": seed, "best_reward": curve[-1],
                "best_accuracy": None if best is None else float(best["accuracy"]),
                "best_latency_ms": None if best is None else float(best["latency_ms"]),
                "best_arch": None if best is None else best["arch"],
                "within_budget": int(len(within)), "completed": int(len(ok)),
                "duplicates": int(ok["duplicate_of"].notna().sum()),
                "best_within_accuracy": float(within["accuracy"].max()) if len(within) else None,
                "seconds": seconds.get(str(run_dir)),
            })
    runs = pd.DataFrame(rows)
    runs.to_csv(args.out / "runs.csv", index=False)
    curve_rows = [{"sampler": s, "seed": i, "trial": t + 1, "best_reward": c[t]}
                  for s, cs in curves.items() for i, c in enumerate(cs) for t in range(len(c))]
    pd.DataFrame(curve_rows).to_csv(args.out / "curves.csv", index=False)
    arrays = {s: np.array(c) for s, c in curves.items()}
    title = (f"{args.target} {args.lat}, reward {args.reward}, {args.trials} trials, "
             f"{args.seeds} seeds; proxy {args.train_subset} img x {args.epochs} ep @ "
             f"{args.proxy_resolution}px")
    _plot(arrays, args.out / "best_so_far.png", title)

    summary = {"date": dt.date.today().isoformat(), "argv": sys.argv[1:], "settings": vars(args)
               | {"out": str(args.out)}, "wall_s": wall, "load_start": load0,
               "load_end": os.getloadavg()[0], "samplers": {}}
    table = ["| sampler | best reward, mean ± std | min-max | best-so-far mean after "
             f"{max(1, args.trials // 2)} / {args.trials} trials | acc. of best | "
             "trials within budget (mean) |", "|---|---|---|---|---|---|"]
    for s in args.samplers:
        r = runs[runs["sampler"] == s]
        mean_curve = np.nanmean(arrays[s], axis=0)
        half = mean_curve[max(1, args.trials // 2) - 1]
        summary["samplers"][s] = {
            "best_reward_mean": float(r["best_reward"].mean()),
            "best_reward_std": float(r["best_reward"].std(ddof=1)) if len(r) > 1 else 0.0,
            "best_reward_min": float(r["best_reward"].min()),
            "best_reward_max": float(r["best_reward"].max()),
            "mean_curve": [float(v) for v in mean_curve],
            "best_accuracy_mean": float(r["best_accuracy"].mean()),
            "within_budget_mean": float(r["within_budget"].mean()),
        }
        m = summary["samplers"][s]
        table.append(f"| {s} | {m['best_reward_mean']:.4f} ± {m['best_reward_std']:.4f} | "
                     f"{m['best_reward_min']:.4f}-{m['best_reward_max']:.4f} | {half:.4f} / "
                     f"{mean_curve[-1]:.4f} | {m['best_accuracy_mean']:.3f} | "
                     f"{m['within_budget_mean']:.1f} |")
    _write_json(args.out / "summary.json", summary)
    print("\n".join(table))
    print(f"\nwall {wall / 60:.1f} min; results in {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""Searched vs hand-designed: the best searched net against MobileNetV3-Large/Small
scaled to the same latency goal, all trained with one recipe, scored on the TEST split.

For each target (``pixel``, ``host``) at one latency goal:

* the searched net: the most accurate (proxy accuracy) finished trial whose
  predicted latency meets the goal, taken from the run folders given with
  ``--pixel-runs`` / ``--host-runs`` (e.g. the TPE runs of
  ``bench/search_quality.py``); a target without runs gets one fresh
  ``run_search`` (``--search-trials``, ``--search-reward``, the proxy recipe of
  ``bench/search_quality.py``);
* MobileNetV3-Large and -Small at the largest width multiplier, in steps of
  0.05, whose predicted latency (224 px, 1000 classes, as the search predicts)
  is within the goal.

All nets are trained from scratch with the same recipe (``--train-subset``
images of Fashion-MNIST, ``--epochs`` at ``--resolution`` px, the trainer's
defaults, one seed per ``--train-seeds``), then scored on the 10,000-image test
split (``hwnas.proxy.data.load_test_split``; used only here). Two trainings go
in parallel, one torch thread each.

Run from the repository root (the host table is built once, see docs/latency.md)::

    HWNAS_HOME=/tmp/hwnas-bench nice -n 5 .venv/bin/python bench/searched_vs_handdesigned.py \\
        --pixel-runs 'results/benchmarks/search_quality/runs/tpe-s*'
    .venv/bin/python bench/searched_vs_handdesigned.py --quick       # smoke run

Writes ``results/benchmarks/searched_vs_handdesigned/`` (or ``--out``):
``nets.json`` (what was picked and why), ``results.csv``, ``summary.json``,
``accuracy_vs_latency.png``, and prints a markdown table. Each training's
result is kept in ``trained/``; running again with more ``--train-seeds``
trains only the new seeds.
"""

from __future__ import annotations

import argparse
import datetime as dt
import glob
import hashlib
import json
import multiprocessing as mp
import os
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

from hwnas.common.atomic import atomic_save_figure, atomic_write_text

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "results" / "benchmarks" / "searched_vs_handdesigned"
DEPLOY_RES, DEPLOY_CLASSES = 224, 1000  # what the search predicts latency for
WIDTHS = np.round(np.arange(0.05, 3.0001, 0.05), 2)
REFERENCES = ("mobilenetv3_large", "mobilenetv3_small")


def _ms(text: str) -> float:
    from hwnas.common.units import parse_latency

    return float(parse_latency(text))


def best_within(run_dirs: list[Path], goal_ms: float) -> dict:
    """The finished trial of the highest proxy accuracy with predicted latency <= goal."""
    frames = []
    for d in run_dirs:
        df = pd.read_parquet(d / "trials.parquet")
        frames.append(df.assign(run=str(d)))
    df = pd.concat(frames, ignore_index=True)
    ok = df[(df["state"] == "COMPLETE") & (df["latency_ms"] <= goal_ms)]
    if ok.empty:
        raise ValueError(f"no finished trial within {goal_ms} ms in {len(run_dirs)} run(s)")
    row = ok.sort_values(["accuracy", "reward"], ascending=False).iloc[0]
    return {"arch": row["arch"], "latency_ms": float(row["latency_ms"]),
            "proxy_accuracy": float(row["accuracy"]), "run": row["run"],
            "trial": int(row["number"]), "candidates_within": int(len(ok)),
            "trials_considered": int(len(df))}


def widest_within(target, name: str, goal_ms: float) -> tuple[float, float]:  # noqa: ANN001
    """Largest width (step 0.05) of reference ``name`` predicted within the goal."""
    from hwnas.space import reference

    best = None
    for w in WIDTHS:
        lat = float(target.predict(reference(name, width=float(w)), resolution=DEPLOY_RES,
                                   num_classes=DEPLOY_CLASSES))
        if lat <= goal_ms:
            best = (float(w), lat)
    if best is None:
        raise ValueError(f"{name}: no width >= 0.05 within {goal_ms} ms")
    return best


def _search(target: str, lat: str, args: argparse.Namespace, out: Path) -> Path:
    from hwnas.search.config import parse_config
    from hwnas.search.run import run_search

    run_dir = out / f"search-{target}"
    if (run_dir / "trials.parquet").exists():
        return run_dir
    import shutil

    shutil.rmtree(run_dir, ignore_errors=True)
    cfg = parse_config({
        "target": target, "latency": lat, "trials": args.search_trials, "timeout_s": None,
        "sampler": "tpe", "reward": args.search_reward, "epochs": 1, "proxy_resolution": 32,
        "train_subset": args.search_subset, "val_size": args.search_val, "seed": 0,
        "out": str(run_dir)})
    return run_search(cfg)


RESULT_KEYS = ("val_accuracy", "test_accuracy", "train_s", "params_10cls")
RECIPE_KEYS = ("arch", "seed", "epochs", "resolution", "train_subset", "val_size")


def _cache_path(out: Path, job: dict) -> Path:
    """Where the result of training ``job`` (one arch, seed and recipe) is kept."""
    key = json.dumps({k: job[k] for k in RECIPE_KEYS}, sort_keys=True)
    digest = hashlib.sha1(key.encode()).hexdigest()[:16]
    path = out / "trained" / f"{job['net']}-s{job['seed']}-{digest}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    return path


def _train_one(job: dict) -> dict:
    """Train one arch from scratch (one thread) and score it on the test split."""
    import torch

    from hwnas.proxy.data import load_dataset, load_test_split
    from hwnas.proxy.train import TrainConfig, evaluate, train
    from hwnas.space import Arch

    torch.set_num_threads(1)
    data = load_dataset("fashion-mnist", resolution=job["resolution"], val_size=job["val_size"],
                        train_subset=job["train_subset"], seed=job["seed"])
    res = train(Arch.from_str(job["arch"]), data,
                TrainConfig(epochs=job["epochs"], resolution=job["resolution"], seed=job["seed"]))
    x, y = load_test_split("fashion-mnist", resolution=job["resolution"])
    test = evaluate(res.model, x, y)
    params = sum(p.numel() for p in res.model.parameters())
    return job | {"val_accuracy": res.val_accuracy, "test_accuracy": test,
                  "train_s": res.seconds, "params_10cls": params}


def _plot(df: pd.DataFrame, goals: dict[str, float], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(goals), figsize=(5 * len(goals), 4), squeeze=False)
    for ax, (target, goal) in zip(axes[0], goals.items(), strict=True):
        d = df[df["target"] == target].groupby(["net", "latency_ms"], as_index=False)[
            "test_accuracy"].mean()
        for _, r in d.iterrows():
            ax.scatter(r["latency_ms"], 100 * r["test_accuracy"], s=40)
            ax.annotate(r["net"], (r["latency_ms"], 100 * r["test_accuracy"]), fontsize=8)
        ax.axvline(goal, ls="--", c="grey", lw=1)
        ax.set_xlabel(f"predicted latency on {target} (ms, 224 px)")
        ax.set_ylabel("test accuracy (%)")
        ax.set_title(f"{target}, goal {goal:g} ms", fontsize=9)
        ax.grid(alpha=0.3)
    fig.tight_layout()
    atomic_save_figure(fig, path)
    plt.close(fig)


def _write_json(path: Path, obj: object) -> None:
    atomic_write_text(path, json.dumps(obj, indent=2))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--targets", nargs="+", default=["pixel", "host"])
    ap.add_argument("--pixel-lat", default="30ms")
    ap.add_argument("--host-lat", default="4ms")
    ap.add_argument("--pixel-runs", default="", help="glob of run folders to pick from")
    ap.add_argument("--host-runs", default="", help="glob of run folders to pick from")
    ap.add_argument("--search-trials", type=int, default=30)
    ap.add_argument("--search-reward", default="hard", choices=("soft", "hard", "abs"))
    ap.add_argument("--search-subset", type=int, default=2000)
    ap.add_argument("--search-val", type=int, default=1000)
    ap.add_argument("--train-subset", type=int, default=20000)
    ap.add_argument("--val-size", type=int, default=5000)
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--resolution", type=int, default=32)
    ap.add_argument("--train-seeds", type=int, default=1)
    ap.add_argument("--parallel", type=int, default=2)
    ap.add_argument("--out", type=Path, default=OUT)
    ap.add_argument("--quick", action="store_true", help="smoke run: tiny search and training")
    args = ap.parse_args(argv)
    if args.quick:
        args.search_trials, args.search_subset, args.search_val = 3, 256, 128
        args.train_subset, args.val_size, args.epochs = 256, 128, 1
        if args.out == OUT:
            args.out = OUT.with_name("searched_vs_handdesigned_quick")
    for t in args.targets:
        if t not in ("pixel", "host"):
            ap.error(f"--targets: unknown target {t!r}: accepted are pixel, host")
    try:
        goals = {t: _ms(getattr(args, f"{t}_lat")) for t in args.targets}
    except ValueError as e:
        ap.error(str(e))
    args.out.mkdir(parents=True, exist_ok=True)
    from hwnas.latency import load_target
    from hwnas.space import reference

    t0, load0 = time.perf_counter(), os.getloadavg()[0]
    picks: dict[str, dict] = {}
    for t in args.targets:
        target = load_target(t)
        pattern = getattr(args, f"{t}_runs")
        dirs = sorted(Path(p) for p in glob.glob(pattern)) if pattern else []
        if pattern and not dirs:
            ap.error(f"--{t}-runs {pattern!r}: no run folder matches")
        if not dirs:
            print(f"searching {t} at {goals[t]:g} ms ...", flush=True)
            dirs = [_search(t, f"{goals[t]:g}ms", args, args.out)]
        try:
            nets = {"searched": best_within(dirs, goals[t])}
        except ValueError as e:
            ap.error(f"{t}: {e}")
        for name in REFERENCES:
            try:
                w, lat = widest_within(target, name, goals[t])
            except ValueError as e:
                ap.error(f"{t}: {e}")
            nets[f"{name}_{w:g}"] = {"arch": str(reference(name, width=w)), "latency_ms": lat,
                                     "width": w}
        picks[t] = {"goal_ms": goals[t], "nets": nets}
    _write_json(args.out / "nets.json", picks)

    jobs = [{"target": t, "net": n, "arch": v["arch"], "latency_ms": v["latency_ms"],
             "seed": s, "epochs": args.epochs, "resolution": args.resolution,
             "train_subset": args.train_subset, "val_size": args.val_size}
            for s in range(args.train_seeds) for t, p in picks.items()
            for n, v in p["nets"].items()]
    # One training per (arch, seed, recipe): kept in trained/, shared between targets and runs.
    todo = list({_cache_path(args.out, j): j for j in jobs
                 if not _cache_path(args.out, j).exists()}.values())
    print(f"training {len(todo)} nets ({len(jobs)} wanted), {args.parallel} at a time",
          flush=True)
    with mp.get_context("spawn").Pool(args.parallel, maxtasksperchild=1) as pool:
        for r in pool.imap_unordered(_train_one, todo):
            _write_json(_cache_path(args.out, r), {k: r[k] for k in RESULT_KEYS})
            print(f"  {r['target']} {r['net']} seed {r['seed']}: test {r['test_accuracy']:.4f} "
                  f"({r['train_s']:.0f} s, load {os.getloadavg()[0]:.1f})", flush=True)
    rows = [j | json.loads(_cache_path(args.out, j).read_text()) for j in jobs]
    df = pd.DataFrame(rows).sort_values(["target", "net", "seed"])
    df.to_csv(args.out / "results.csv", index=False)
    _plot(df, goals, args.out / "accuracy_vs_latency.png")

    table = ["| target, goal | net | predicted latency | params (10 cls) | val acc. | "
             "test acc. | train time |", "|---|---|---|---|---|---|---|"]
    summary = {"date": dt.date.today().isoformat(), "argv": sys.argv[1:],
               "settings": vars(args) | {"out": str(args.out)}, "picks": picks,
               "load_start": load0, "load_end": os.getloadavg()[0], "results": {}}
    for t in args.targets:
        g = df[df["target"] == t].groupby("net", sort=False)
        agg = g.agg(latency_ms=("latency_ms", "first"), params=("params_10cls", "first"),
                    val=("val_accuracy", "mean"), test=("test_accuracy", "mean"),
                    test_std=("test_accuracy", "std"), train_s=("train_s", "mean"))
        summary["results"][t] = agg.reset_index().to_dict(orient="records")
        for net, r in agg.iterrows():
            spread = f" ± {100 * r['test_std']:.1f}" if args.train_seeds > 1 else ""
            table.append(f"| {t}, {goals[t]:g} ms | {net} | {r['latency_ms']:.2f} ms | "
                         f"{r['params'] / 1e6:.2f} M | {100 * r['val']:.1f}% | "
                         f"{100 * r['test']:.2f}%{spread} | {r['train_s']:.0f} s |")
    summary["wall_s"] = time.perf_counter() - t0
    _write_json(args.out / "summary.json", summary)
    print("\n".join(table))
    print(f"\nwall {summary['wall_s'] / 60:.1f} min; results in {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

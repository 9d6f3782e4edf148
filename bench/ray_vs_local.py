"""The same search on the local backend and on Ray, back to back, on this machine.

Run from the repository root (the issue's goal: Ray's wall time within 15 %
of ``--backend local --workers 2``, and the same trial counts by state)::

    nice -n 5 .venv/bin/python bench/ray_vs_local.py                 # 32 trials each
    nice -n 5 .venv/bin/python bench/ray_vs_local.py --trials 8 --tag quick

Each backend runs the real ``nas-search`` command in a child process, in a
fresh run folder under a temp dir, with the same flags (``--workers 2``,
random sampler, one training epoch on a small subset, so the per-trial cost is
small and the backends' own overheads show). The wall time is the child's,
from start to exit: start-up, every trial and the results. The load average
is read before and after each run. Per trial, ``duration_s`` (start to
finish of its study record) tells trial cost from the backend's overhead:
``overhead_s = wall_s - sum(duration_s) / workers``.

Writes ``bench/results/ray_vs_local[_TAG].json``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from hwnas.common.atomic import atomic_write_text
from hwnas.search import load_run

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results"
GOAL_RATIO = 1.15  # issue 14: Ray within 15 % of the local backend
BACKENDS = ("local", "ray")


def _loadavg() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def search_flags(args: argparse.Namespace) -> list[str]:
    return ["--target", "pixel", "--lat", "50ms", "--trials", str(args.trials),
            "--workers", str(args.workers), "--sampler", "random", "--seed", str(args.seed),
            "--epochs", str(args.epochs), "--train-subset", str(args.train_subset),
            "--val-size", str(args.val_size), "--proxy-resolution", str(args.proxy_resolution),
            "--quiet"]


def run_backend(backend: str, args: argparse.Namespace, workdir: Path) -> dict:
    """One ``nas-search`` child on ``backend``; its wall time and trial records."""
    out = workdir / backend
    cmd = [sys.executable, "-m", "hwnas.search.cli", *search_flags(args), "--backend", backend,
           "--out", str(out)]
    load_before = _loadavg()
    t0 = time.monotonic()
    p = subprocess.run(cmd, cwd=workdir, capture_output=True, text=True, check=False)
    wall = time.monotonic() - t0
    load_after = _loadavg()
    if p.returncode != 0:
        raise SystemExit(f"{backend}: nas-search exited {p.returncode}: {p.stderr[-2000:]}")
    trials = load_run(out).trials
    dur = [float(x) for x in trials["duration_s"].dropna()]
    return {
        "backend": backend, "command": " ".join(cmd[1:]), "wall_s": round(wall, 2),
        "states": {str(k): int(v) for k, v in trials["state"].value_counts().items()},
        "trials": len(trials),
        "trial_duration_s": {"sum": round(sum(dur), 2),
                             "mean": round(sum(dur) / max(1, len(dur)), 3),
                             "max": round(max(dur, default=0.0), 3)},
        "overhead_s": round(wall - sum(dur) / args.workers, 2),
        "loadavg_before": load_before, "loadavg_after": load_after,
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--trials", type=int, default=32)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--epochs", type=int, default=1)
    ap.add_argument("--train-subset", type=int, default=1024)
    ap.add_argument("--val-size", type=int, default=512)
    ap.add_argument("--proxy-resolution", type=int, default=32)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--order", nargs="+", choices=BACKENDS, default=list(BACKENDS))
    ap.add_argument("--tag", default="", help="suffix of the result file")
    args = ap.parse_args(argv)

    runs = []
    with tempfile.TemporaryDirectory(prefix="hwnas-ray-vs-local-") as tmp:
        for backend in args.order:
            r = run_backend(backend, args, Path(tmp))
            print(f"{backend:6s} wall {r['wall_s']:8.1f} s  states {r['states']}  "
                  f"mean trial {r['trial_duration_s']['mean']:.2f} s  overhead "
                  f"{r['overhead_s']:.1f} s  load {r['loadavg_before']} -> {r['loadavg_after']}")
            runs.append(r)
    by = {r["backend"]: r for r in runs}
    result = {
        "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform(),
                    "python": platform.python_version()},
        "niceness": os.nice(0),
        "settings": vars(args),
        "runs": runs,
    }
    if set(by) == set(BACKENDS):
        ratio = by["ray"]["wall_s"] / by["local"]["wall_s"]
        result["ray_over_local"] = round(ratio, 3)
        result["goal_met"] = ratio <= GOAL_RATIO
        result["same_states"] = by["ray"]["states"] == by["local"]["states"]
        print(f"ray / local wall time: {ratio:.3f} (goal <= {GOAL_RATIO}); same trial counts by "
              f"state: {result['same_states']}")
    name = "ray_vs_local" + (f"_{args.tag}" if args.tag else "") + ".json"
    RESULTS.mkdir(parents=True, exist_ok=True)
    atomic_write_text(RESULTS / name, json.dumps(result, indent=1) + "\n")
    print(f"wrote {RESULTS / name}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

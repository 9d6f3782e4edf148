"""Benchmark: both local runtimes at 224 px, from empty tables to validation and rank agreement.

    .venv/bin/python bench/runtime_224.py --home /tmp/hwnas12 [--n 20] [--seed 0]

Runs, one after another, each as its own command holding the machine's timing
lock on core 0 (``flock /tmp/hwnas-core0.lock taskset -c 0 ...``, so that no
two timing jobs overlap and each can interleave with other users' jobs):

1. ``nas-latency build --target host --workers 1`` (onnxruntime)
2. ``nas-latency build --target host-tflite --workers 1`` (LiteRT interpreter)
3. ``nas-latency validate --target host --n N --seed S --json``
4. ``nas-latency validate --target host-tflite --n N --seed S --json``
5. ``bench/runtime_agreement.py`` (200 nets predicted by both tables, 30 timed)

with ``HWNAS_HOME=--home`` (a folder of its own, so no user's table is
touched). Each step's command, wall time, load average before and after, and
its JSON answer go to ``bench/results/runtime_224.json`` (rewritten after every
step, so a partial run keeps what it measured).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import subprocess
import sys
import time
from pathlib import Path

from hwnas.common.atomic import atomic_write_text
from hwnas.latency.runners.protocol import cpu_model

LOCK = "/tmp/hwnas-core0.lock"  # the shared timing lock of this machine (house CPU rule)
CORE = "0"
OUT = Path("bench/results/runtime_224.json")


def _git_commit() -> str:
    done = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True)
    return done.stdout.strip() or "unknown"


def _uptime() -> str:
    return subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--home", type=Path, required=True, help="HWNAS_HOME to build in")
    p.add_argument("--space", default="mobilenetv3")
    p.add_argument("--n", type=int, default=20)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--skip", nargs="*", default=[], help="step names to skip (already done)")
    args = p.parse_args()

    bin_dir = Path(sys.executable).parent
    cli = str(bin_dir / "nas-latency")
    common = ["--space", args.space, "--resolution", "224"]
    steps = {
        "build-host": [cli, "build", "--target", "host", "--workers", "1", *common],
        "build-host-tflite": [cli, "build", "--target", "host-tflite", "--workers", "1", *common],
        "validate-host": [cli, "validate", "--target", "host", "--n", str(args.n),
                          "--seed", str(args.seed), "--json", *common],
        "validate-host-tflite": [cli, "validate", "--target", "host-tflite", "--n", str(args.n),
                                 "--seed", str(args.seed), "--json", *common],
        "agreement": [sys.executable, "bench/runtime_agreement.py", "--space", args.space,
                      "--seed", str(args.seed)],
    }
    env = {**os.environ, "HWNAS_HOME": str(args.home)}
    doc: dict = json.loads(OUT.read_text()) if OUT.exists() and args.skip else {}
    doc.update(machine=f"{cpu_model()}, {os.cpu_count()} cores", home=str(args.home),
               lock=f"flock {LOCK} taskset -c {CORE}")
    doc.setdefault("steps", {})
    for name, argv in steps.items():
        if name in args.skip:
            continue
        wrapped = ["flock", LOCK, "taskset", "-c", CORE, *argv]
        rec = {"command": " ".join(wrapped), "commit": _git_commit(), "uptime_before": _uptime(),
               "date": time.strftime("%Y-%m-%d %H:%M:%S %Z")}
        print(f"== {name}: {rec['command']}", flush=True)
        t0 = time.perf_counter()
        done = subprocess.run(wrapped, env=env, capture_output=True, text=True)
        rec.update(wall_s=round(time.perf_counter() - t0, 1), rc=done.returncode,
                   uptime_after=_uptime(), stdout_tail=done.stdout[-3000:],
                   stderr_tail=done.stderr[-1500:])
        last = [ln for ln in done.stdout.splitlines() if ln.startswith("{")]
        if last:
            with contextlib.suppress(json.JSONDecodeError):
                rec["json"] = json.loads(last[-1])
        doc["steps"][name] = rec
        atomic_write_text(OUT, json.dumps(doc, indent=1) + "\n")
        print(f"   rc {done.returncode}, {rec['wall_s']} s; {done.stdout[-400:]}", flush=True)
        if done.returncode != 0:
            print(done.stderr[-1500:], flush=True)
            break


if __name__ == "__main__":
    main()

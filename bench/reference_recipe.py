"""Check the trainer against an outside reference: MobileNetV3-Large on full Fashion-MNIST.

The issue quotes timm's MobileNetV3-Large trained with this recipe (SGD with
Nesterov momentum, cosine, label smoothing 0.1, batch 128) on the full
Fashion-MNIST train split at 32x32: about 81% test accuracy after 1 epoch and
88.5% after 5. This trains ``reference("mobilenetv3_large")`` (10 classes)
the same way with :func:`hwnas.proxy.train.train` on all 60,000 train
images and scores the 10,000 test images (a benchmark, not a search).

Run from the repository root (``nice`` it on a shared machine; on a busy machine
``OMP_WAIT_POLICY=PASSIVE`` avoids OpenMP spin-waiting, see docs/benchmarks.md)::

    nice -n 10 .venv/bin/python bench/reference_recipe.py              # 1 epoch
    nice -n 10 .venv/bin/python bench/reference_recipe.py --epochs 5
    nice -n 10 .venv/bin/python bench/reference_recipe.py --bn-recalibration 0  # running BN stats

Prints the result and writes ``results/benchmarks/reference_recipe_e<N>.json``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import resource
import sys
import time
from pathlib import Path

import torch

from hwnas.common.atomic import atomic_write_text
from hwnas.proxy.data import DataError, Dataset, load_dataset, load_test_split
from hwnas.proxy.train import (
    DEFAULT_BN_RECALIBRATION,
    DEFAULT_LR,
    NonFiniteLoss,
    TrainConfig,
    train,
)
from hwnas.space import reference

ROOT = Path(__file__).resolve().parents[1]
OUT_DIR = ROOT / "results" / "benchmarks"
# Top-1 test accuracy quoted in the issue for timm's MobileNetV3-Large with this recipe.
OUTSIDE_REFERENCE = {1: 0.81, 5: 0.885}


def full_train_with_test(data: str, resolution: int) -> Dataset:
    """All train images for training; the test split in the validation slot (benchmark only)."""
    split = load_dataset(data, resolution=resolution, val_size=1, seed=0)
    test_x, test_y = load_test_split(data, resolution=resolution)
    return Dataset(split.name, split.source, split.num_classes, resolution,
                   torch.cat([split.train_x, split.val_x]), torch.cat([split.train_y, split.val_y]),
                   test_x, test_y)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--epochs", type=int, default=1)
    ap.add_argument("--lr", type=float, default=DEFAULT_LR)
    ap.add_argument("--bn-recalibration", type=int, default=DEFAULT_BN_RECALIBRATION,
                    help="images for re-estimating BN statistics before testing (0: off)")
    ap.add_argument("--resolution", type=int, default=32)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--data", default="fashion-mnist")
    ap.add_argument("--device", default=None, help="cpu, cuda, ... (default: cuda if present)")
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args(argv)
    if args.epochs < 1 or args.threads < 1:
        ap.error("--epochs and --threads must be >= 1")
    torch.set_num_threads(args.threads)
    try:
        data = full_train_with_test(args.data, args.resolution)
        config = TrainConfig(epochs=args.epochs, lr=args.lr, resolution=args.resolution,
                             seed=args.seed, device=args.device,
                             bn_recalibration=args.bn_recalibration)
    except (DataError, ValueError) as e:
        print(f"reference_recipe: {e}", file=sys.stderr)
        return 2
    print(f"training mobilenetv3_large on {len(data.train_y)} images, {args.epochs} epoch(s), "
          f"{config}", flush=True)
    load0, t0 = os.getloadavg()[0], time.perf_counter()
    try:
        res = train(reference("mobilenetv3_large"), data, config,
                    report=lambda e, acc: print(f"epoch {e}: test accuracy {acc:.4f}", flush=True))
    except NonFiniteLoss as e:
        print(f"reference_recipe: diverged: {e}", file=sys.stderr)
        return 1
    wall = time.perf_counter() - t0
    r = resource.getrusage(resource.RUSAGE_SELF)
    report = {
        "benchmark": "reference_recipe", "date": dt.datetime.now().isoformat(timespec="seconds"),
        "arch": "mobilenetv3_large", "num_classes": data.num_classes, "data": args.data,
        "train_images": len(data.train_y), "test_images": len(data.val_y),
        "config": {k: getattr(config, k) for k in config.__dataclass_fields__},
        "test_accuracy": res.val_accuracy, "test_history": res.val_history,
        "train_loss": res.train_loss, "steps": res.steps, "wall_s": round(wall, 1),
        "process_cpu_s": round(r.ru_utime + r.ru_stime, 1),
        "loadavg_1m": [round(load0, 2), round(os.getloadavg()[0], 2)],
        "outside_reference": OUTSIDE_REFERENCE.get(args.epochs),
        "machine": {"cores": os.cpu_count(), "threads": args.threads, "torch": torch.__version__,
                    "python": platform.python_version(),
                    "device": args.device or ("cuda" if torch.cuda.is_available() else "cpu")},
    }
    bn = "" if args.bn_recalibration == DEFAULT_BN_RECALIBRATION else f"_bn{args.bn_recalibration}"
    out = args.out or OUT_DIR / f"reference_recipe_e{args.epochs}{bn}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out, json.dumps(report, indent=2) + "\n")
    ref = OUTSIDE_REFERENCE.get(args.epochs)
    print(f"test accuracy {res.val_accuracy:.4f} after {args.epochs} epoch(s) "
          f"({res.steps} steps, {wall:.0f} s)" + (f"; outside reference ~{ref:.3f}" if ref else ""))
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

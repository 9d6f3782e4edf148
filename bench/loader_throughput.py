"""Images per second of the streaming ImageFolder loader against the trainer's appetite.

Run from the repository root (on a shared machine, nice'd)::

    nice -n 10 .venv/bin/python bench/loader_throughput.py              # throughput
    nice -n 10 .venv/bin/python bench/loader_throughput.py --memory     # + 20,000-file memory run

Throughput: a generated ImageFolder (``--images`` JPEGs of 240-340 px, smooth
colour fields with noise, about the size of ImageNet's) is read once per
resolution (32, 96, 224) by ``hwnas.proxy`` with ``--workers`` loader workers
and the train transform; the trainer's rate is ``hwnas.proxy.train`` steps on
in-memory tensors (no decoding) for a small net (MobileNetV3-Small, 32 px,
batch 128), and the same net fed by the loader end to end.

Memory (``--memory``): ``--memory-images`` small files (36-52 px) are
generated (timed), then a child process trains a tiny net one epoch at 32 px
with 2 workers; its peak resident set (``resource.getrusage``) is recorded
beside its baseline and the workers' peak.

Writes ``bench/results/loader_throughput.json`` (or ``--out``) with the
machine, the load average and the date.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import math
import os
import platform
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

import numpy as np
import torch

from hwnas.common.atomic import atomic_write_text
from hwnas.proxy.data import load_dataset
from hwnas.proxy.train import TrainConfig, train
from hwnas.space import reference

OUT = Path("bench/results/loader_throughput.json")


def make_folder(root: Path, n: int, size: tuple[int, int], classes: int = 10, seed: int = 0,
                ext: str = "jpg") -> float:
    """``n`` images in ``root/c<k>/``; returns the seconds it took."""
    from PIL import Image

    t0 = time.perf_counter()
    rng = np.random.default_rng(seed)
    for c in range(classes):
        (root / f"c{c}").mkdir(parents=True, exist_ok=True)
    for i in range(n):
        w, h = (int(v) for v in rng.integers(size[0], size[1], 2))
        base = rng.integers(0, 256, (4, 4, 3)).astype(np.uint8)  # a smooth colour field
        img = Image.fromarray(base).resize((w, h), Image.Resampling.BILINEAR)
        arr = np.asarray(img, np.int16) + rng.integers(-12, 12, (h, w, 3))
        Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8)).save(
            root / f"c{i % classes}" / f"{i:06d}.{ext if i % 4 else 'png'}")
    return time.perf_counter() - t0


def loader_rate(root: Path, resolution: int, workers: int) -> dict:
    data = load_dataset(str(root), resolution=resolution, val_size=10, stream=True, workers=workers)
    order = torch.arange(len(data.train_y))
    t0, n = time.perf_counter(), 0
    for x, _ in data.train_batches(order, 128, torch.device("cpu")):
        n += len(x)
    s = time.perf_counter() - t0
    return {"resolution": resolution, "workers": workers, "images": n, "seconds": round(s, 2),
            "images_per_s": round(n / s, 1)}


def trainer_rate(root: Path, steps: int, workers: int) -> dict:
    arch = reference("mobilenetv3_small")
    n = sum(1 for _ in root.rglob("*.*")) - 10
    cfg = TrainConfig(epochs=math.ceil(steps * 128 / n) + 1, batch_size=128, max_steps=steps,
                      bn_recalibration=0, device="cpu")
    out = {"net": "mobilenetv3_small", "resolution": 32, "batch": 128, "steps": steps}
    for stream in (False, True):
        data = load_dataset(str(root), resolution=32, val_size=10, stream=stream, workers=workers)
        train(arch, data, TrainConfig(epochs=1, batch_size=128, max_steps=2, bn_recalibration=0,
                                      device="cpu"))  # warm-up
        r = train(arch, data, cfg)
        key = "streamed" if stream else "in_memory"
        # train() also evaluates 10 images once: negligible next to `steps` steps of 128
        out[f"{key}_images_per_s"] = round(r.steps * 128 / r.seconds, 1)
        out[f"{key}_seconds"] = round(r.seconds, 2)
    return out


MEMORY_CHILD = """
import json, resource, time, torch
from torch import nn
from hwnas.proxy.data import load_dataset
from hwnas.proxy.train import TrainConfig, train
def peak(who):
    return resource.getrusage(who).ru_maxrss * 1024
net = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(),
                    nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 10))
net(torch.zeros(64, 3, 32, 32)).sum().backward()
with torch.no_grad():
    net.eval()(torch.zeros(512, 3, 32, 32))
net.train()
base = peak(resource.RUSAGE_SELF)
t0 = time.perf_counter()
data = load_dataset(ROOT, resolution=32, val_size=1000, stream=True, workers=2)
r = train(net, data, TrainConfig(epochs=1, batch_size=64, bn_recalibration=2048, device="cpu"))
print(json.dumps(dict(base_bytes=base, peak_bytes=peak(resource.RUSAGE_SELF),
                      worker_peak_bytes=peak(resource.RUSAGE_CHILDREN), steps=r.steps,
                      val_accuracy=r.val_accuracy, seconds=round(time.perf_counter() - t0, 1))))
"""


def memory_run(root: Path, n: int) -> dict:
    gen_s = make_folder(root, n, (36, 52))
    code = textwrap.dedent(MEMORY_CHILD).replace("ROOT", repr(str(root)))
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    m = json.loads(out.stdout.strip().splitlines()[-1])
    m.update(images=n, generate_seconds=round(gen_s, 1),
             in_memory_bytes_would_be=n * 3 * 32 * 32 * 5,
             growth_bytes=m["peak_bytes"] - m["base_bytes"])
    return m


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--images", type=int, default=1000)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--resolutions", type=int, nargs="+", default=[32, 96, 224])
    ap.add_argument("--steps", type=int, default=20, help="trainer steps timed per path")
    ap.add_argument("--memory", action="store_true")
    ap.add_argument("--memory-images", type=int, default=20000)
    ap.add_argument("--out", type=Path, default=OUT)
    args = ap.parse_args()
    result: dict = {"date": dt.datetime.now().isoformat(timespec="seconds"),
                    "machine": {"platform": platform.platform(), "cpus": os.cpu_count(),
                                "torch": torch.__version__, "torch_threads": torch.get_num_threads()},
                    "load_average_before": os.getloadavg(),
                    "command": " ".join(sys.argv)}
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "folder"
        result["generate_seconds"] = round(make_folder(root, args.images, (240, 340)), 1)
        result["loader"] = []
        for r in args.resolutions:
            result["loader"].append(loader_rate(root, r, args.workers))
            print(result["loader"][-1], flush=True)
        result["trainer"] = trainer_rate(root, args.steps, args.workers)
        print(result["trainer"], flush=True)
        if args.memory:
            result["memory"] = memory_run(Path(tmp) / "small", args.memory_images)
            print(result["memory"], flush=True)
    result["load_average_after"] = os.getloadavg()
    atomic_write_text(args.out, json.dumps(result, indent=1) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()

"""NetAdapt benchmark: MobileNetV3-Large on the default proxy task, target host, goal 0.75x.

The input is MobileNetV3-Large trained on the default proxy task (what
``nas-search`` trains a candidate with: Fashion-MNIST at 32 px, 20000 training
images, the default held-out split of 5000, one epoch, the default recipe); its weights are
saved as ``input.pt`` in the output folder. Then runs
``examples/netadapt_mobilenetv3.yaml`` on it (``--budget full``) or a reduced
version that fits a shared 2-core machine (``--budget reduced``: fine-tuning
on a subset, a larger dR so fewer iterations, fewer short-term steps). The
reduced held-out split (the first 1000 images of the same seeded permutation)
lies inside the input's held-out split, so the input never trained on it.
Then reports, for docs/benchmarks.md:

- predicted and measured (host) latency of the input and the refined net;
- held-out accuracy (the val split NetAdapt selects on) before/after;
- test-split accuracy before/after, and of a control: the unpruned input
  fine-tuned with the same long-term budget, so the comparison is not
  flattered by the extra training the refined net received.

    nice -n 10 .venv/bin/python bench/netadapt_v3.py --budget reduced

``--input-run RUN`` refines the best net of a ``nas-search`` run folder
(``best.json`` + ``best.pt``) instead, with the same settings: NetAdapt applied
to a searched net (benchmark 5 of docs/benchmarks.md).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch
import yaml

from hwnas.common.atomic import atomic_save_state_dict
from hwnas.netadapt import load_config, parse_config, prepare, run_refine
from hwnas.netadapt.cli import RichProgress
from hwnas.netadapt.outputs import write_json
from hwnas.netadapt.refine import fine_tune
from hwnas.proxy.data import load_dataset, load_test_split
from hwnas.proxy.train import TrainConfig, evaluate, train
from hwnas.search.config import DEFAULT_TRAIN_SUBSET
from hwnas.space import Arch, build, reference

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "netadapt_mobilenetv3.yaml"
# What --budget reduced changes (everything else is the example's full setting).
REDUCED = {
    "dr": {"initial": "0.05x", "decay": 1.0},
    "short_term": {"steps": 10, "lr": 0.02},
    "long_term": {"epochs": 1, "lr": 0.02},
    "dataset": {"name": "fashion-mnist", "resolution": 32, "val_size": 1000, "train_subset": 8000},
}


def _test_accuracy(arch: Arch, weights: Path, num_classes: int, x: torch.Tensor, y: torch.Tensor
                   ) -> float:
    net = build(arch, num_classes=num_classes)
    net.load_state_dict(torch.load(weights, map_location="cpu", weights_only=True))
    return evaluate(net.eval(), x, y)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--budget", choices=("full", "reduced"), default="reduced")
    ap.add_argument("--out", default=None, help="output folder (default results/bench-netadapt-<budget>)")
    ap.add_argument("--no-control", action="store_true", help="skip the fine-tuned-input control")
    ap.add_argument("--input-run", default=None,
                    help="refine the best net of this nas-search run folder instead of MobileNetV3-Large")
    args = ap.parse_args()

    raw = yaml.safe_load(EXAMPLE.read_text())
    if args.budget == "reduced":
        raw.update(REDUCED)
    out = Path(args.out or f"results/bench-netadapt-{args.budget}")
    raw["out"] = str(out)
    if args.input_run:
        weights = Path(args.input_run) / "best.pt"
        raw["input"] = {"run": args.input_run}
    else:
        weights = out.parent / f"{out.name}-input.pt"
        raw["input"] = {"reference": "mobilenetv3_large", "weights": str(weights)}
    info = weights.with_suffix(".json")
    if not args.input_run and not weights.is_file():  # the default proxy task of nas-search
        proxy = load_dataset("fashion-mnist", resolution=32, train_subset=DEFAULT_TRAIN_SUBSET)
        res = train(reference("mobilenetv3_large"), proxy, TrainConfig(epochs=1, seed=0))
        atomic_save_state_dict(res.model.state_dict(), weights)
        write_json(info, {"proxy_val_accuracy": res.val_accuracy, "seconds": res.seconds})
    pretrain = json.loads(info.read_text()) if info.is_file() else {}
    cfg = parse_config(raw, source=str(EXAMPLE))
    t0 = time.perf_counter()
    prepared = prepare(cfg)
    progress = RichProgress()
    try:
        summary = run_refine(cfg, progress, prepared)
    finally:
        progress.stop()
    refine_s = time.perf_counter() - t0
    data = prepared.data
    x, y = load_test_split(cfg.dataset.name, resolution=cfg.dataset.resolution)
    arch0 = Arch.from_str(summary["initial"]["arch"])
    arch1 = Arch.from_str(summary["final"]["arch"])
    result = {
        "budget": args.budget, "config": load_config(out / "config.yaml").model_dump(mode="json"),
        "summary": summary, "refine_seconds": refine_s, "pretrain": pretrain,
        "test_accuracy_before": _test_accuracy(arch0, weights, data.num_classes, x, y),
        "test_accuracy_after": _test_accuracy(arch1, out / "final.pt", data.num_classes, x, y),
    }
    if not args.no_control and cfg.long_term.epochs > 0:
        control = out / "control.pt"
        net = build(arch0, num_classes=data.num_classes)
        net.load_state_dict(torch.load(weights, weights_only=True))
        if not control.is_file():
            fine_tune(net, data, None, cfg.long_term.epochs, cfg.long_term.lr, cfg, seed=cfg.seed)
            atomic_save_state_dict(net.state_dict(), control)
        result["control_test_accuracy"] = _test_accuracy(arch0, control, data.num_classes, x, y)
    write_json(out / "bench.json", result)
    i, f = summary["initial"], summary["final"]
    print(json.dumps({k: v for k, v in result.items() if k not in ("config", "summary")}, indent=2))
    print(f"predicted {i['latency_ms']:.2f} -> {f['latency_ms']:.2f} ms; measured "
          f"{i.get('measured_ms', float('nan')):.2f} -> {f.get('measured_ms', float('nan')):.2f} ms; "
          f"val {100 * i['accuracy']:.2f} -> {100 * f['accuracy']:.2f} %; "
          f"{summary['iterations']} iterations in {refine_s / 60:.1f} min")


if __name__ == "__main__":
    main()

"""Does a supernet's weights help a short fine-tune rank candidates? A controlled comparison.

For every architecture with a ground truth in ``bench/results/supernet_truth.json``
(standalone proxy training, test split; see ``bench/supernet_fidelity.py``), three
estimates on the same 2,000 held-out images:

- ``inherit``: ``Supernet.estimate`` (inherited weights, BN recalibrated, no training);
- ``inherit+ftK``: the inherited weights fine-tuned for ``K`` steps of the proxy recipe
  (``hwnas.proxy.train``, batch 128, cosine over the K steps);
- ``scratch+ftK``: the same K steps from a fresh initialisation -- the control: if the
  supernet's weights carry no ranking information, this does as well.

Kendall tau and Spearman against the ground truth, and the seconds per candidate::

    nice .venv/bin/python bench/supernet_finetune.py --supernet ID --steps 40
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import numpy as np
import torch
from scipy.stats import kendalltau, spearmanr

from hwnas.common.atomic import atomic_write_text
from hwnas.proxy.train import TrainConfig, evaluate, train
from hwnas.space import Arch
from hwnas.supernet import load_supernet

ROOT = Path(__file__).resolve().parents[1]
TRUTH = ROOT / "bench" / "results" / "supernet_truth.json"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--supernet", required=True)
    ap.add_argument("--steps", type=int, default=40)
    ap.add_argument("--lr", type=float, default=0.05)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--seed", type=int, default=0, help="fine-tune seed (data order; init of the control)")
    ap.add_argument("--out", default=None)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    truth = json.loads(TRUTH.read_text())["rows"]
    sn = load_supernet(args.supernet)
    data = sn.data
    _, _, val_x, val_y = sn._fixed_sets()
    cfg = TrainConfig(epochs=1, max_steps=args.steps, lr=args.lr, resolution=sn.config.proxy_resolution,
                      seed=args.seed)
    rows = {}
    for name, row in truth.items():
        arch = Arch.from_str(row["arch"])
        r = {"truth": row["test_accuracy"]}
        t = time.perf_counter()
        r["inherit"] = sn.estimate(arch)
        r["inherit_s"] = time.perf_counter() - t
        t = time.perf_counter()
        model = train(sn.extract(arch).train(), data, cfg).model
        r["inherit_ft"] = evaluate(model, val_x, val_y)
        r["inherit_ft_s"] = time.perf_counter() - t
        t = time.perf_counter()
        model = train(arch, data, cfg).model
        r["scratch_ft"] = evaluate(model, val_x, val_y)
        r["scratch_ft_s"] = time.perf_counter() - t
        rows[name] = r
        print(name, {k: round(v, 4) for k, v in r.items()}, flush=True)
    tru = [r["truth"] for r in rows.values()]
    summary = {}
    for key in ("inherit", "inherit_ft", "scratch_ft"):
        est = [r[key] for r in rows.values()]
        summary[key] = {"kendall_tau": float(kendalltau(est, tru).statistic),
                        "spearman": float(spearmanr(est, tru).statistic),
                        "median_seconds": float(np.median([r[f"{key}_s"] for r in rows.values()])),
                        "mean_estimate": float(np.mean(est))}
    out = {"supernet": sn.id, "steps": args.steps, "lr": args.lr, "seed": args.seed, "n": len(rows),
           "loadavg": os.getloadavg(), "date": time.strftime("%Y-%m-%d"), "summary": summary,
           "rows": rows}
    dest = Path(args.out) if args.out else ROOT / "bench" / "results" / (
        f"supernet_finetune_{args.steps}" + (f"_s{args.seed}" if args.seed else "") + ".json")
    atomic_write_text(dest, json.dumps(out, indent=2) + "\n")
    print(json.dumps(summary, indent=1))


if __name__ == "__main__":
    main()

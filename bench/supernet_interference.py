"""Which elastic decision stops a supernet from learning? Short SPOS runs, one decision varied.

Each run trains a fresh ``mobilenetv3`` supernet for ``--steps`` steps of batch 128
on 4,096 Fashion-MNIST images at 32 px (one torch thread), starting from a fixed
path (every block ir4, k3, no SE, relu, skip, filters 1.0, layers 0) and drawing
per block, each step, only the decision named (``op``, ``kernel``, ``skip``,
``filters``, ``layers``, ``act``, ``se``), or ``all`` (``SearchSpace.sample_random``)
or ``none`` (the fixed path); ``a+b`` varies several. Prints the mean training loss of the first and last
20 steps and the median gradient norm. The numbers are in docs/benchmarks.md::

    nice .venv/bin/python bench/supernet_interference.py none kernel skip op all
    nice .venv/bin/python bench/supernet_interference.py --clip 0 all
    nice .venv/bin/python bench/supernet_interference.py --steps 100 --ops conv,ir4 op
    nice .venv/bin/python bench/supernet_interference.py --fair --clip 0 --ops ds,ir4 op
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch
import torch.nn.functional as F

import hwnas.common  # noqa: F401
from hwnas.proxy.data import load_dataset
from hwnas.space.searchspace import get_space
from hwnas.supernet.model import SuperNet

FIXED = {"op": "ir4", "kernel": 3, "se": 0.0, "act": "relu", "skip": True, "filters": 1.0,
         "layers": 0}


def run(vary: str, steps: int, lr: float, clip: float, data, space,
        ops: tuple[str, ...] | None = None, optim: str = "sgd",
        dw_scale: float = 1.0, dw_fan: bool = False, warm: int = 0,
        zero_gamma: bool = False, fair: bool = False) -> tuple[float, float, float]:
    torch.manual_seed(0)
    net = SuperNet(space, data.num_classes).train()
    with torch.no_grad():
        if zero_gamma:  # a stage's later blocks (those that can skip) start as identity: last BN scale 0
            for name, p in net.named_parameters():
                if name.endswith(("ir.bn3.weight", "ds.bn2.weight", "conv.bn1.weight")) \
                        and name.startswith("stages.") and name.split(".")[2] != "0":
                    p.zero_()
        for name, p in net.named_parameters():
            if "conv_dw" in name:
                if dw_fan:  # He init over one group's fan-out (k*k), not k*k*channels
                    p.normal_(0.0, (2.0 / p[0].numel()) ** 0.5)
                p.mul_(dw_scale)
    if optim == "adam":
        opt = torch.optim.AdamW(net.parameters(), lr=lr, weight_decay=4e-5)
    else:
        opt = torch.optim.SGD(net.parameters(), lr=lr, momentum=0.9, nesterov=True, weight_decay=4e-5)
    rng = np.random.default_rng(1)
    base = space.from_indices(space.sample_indices(np.random.default_rng(0), 1)[0])
    for b in range(space.num_blocks):
        base.update({f"b{b}_{k}": v for k, v in FIXED.items()})
    losses, norms, heads = [], [], []
    def draw(op_of_block=None):
        if vary == "all" and op_of_block is None:
            return space.sample_random(rng)
        p = dict(base) if vary != "all" else space.sample_params(rng)
        for b in range(space.num_blocks):
            for d in space.block_decisions(b):
                field = d.name.split("_", 1)[1]
                if field == "op" and op_of_block is not None:
                    p[d.name] = op_of_block[b]
                elif field in vary.split("+") and vary != "all":
                    opts = ops if field == "op" and ops else d.choices
                    p[d.name] = opts[int(rng.integers(len(opts)))]
        return space.decode(p)

    op_opts = ops or space.block_decisions(0)[0].choices
    for step in range(warm + steps):
        if step < warm:  # warm start: the fixed path alone (progressive shrinking's first phase)
            archs = [space.decode(base)]
        elif fair:  # FairNAS strict fairness: every op of every block once per step
            perms = [rng.permutation(len(op_opts)) for _ in range(space.num_blocks)]
            archs = [draw([op_opts[perms[b][k]] for b in range(space.num_blocks)])
                     for k in range(len(op_opts))]
        else:
            archs = [draw()]
        idx = torch.randint(0, len(data.train_y), (128,))
        opt.zero_grad()
        total = 0.0
        for arch in archs:
            loss = F.cross_entropy(net(data.train_x[idx], arch), data.train_y[idx], label_smoothing=0.1)
            loss.backward()
            total += float(loss.detach())
        norms.append(float(torch.nn.utils.clip_grad_norm_(net.parameters(), clip or 1e9)))
        opt.step()
        if step >= warm:
            losses.append(total / len(archs))
            heads.append(archs[0].head.kind)
    half = len(losses) // 2  # second half's loss by head kind: the heads are separate banks
    by_head = {h: float(np.mean([v for v, k in zip(losses[half:], heads[half:], strict=True) if k == h]))
               for h in sorted(set(heads[half:]))}
    return float(np.mean(losses[:20])), float(np.mean(losses[-20:])), float(np.median(norms)), by_head


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("vary", nargs="+")
    ap.add_argument("--steps", type=int, default=120)
    ap.add_argument("--lr", type=float, default=0.05)
    ap.add_argument("--clip", type=float, default=1.0, help="gradient-norm clip (0: none)")
    ap.add_argument("--dw-scale", type=float, default=1.0,
                    help="multiply every depthwise bank by this at init")
    ap.add_argument("--dw-fan", action="store_true",
                    help="re-initialise depthwise banks with He init over k*k (one group)")
    ap.add_argument("--warm", type=int, default=0,
                    help="train the fixed path alone for this many steps first (reported: the rest)")
    ap.add_argument("--zero-gamma", action="store_true",
                    help="start the last BN scale of every block at 0 (Goyal et al. 2017, Sec. 5.1)")
    ap.add_argument("--fair", action="store_true",
                    help="FairNAS strict fairness: each step trains every op once per block (summed)")
    ap.add_argument("--optim", choices=("sgd", "adam"), default="sgd")
    ap.add_argument("--ops", default=None, help="op choices when varying op, e.g. conv,ir4")
    args = ap.parse_args()
    torch.set_num_threads(1)
    space = get_space("mobilenetv3")
    data = load_dataset("fashion-mnist", resolution=32, val_size=500, train_subset=4096, seed=0)
    for vary in args.vary:
        t = time.perf_counter()
        first, last, norm, by_head = run(vary, args.steps, args.lr, args.clip, data, space,
                                 tuple(args.ops.split(",")) if args.ops else None, args.optim,
                                 args.dw_scale, args.dw_fan, args.warm, args.zero_gamma,
                                 args.fair)
        print(f"{vary}: loss {first:.3f} -> {last:.3f}, median grad norm {norm:.2f}, "
              f"{time.perf_counter() - t:.0f} s", flush=True)
        if len(by_head) > 1:
            print("  second half by head: " + ", ".join(f"{h} {v:.3f}" for h, v in by_head.items()),
                  flush=True)


if __name__ == "__main__":
    main()

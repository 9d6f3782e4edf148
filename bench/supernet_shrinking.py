"""Does progressive shrinking (Once-for-All) get a ``mobilenetv3`` supernet past chance on a CPU?

OFA (Cai et al., ICLR 2020, Sec. 3.2) trains the largest network first and then
lets one dimension after another vary. This screen does that in phases of
``--steps`` steps each (batch 128, 4,096 Fashion-MNIST images at 32 px, one torch
thread, SGD lr 0.05, clip ``--clip``): the largest path (``ir6``, 7x7, SE,
hswish, skip, 1.25x filters, +1 layer, v3 head); then kernel; + depth; + filters
and the three shared ``ir`` expansions ``ir3``/``ir4``/``ir6``; + SE, activation,
skip; then every decision (``SearchSpace.sample_random``). ``--mode plain`` draws
every decision in every phase (SPOS) for the same number of steps. Prints each
phase's training loss (mean of its first -> last 20 steps) and, at the end, the
loss and accuracy of 20 uniform random paths (each on its own batch of 256,
batch statistics). The numbers are in docs/supernet.md::

    nice .venv/bin/python bench/supernet_shrinking.py --mode ps
    nice .venv/bin/python bench/supernet_shrinking.py --mode plain
    nice .venv/bin/python bench/supernet_shrinking.py --then se,act,skip
"""

from __future__ import annotations

import argparse
import copy

import numpy as np
import torch
import torch.nn.functional as F

import hwnas.common  # noqa: F401
from hwnas.proxy.data import load_dataset
from hwnas.space.searchspace import get_space
from hwnas.supernet.model import SuperNet, largest

PHASES = ((), ("kernel",), ("kernel", "layers"), ("kernel", "layers", "filters", "op3"),
          ("kernel", "layers", "filters", "op3", "se", "act", "skip"), ("all",))
SHARED_IR = ("ir3", "ir4", "ir6")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--mode", choices=("ps", "plain"), default="ps")
    ap.add_argument("--steps", type=int, default=100, help="steps per phase")
    ap.add_argument("--then", default="",
                    help="instead of phases 4-5: from the end of phase 3, one phase per comma-separated "
                         "extra decision (e.g. se,act,skip), each from the same weights")
    ap.add_argument("--clip", type=float, default=1.0, help="gradient-norm clip (0: none)")
    args = ap.parse_args()
    torch.set_num_threads(1)
    space = get_space("mobilenetv3")
    data = load_dataset("fashion-mnist", resolution=32, val_size=500, train_subset=4096, seed=0)
    torch.manual_seed(0)
    net = SuperNet(space, data.num_classes).train()
    opt = torch.optim.SGD(net.parameters(), lr=0.05, momentum=0.9, nesterov=True, weight_decay=4e-5)
    rng = np.random.default_rng(1)
    base = space.encode(largest(space, "v3"))  # the largest path's choices

    def draw(vary: tuple[str, ...]):
        if "all" in vary:
            return space.sample_random(rng)
        p = dict(base)
        for b in range(space.num_blocks):
            for d in space.block_decisions(b):
                f = d.name.split("_", 1)[1]
                if f in vary:
                    p[d.name] = d.choices[int(rng.integers(len(d.choices)))]
                elif f == "op" and "op3" in vary:
                    p[d.name] = SHARED_IR[int(rng.integers(len(SHARED_IR)))]
        return space.decode(p)

    def phase(name: str, vary: tuple[str, ...]) -> None:
        losses = []
        for _ in range(args.steps):
            idx = torch.randint(0, len(data.train_y), (128,))
            loss = F.cross_entropy(net(data.train_x[idx], draw(vary)), data.train_y[idx],
                                   label_smoothing=0.1)
            opt.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(net.parameters(), args.clip or 1e9)
            opt.step()
            losses.append(float(loss.detach()))
        print(f"phase {name} {'+'.join(vary) or 'largest'}: loss {np.mean(losses[:20]):.3f} -> "
              f"{np.mean(losses[-20:]):.3f}", flush=True)

    phases = PHASES[:4] if args.then else PHASES
    for ph, vary in enumerate(phases):
        phase(str(ph), ("all",) if args.mode == "plain" else vary)
    if args.then:
        saved = copy.deepcopy((net.state_dict(), opt.state_dict()))
        for extra in args.then.split(","):
            net.load_state_dict(saved[0])
            opt.load_state_dict(saved[1])
            phase(f"4/{extra}", (*PHASES[3], extra))
        return
    g = np.random.default_rng(123)
    loss_, acc = [], []
    with torch.no_grad():
        for _ in range(20):
            idx = torch.randint(0, len(data.train_y), (256,))
            out = net(data.train_x[idx], space.sample_random(g))
            loss_.append(float(F.cross_entropy(out, data.train_y[idx])))
            acc.append(float((out.argmax(1) == data.train_y[idx]).float().mean()))
    print(f"{args.mode}: 20 random paths, loss {np.mean(loss_):.3f}, accuracy {np.mean(acc):.3f} "
          f"({min(acc):.2f}-{max(acc):.2f})", flush=True)


if __name__ == "__main__":
    main()

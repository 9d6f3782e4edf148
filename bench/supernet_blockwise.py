"""Prototype: does block-wise distillation (DNA) give a supernet that ranks?

SPOS does not learn on this space at a CPU budget (docs/supernet.md "Why it does not
learn"): a block's weights must serve every choice of every block before it. Block-wise
distillation (Li et al., "Block-wisely Supervised Neural Architecture Search with
Knowledge Distillation", CVPR 2020) removes that coupling: a trained teacher's feature
maps at every stage boundary become each stage's input and target, and each stage's
choices are trained only against those. Here:

1. teacher: a standalone net with every stage as wide as its bank (1.25x filters,
   ``ir6``, 3x3, SE, the skeleton's depth; stem as wide as the stem bank), trained
   ``--teacher-steps`` steps (batch 128, one-cycle SGD, label smoothing 0.1);
2. every step, every slot stage draws its own random stage (the stage of a random
   architecture), reads the teacher's previous stage output (its first ``n`` channels,
   ``n`` the width that stage expects) and is trained to give the teacher's stage output
   through a 1x1 adapter (a sliced bank: the candidate's width varies), loss = MSE over
   the teacher feature's variance; the head banks are trained on the teacher's last
   features with the labels;
3. an architecture's scores on 1,000 held-out images: minus the mean (``dna``) or sum
   (``dna_sum``) of its stages' losses; the accuracy of the assembled path (the teacher's
   stem, the stages chained, its head; batch-statistics BN) with each stage's raw output
   (``chain``) or its adapter's output (``chain_adapted``); its head on the teacher's
   features (``head_acc``).

Kendall tau against the three-seed truth of ``bench/supernet_fidelity.py``::

    taskset -c 0,1 .venv/bin/python bench/supernet_blockwise.py --threads 2 \\
        --teacher-steps 800 --steps 800

Writes ``bench/results/supernet_blockwise.json`` (per network: stage losses, scores,
truth; Kendall tau of each score, over all 30 and over the 24 random nets).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from scipy.stats import kendalltau, spearmanr
from torch import nn
from torch.func import functional_call

import hwnas.common  # noqa: F401
from hwnas.common.atomic import atomic_save_state_dict, atomic_write_text
from hwnas.proxy.data import load_dataset
from hwnas.space import Arch, get_space
from hwnas.space.build import Net
from hwnas.supernet.model import SuperNet, _widen

sys.path.insert(0, str(Path(__file__).resolve().parent))
from supernet_fidelity import truth_rows  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


def stage_state(net: SuperNet, arch: Arch, i: int, state: dict | None = None) -> dict:
    state = state if state is not None else net.path_state(arch)
    pre = f"blocks.{i}."
    return {k[len(pre):]: v for k, v in state.items() if k.startswith(pre)}


def head_state(net: SuperNet, arch: Arch, state: dict) -> dict:
    return {k[len("head."):]: v for k, v in state.items() if k.startswith("head.")}


def in_width(arch: Arch, i: int) -> int:
    return arch.stem.out_chs if i == 0 else arch.stages[i - 1][-1].out_chs


def teacher_arch(space) -> Arch:
    """Every stage as wide as its bank (1.25x filters, ir6), 3x3, SE, skeleton depth; stem as
    wide as the supernet's stem bank (widened reference nets read its channels)."""
    values = {}
    for b in range(space.num_blocks):
        for d in space.block_decisions(b):
            field = d.name.split("_", 1)[1]
            values[d.name] = {"op": "ir6", "kernel": 3, "se": 0.25, "act": "hswish", "skip": True,
                              "filters": 1.25, "layers": 0}[field]
    for d in space.head_decisions():
        values[d.name] = d.choices[0]
    arch = space.decode(values)
    return dataclasses.replace(arch, stem=dataclasses.replace(arch.stem, out_chs=_widen(arch.stem.out_chs)))


def train_teacher(space, data, steps: int, lr: float) -> nn.Module:
    torch.manual_seed(0)
    net = Net(teacher_arch(space), num_classes=data.num_classes).train()
    opt = torch.optim.SGD(net.parameters(), lr=lr, momentum=0.9, nesterov=True, weight_decay=4e-5)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, lr, total_steps=steps, pct_start=0.1)
    g = torch.Generator().manual_seed(0)
    for s in range(steps):
        idx = torch.randint(0, len(data.train_y), (128,), generator=g)
        loss = F.cross_entropy(net(data.train_x[idx]), data.train_y[idx], label_smoothing=0.1)
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
        if s % 100 == 0 or s == steps - 1:
            print(f"teacher step {s}: loss {loss.item():.3f}", flush=True)
    return net.eval()


@torch.no_grad()
def features(teacher, x: torch.Tensor) -> list[torch.Tensor]:
    """Stem output, then every stage's output, for all of ``x`` (batches of 500)."""
    outs: list[list[torch.Tensor]] = []
    for b in range(0, len(x), 500):
        h = teacher.stem(x[b:b + 500])
        row = [h]
        for st in teacher.blocks:
            h = st(h)
            row.append(h)
        outs.append(row)
    return [torch.cat(c) for c in zip(*outs, strict=True)]


class Blockwise(nn.Module):
    def __init__(self, space, num_classes: int, feats: list[torch.Tensor]) -> None:
        super().__init__()
        torch.manual_seed(1)
        self.sn = SuperNet(space, num_classes)
        self.adapters = nn.ModuleList(
            nn.Conv2d(st.max_out, f.shape[1], 1) for st, f in zip(self.sn.slot_stages, feats[1:], strict=True))
        self.var = [float(f.var()) for f in feats]

    def stage_out(self, arch, i, x, state):
        tmpl = self.sn._template(arch)
        return functional_call(tmpl.blocks[i], stage_state(self.sn, arch, i, state), (x,))

    def adapt(self, s: int, y: torch.Tensor) -> torch.Tensor:
        a = self.adapters[s]
        return F.conv2d(y, a.weight[:, :y.shape[1]], a.bias)

    def losses(self, archs, feats, idx, with_head=True):
        """Per slot stage the loss of its own architecture's stage; the head's CE."""
        out = []
        for s, arch in enumerate(archs):
            stages = self.sn.stage_map(arch)
            i = stages.index(s) if s in stages else None
            if i is None:
                out.append(None)
                continue
            state = self.sn.path_state(arch)
            x = feats[s][idx][:, :in_width(arch, i)]
            y = self.adapt(s, self.stage_out(arch, i, x, state))
            out.append(F.mse_loss(y, feats[s + 1][idx]) / self.var[s + 1])
        return out

    def head_loss(self, arch, feats, idx, y):
        state = self.sn.path_state(arch)
        tmpl = self.sn._template(arch)
        x = feats[-1][idx][:, :arch.stages[-1][-1].out_chs]
        logits = functional_call(tmpl.head, head_state(self.sn, arch, state), (x,))
        return F.cross_entropy(logits, y, label_smoothing=0.1), logits


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--teacher-steps", type=int, default=600)
    ap.add_argument("--steps", type=int, default=600)
    ap.add_argument("--lr", type=float, default=0.05)
    ap.add_argument("--teacher-lr", type=float, default=0.1)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", default=str(ROOT / "bench" / "results" / "supernet_blockwise.json"))
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    space = get_space("mobilenetv3")
    data = load_dataset("fashion-mnist", 32, val_size=5000, train_subset=10000, seed=0)
    t0 = time.perf_counter()
    cache = Path(f"/tmp/bw_teacher_{args.teacher_steps}_{args.teacher_lr}.pt")
    if cache.exists():
        teacher = Net(teacher_arch(space), num_classes=data.num_classes)
        teacher.load_state_dict(torch.load(cache, weights_only=True))
        teacher.eval()
    else:
        teacher = train_teacher(space, data, args.teacher_steps, args.teacher_lr)
        atomic_save_state_dict(teacher.state_dict(), cache)
    with torch.no_grad():
        acc = float((teacher(data.val_x[:1000]).argmax(1) == data.val_y[:1000]).float().mean())
    t_teacher = time.perf_counter() - t0
    print(f"teacher: val accuracy {acc:.3f}, {t_teacher:.0f} s", flush=True)
    ftr = features(teacher, data.train_x)
    fva = features(teacher, data.val_x[:1000])
    model = Blockwise(space, data.num_classes, ftr).train()
    opt = torch.optim.SGD(model.parameters(), lr=args.lr, momentum=0.9, nesterov=True, weight_decay=4e-5)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, args.lr, total_steps=args.steps, pct_start=0.1)
    rng = np.random.default_rng(0)
    g = torch.Generator().manual_seed(1)
    t1 = time.perf_counter()
    n_slots = len(model.sn.slot_stages)
    saved = Path(f"/tmp/bw_model_{args.teacher_steps}_{args.steps}_{args.lr}.pt")
    if saved.exists():
        model.load_state_dict(torch.load(saved, weights_only=True))
    for step in range(0 if saved.exists() else args.steps):
        idx = torch.randint(0, len(data.train_y), (128,), generator=g)
        archs = [space.sample_random(rng) for _ in range(n_slots)]
        ls = [v for v in model.losses(archs, ftr, idx) if v is not None]
        hl, _ = model.head_loss(space.sample_random(rng), ftr, idx, data.train_y[idx])
        loss = sum(ls) + hl
        opt.zero_grad(set_to_none=True)
        loss.backward()
        nn.utils.clip_grad_norm_(model.parameters(), 5.0)
        opt.step()
        sched.step()
        if step % 50 == 0 or step == args.steps - 1:
            print(f"step {step}: stage losses {[round(float(v), 3) for v in ls]} head {float(hl):.3f}",
                  flush=True)
    t_train = time.perf_counter() - t1
    atomic_save_state_dict(model.state_dict(), saved)
    truth = truth_rows()
    names = sorted(truth)
    rows = {}
    idx = torch.arange(len(fva[0]))
    t2 = time.perf_counter()
    with torch.no_grad():
        for n in names:
            arch = Arch.from_str(truth[n]["arch"])
            stages = model.sn.stage_map(arch)
            per = [float(v) for v in model.losses([arch] * n_slots, fva, idx) if v is not None]
            hl, logits = model.head_loss(arch, fva, idx, data.val_y[:1000])
            head_acc = float((logits.argmax(1) == data.val_y[:1000]).float().mean())
            # the chained path: teacher stem, the candidate's stages one after another, its head
            state = model.sn.path_state(arch)
            tmpl = model.sn._template(arch)
            h = fva[0][:, :arch.stem.out_chs]
            for i in range(len(arch.stages)):
                h = model.stage_out(arch, i, h, state)
            logits = functional_call(tmpl.head, head_state(model.sn, arch, state), (h,))
            chain = float((logits.argmax(1) == data.val_y[:1000]).float().mean())
            # the same, each stage's output mapped into the teacher's features by its adapter
            h = fva[0][:, :arch.stem.out_chs]
            for i, s in enumerate(stages):
                y = model.adapt(s, model.stage_out(arch, i, h, state))
                h = y[:, :arch.stages[i][-1].out_chs]
            logits = functional_call(tmpl.head, head_state(model.sn, arch, state), (h,))
            chain_ad = float((logits.argmax(1) == data.val_y[:1000]).float().mean())
            rows[n] = {"stage_losses": per, "dna": -float(np.mean(per)), "dna_sum": -float(np.sum(per)),
                       "head_ce": float(hl), "head_acc": head_acc, "chain": chain, "chain_adapted": chain_ad,
                       "truth": truth[n]["test_mean"]}
    t_score = (time.perf_counter() - t2) / len(names)
    tru = [rows[n]["truth"] for n in names]
    rand = [k for k, n in enumerate(names) if n.startswith("random")]
    result = {"teacher_val_acc": acc, "teacher_s": t_teacher, "train_s": t_train, "score_s": t_score,
              "args": vars(args), "rows": rows, "tau": {}}
    for key in ("dna", "dna_sum", "chain", "chain_adapted", "head_acc"):
        est = [rows[n][key] for n in names]
        t_all = kendalltau(est, tru).statistic
        t_rand = kendalltau([est[k] for k in rand], [tru[k] for k in rand]).statistic
        result["tau"][key] = {"all": t_all, "random": t_rand, "spearman": spearmanr(est, tru).statistic}
        print(f"{key}: Kendall tau {t_all:.3f} (random only {t_rand:.3f}), Spearman "
              f"{spearmanr(est, tru).statistic:.3f}", flush=True)
    print(f"teacher {t_teacher:.0f} s, blockwise {t_train:.0f} s, {t_score:.2f} s/candidate", flush=True)
    atomic_write_text(Path(args.out), json.dumps(result, indent=1))


if __name__ == "__main__":
    main()

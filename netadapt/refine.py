"""NetAdapt: shrink a trained network step by step until it meets a latency goal.

Algorithm (Yang et al., ECCV 2018, Algorithm 1; MobileNetV3 variant from
Howard et al., ICCV 2019, Section 4.2)::

    net, L = input, predicted latency of input
    for i = 1, 2, ... while L > goal:
        dR_i = dR_1 * decay^(i-1);  C = max(L - dR_i, goal)
        for every prunable unit u:                        # prunable.py
            n_u = the largest count whose predicted latency <= C
            p_u = net with u cut to n_u channels, keeping the filters of
                  largest L2 norm and their weights        # surgery.py
            fine-tune p_u for the short-term steps; accuracy on the held-out split
        net = the best p_u: by accuracy (NetAdapt), or by
              dAcc / |dLat| (MobileNetV3's ``per_latency``)
    fine-tune net for the long-term epochs

Latency is the target's prediction (sum of table entries; measured targets
fill missing entries on demand). When no unit can reach ``C`` in one step,
each unit proposes its largest reduction instead (the goal was checked to be
reachable when every unit is at its minimum).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from pathlib import Path

from torch import nn

from hwnas.latency.target import Target
from hwnas.proxy.data import Dataset
from hwnas.space.build import build
from hwnas.space.spec import Arch

from .config import RefineConfig
from .prunable import Unit, candidates, count, smallest, units, with_count
from .surgery import prune

# Latencies are sums of floats; a proposal "meets" a bound within this (ms).
EPS_MS = 1e-9


class Progress:
    """Callbacks a refine reports to (the CLI draws rich bars); all no-ops here."""

    def start(self, latency_ms: float, goal_ms: float, iteration: int) -> None: ...
    def message(self, text: str) -> None: ...
    def iteration_start(self, iteration: int, proposals: int, constraint_ms: float) -> None: ...
    def proposal_done(self, unit: str, latency_ms: float, accuracy: float) -> None: ...
    def iteration_done(self, iteration: int, unit: str, latency_ms: float, accuracy: float) -> None: ...


@dataclass
class Proposal:
    """One unit cut to a smaller count (before short-term fine-tuning)."""

    unit: Unit
    before: int
    after: int
    arch: Arch
    latency_ms: float


@dataclass
class Step:
    """Outcome of one iteration: the selected proposal and every row of the history."""

    arch: Arch
    model: nn.Module
    latency_ms: float
    accuracy: float
    unit: str
    rows: list[dict] = field(default_factory=list)


def predict(target: Target, arch: Arch, resolution: int) -> float:
    """Predicted latency (ms) at the deployment resolution (ImageNet head, as the tables)."""
    return float(target.predict(arch, resolution=resolution))


def smallest_reachable(target: Target, arch: Arch, cfg: RefineConfig) -> tuple[Arch, float]:
    """The network with every unit at its minimum, and its predicted latency."""
    low = smallest(arch, cfg.mode, cfg.channel_step)
    return low, predict(target, low, cfg.resolution)


def goal_ms(cfg: RefineConfig, input_ms: float) -> float:
    value, unit = cfg.goal_amount
    return value * input_ms if unit == "x" else value


def dr_ms(cfg: RefineConfig, input_ms: float, iteration: int) -> float:
    """Latency reduction asked of ``iteration`` (from 1)."""
    value, unit = cfg.dr_amount
    first = value * input_ms if unit == "x" else value
    return first * cfg.dr.decay ** (iteration - 1)


def propose(target: Target, arch: Arch, unit: Unit, bound_ms: float, cfg: RefineConfig
            ) -> Proposal | None:
    """The largest count of ``unit`` whose predicted latency is at most ``bound_ms``.

    Latency falls as a count falls, so the count is found by bisection over
    the candidates (a handful of predictions per unit, which matters when a
    measured target fills missing table entries on demand); the answer is
    checked against the bound. None when even the smallest count misses it.
    """
    before = count(arch, unit)
    cands = candidates(before, cfg.channel_step)  # largest first
    if not cands:
        return None
    seen: dict[int, float] = {}

    def lat(i: int) -> float:
        if i not in seen:
            seen[i] = predict(target, with_count(arch, unit, cands[i]), cfg.resolution)
        return seen[i]

    hi = len(cands) - 1  # invariant: lat(hi) meets the bound
    if lat(hi) > bound_ms + EPS_MS:
        return None
    lo = -1  # lat(lo) misses it (index -1: the current count)
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if lat(mid) <= bound_ms + EPS_MS:
            hi = mid
        else:
            lo = mid
    return Proposal(unit, before, cands[hi], with_count(arch, unit, cands[hi]), lat(hi))


def proposals(target: Target, arch: Arch, latency_ms: float, bound_ms: float, cfg: RefineConfig
              ) -> list[Proposal]:
    """One proposal per unit meeting ``bound_ms``; if none can, each unit's largest cut."""
    us = units(arch, cfg.mode)
    found = [p for u in us if (p := propose(target, arch, u, bound_ms, cfg)) is not None]
    if found:
        return found
    out = []
    for u in us:
        cands = candidates(count(arch, u), cfg.channel_step)
        if cands:
            a = with_count(arch, u, cands[-1])
            lat = predict(target, a, cfg.resolution)
            if lat < latency_ms - EPS_MS:
                out.append(Proposal(u, count(arch, u), cands[-1], a, lat))
    return out


def fine_tune(model: nn.Module, data: Dataset, steps: int | None, epochs: int, lr: float,
              cfg: RefineConfig, seed: int) -> float:
    """Fine-tune ``model`` in place (hwnas.proxy.train); held-out accuracy after it."""
    from hwnas.proxy.train import TrainConfig, train

    if steps is not None:  # enough epochs to hold ``steps`` optimizer steps
        per_epoch = max(1, len(data.train_y) // min(cfg.batch_size, len(data.train_y)))
        epochs = max(1, math.ceil(steps / per_epoch))
    tc = TrainConfig(epochs=epochs, batch_size=cfg.batch_size, lr=lr, max_steps=steps,
                     resolution=data.resolution, seed=seed)
    return float(train(model, data, tc).val_accuracy)


def selection_score(selection: str, acc: float, acc_before: float, drop_ms: float) -> float:
    """Higher is better: the accuracy (NetAdapt) or, for ``per_latency``, the
    accuracy change per latency change dAcc / |dLat| (MobileNetV3, Sec. 4.2)."""
    if selection == "accuracy":
        return acc
    return (acc - acc_before) / max(abs(drop_ms), EPS_MS)


def iterate(target: Target, arch: Arch, model: nn.Module, latency_ms: float, accuracy: float,
            iteration: int, goal: float, input_ms: float, data: Dataset, cfg: RefineConfig,
            progress: Progress) -> Step | None:
    """One NetAdapt iteration from ``arch``/``model``; None when nothing can be pruned."""
    dr = dr_ms(cfg, input_ms, iteration)
    bound = max(latency_ms - dr, goal)
    props = proposals(target, arch, latency_ms, bound, cfg)
    if not props:
        return None
    progress.iteration_start(iteration, len(props), bound)
    best: Step | None = None
    best_score = -math.inf
    rows = []
    for k, p in enumerate(props):
        t0 = time.perf_counter()
        cand = prune(model, arch, p.arch, data.num_classes)
        acc = fine_tune(cand, data, cfg.short_term.steps, 1, cfg.short_term.lr, cfg,
                        seed=cfg.seed * 1_000_003 + iteration * 1009 + k)
        drop = latency_ms - p.latency_ms
        score = selection_score(cfg.selection, acc, accuracy, drop)
        rows.append({
            "iteration": iteration, "unit": p.unit.name, "filters_before": p.before,
            "filters_after": p.after, "latency_ms": p.latency_ms, "latency_drop_ms": drop,
            "accuracy": acc, "accuracy_change": acc - accuracy, "score": score, "selected": False,
            "dr_ms": dr, "constraint_ms": bound, "seconds": time.perf_counter() - t0,
        })
        if score > best_score:
            best_score = score
            best = Step(p.arch, cand.cpu().eval(), p.latency_ms, acc, p.unit.name)
        progress.proposal_done(p.unit.name, p.latency_ms, acc)
    assert best is not None
    for r in rows:
        r["selected"] = r["unit"] == best.unit
    best.rows = rows
    return best


def prepare_model(arch: Arch, weights: Path | None, num_classes: int) -> nn.Module | None:
    """The input network with its weights, or None when it has none yet."""
    from .inputs import load_weights

    if weights is None:
        return None
    model = build(arch, num_classes=num_classes)
    load_weights(weights, model)
    return model.eval()


"""Train a supernet: the recipe, one epoch at a time, resumable from a per-epoch checkpoint.

Recipes (``SupernetConfig.recipe``):

- ``spos``: uniform single-path sampling. Every step trains one architecture
  drawn uniformly from the space (every decision uniform and independent), as
  in Single Path One-Shot (Guo et al., ECCV 2020, Sec. 3.2: "uniform path
  sampling") and TuNAS's warm-up (Bender et al., CVPR 2020, Sec. 3, which
  trains the shared weights on uniformly sampled paths before the controller
  learns). Cost: one forward/backward per step.
- ``sandwich``: the sandwich rule with in-place distillation (Yu & Huang,
  ICCV 2019, "Universally Slimmable Networks", Sec. 3.2-3.3; BigNAS, Yu et al.,
  ECCV 2020, Sec. 3.1): every step trains the largest path on the labels, then
  the smallest path and ``SANDWICH_RANDOM`` random ones on the largest path's
  soft predictions; the gradients are summed. Cost: four forward/backwards per step.

Both use the proxy's optimiser (SGD, Nesterov, cosine with linear warm-up, gradient-norm clipping,
label smoothing, weight decay on weights only; ``hwnas.proxy.train``'s
defaults). Randomness is derived from ``(seed, epoch)``, so an epoch resumed
from the checkpoint repeats exactly what an uninterrupted run would do.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from hwnas.common.errors import HwnasError
from hwnas.proxy.data import Dataset
from hwnas.proxy.train import (
    DEFAULT_BATCH_SIZE,
    DEFAULT_LABEL_SMOOTHING,
    DEFAULT_LR,
    DEFAULT_MOMENTUM,
    DEFAULT_WARMUP,
    DEFAULT_WEIGHT_DECAY,
    autocast_dtype,
    check_recipe,
    resolve_device,
    warmup_cosine,
)
from hwnas.space.searchspace import SPACE_NAMES, get_space

from .model import SuperNet, largest

RECIPES = ("spos", "sandwich")
# Random paths per step besides the largest and the smallest (BigNAS Sec. 3.1 and
# US-Nets Sec. 3.2 both use n = 2).
SANDWICH_RANDOM = 2
# Default epochs: a supernet trains each path on a fraction of the steps, so it needs
# several times the 2 epochs of a standalone proxy trial (measured in bench/supernet_fidelity.py).
DEFAULT_EPOCHS = 20
DEFAULT_TRAIN_SUBSET = 10000  # the search's default proxy subset (hwnas.search.config)
DEFAULT_VAL_SIZE = 5000  # the search's default held-out split
# Gradient-norm clipping. Measured here (mobilenetv3 space, 32 px, lr 0.05): without it
# uniformly sampled paths drove the training loss up, 2.40 -> 2.74 -> 2.68 over the first
# three epochs (a fixed path fell 2.29 -> 1.24 in 20 steps), because paths with conv ops
# and no skips pull the shared stem and head hard; clipped at 1.0 the loss fell steadily.
DEFAULT_CLIP_GRAD = 1.0


@dataclass(frozen=True)
class SupernetConfig:
    """Everything that determines a supernet's weights (and so its id)."""

    space: str = "mobilenetv3"
    data: str = "fashion-mnist"
    proxy_resolution: int = 32
    recipe: str = "spos"
    seed: int = 0
    epochs: int = DEFAULT_EPOCHS
    train_subset: int | None = DEFAULT_TRAIN_SUBSET
    val_size: int = DEFAULT_VAL_SIZE
    batch_size: int = DEFAULT_BATCH_SIZE
    lr: float = DEFAULT_LR
    momentum: float = DEFAULT_MOMENTUM
    weight_decay: float = DEFAULT_WEIGHT_DECAY
    label_smoothing: float = DEFAULT_LABEL_SMOOTHING
    warmup: float = DEFAULT_WARMUP
    clip_grad: float = DEFAULT_CLIP_GRAD  # max gradient norm; 0 turns clipping off

    def __post_init__(self) -> None:
        def need(ok: bool, name: str, accepted: str) -> None:
            if not ok:
                raise HwnasError(f"supernet {name} must be {accepted}, got {getattr(self, name)!r}")

        need(self.space in SPACE_NAMES, "space", f"one of {', '.join(SPACE_NAMES)}")
        need(isinstance(self.data, str) and bool(self.data), "data", "a data spec (fashion-mnist or a folder)")
        need(isinstance(self.proxy_resolution, int) and self.proxy_resolution >= 8,
             "proxy_resolution", "an int >= 8")
        need(self.recipe in RECIPES, "recipe", f"one of {', '.join(RECIPES)}")
        need(isinstance(self.seed, int) and self.seed >= 0, "seed", "an int >= 0")
        need(isinstance(self.epochs, int) and self.epochs >= 1, "epochs", "an int >= 1")
        need(self.train_subset is None or (isinstance(self.train_subset, int) and self.train_subset >= 2),
             "train_subset", "None or an int >= 2")
        need(isinstance(self.val_size, int) and self.val_size >= 1, "val_size", "an int >= 1")
        need(isinstance(self.batch_size, int) and self.batch_size >= 2, "batch_size", "an int >= 2")
        check_recipe(self, need)
        need(self.clip_grad >= 0, "clip_grad", ">= 0")

    def as_dict(self) -> dict:
        return asdict(self)


def new_supernet(config: SupernetConfig, num_classes: int) -> SuperNet:
    """The supernet of ``config.space`` with seeded initial weights."""
    torch.manual_seed(config.seed)
    return SuperNet(get_space(config.space), num_classes=num_classes)



class Trainer:
    """Optimiser, schedule and the step of one recipe; state round-trips through a dict."""

    def __init__(self, net: SuperNet, data: Dataset, config: SupernetConfig,
                 device: str | None = None) -> None:
        self.net, self.data, self.config = net, data, config
        self.device = resolve_device(device)
        self.space = get_space(config.space)
        n = len(data.train_y)
        self.batch = min(config.batch_size, n)
        self.steps_per_epoch = n // self.batch
        self.total = self.steps_per_epoch * config.epochs
        net.to(self.device).train()
        decay = [p for p in net.parameters() if p.ndim > 1]
        other = [p for p in net.parameters() if p.ndim <= 1]
        self.opt = torch.optim.SGD([{"params": decay, "weight_decay": config.weight_decay},
                                    {"params": other, "weight_decay": 0.0}],
                                   lr=config.lr, momentum=config.momentum, nesterov=config.momentum > 0)
        self.sched = warmup_cosine(self.opt, config.warmup, self.total)
        self.amp = autocast_dtype(self.device)
        self.scaler = torch.amp.GradScaler(self.device.type, enabled=self.amp == torch.float16)
        self.epoch = 0  # epochs completed
        self.history: list[dict] = []
        self._x = data.train_x.to(self.device)
        self._y = data.train_y.to(self.device)

    # --- checkpoint state ---------------------------------------------------
    def state_dict(self) -> dict:
        return {"net": self.net.state_dict(), "opt": self.opt.state_dict(),
                "sched": self.sched.state_dict(), "scaler": self.scaler.state_dict(),
                "epoch": self.epoch, "history": self.history, "config": self.config.as_dict()}

    def load_state_dict(self, state: dict) -> None:
        if state.get("config") != self.config.as_dict():
            raise HwnasError("the checkpoint was written for other settings: "
                             f"{state.get('config')!r}; delete its folder to retrain")
        self.net.load_state_dict(state["net"])
        self.opt.load_state_dict(state["opt"])
        self.sched.load_state_dict(state["sched"])
        self.scaler.load_state_dict(state["scaler"])
        self.epoch = int(state["epoch"])
        self.history = list(state["history"])

    # --- one epoch ------------------------------------------------------------
    def _loss(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(logits, target, label_smoothing=self.config.label_smoothing)

    def _step(self, xb: torch.Tensor, yb: torch.Tensor, rng: np.random.Generator) -> float:
        dev = self.device.type
        self.opt.zero_grad(set_to_none=True)
        if self.config.recipe == "spos":
            arch = self.space.sample_random(rng)
            with torch.autocast(dev, dtype=self.amp, enabled=self.amp is not None):
                loss = self._loss(self.net(xb, arch), yb)
            self.scaler.scale(loss).backward()
        else:  # sandwich rule with in-place distillation
            heads = [d.choices for d in self.space.head_decisions()]
            head = heads[0][int(rng.integers(len(heads[0])))] if heads else None
            with torch.autocast(dev, dtype=self.amp, enabled=self.amp is not None):
                teacher = self.net(xb, largest(self.space, head))
                loss = self._loss(teacher, yb)
            self.scaler.scale(loss).backward()
            soft = teacher.detach().float().softmax(1)
            paths = [self.space.smallest()] + [self.space.sample_random(rng)
                                               for _ in range(SANDWICH_RANDOM)]
            for arch in paths:
                with torch.autocast(dev, dtype=self.amp, enabled=self.amp is not None):
                    student = self.net(xb, arch)
                    kd = F.cross_entropy(student.float(), soft)
                self.scaler.scale(kd).backward()
        if self.config.clip_grad > 0:
            self.scaler.unscale_(self.opt)
            nn.utils.clip_grad_norm_(self.net.parameters(), self.config.clip_grad)
        self.scaler.step(self.opt)
        self.scaler.update()
        self.sched.step()
        return float(loss.detach())

    def run_epoch(self, tick: Callable[[], None] | None = None) -> dict:
        """Train epoch ``self.epoch`` (randomness from ``(seed, epoch)``) and count it done."""
        t0 = time.perf_counter()
        e, seed = self.epoch, self.config.seed
        gen = torch.Generator().manual_seed(seed * 100_003 + e)
        rng = np.random.default_rng([seed, e])
        perm = torch.randperm(len(self._y), generator=gen).to(self.device)
        total = 0.0
        for b in range(self.steps_per_epoch):
            idx = perm[b * self.batch:(b + 1) * self.batch]
            xb = self._x[idx].contiguous(memory_format=torch.channels_last)
            loss = self._step(xb, self._y[idx], rng)
            if not math.isfinite(loss):
                raise HwnasError(f"supernet training loss became {loss} in epoch {e}; the learning "
                                 f"rate {self.config.lr:g} may be too high")
            total += loss
            if tick is not None:
                tick()
        self.epoch += 1
        record = {"epoch": e, "train_loss": total / max(self.steps_per_epoch, 1),
                  "seconds": time.perf_counter() - t0}
        self.history.append(record)
        return record


def sampled_arch_count(config: SupernetConfig) -> int:
    """Paths trained per step by ``config.recipe``."""
    return 1 if config.recipe == "spos" else 2 + SANDWICH_RANDOM


def module_bytes(net: nn.Module) -> int:
    return sum(t.numel() * t.element_size() for t in net.state_dict().values())

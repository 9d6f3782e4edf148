"""Train a candidate on the proxy task (or fine-tune a given module).

The recipe is the timm/MnasNet one cut down to a proxy budget: SGD with
Nesterov momentum, a per-step cosine (default) or one-cycle learning rate,
label smoothing, weight decay on the weights only (not on biases or BN
parameters, as timm does by default), batch 128. On CUDA the forward pass
runs under autocast (bf16 where supported, else fp16 with a GradScaler).

One seed controls everything: ``torch.manual_seed(seed)`` before the model is
built and a seeded ``torch.Generator`` for the data order, so on the CPU the
same seed gives the same validation accuracy. (cuDNN kernels are not all
deterministic, so GPU runs can differ in the last digits.)

>>> result = train(reference("mobilenetv3_large"), data, TrainConfig(epochs=1))  # doctest: +SKIP
>>> result.val_accuracy  # doctest: +SKIP
0.8348
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from hwnas.common.errors import HwnasError
from hwnas.space.spec import Arch

from .data import Dataset
from .stream import ImageView, StreamingDataset

SCHEDULES = ("cosine", "onecycle")

# SGD learning rate at batch 128: timm's rule lr = lr_base * batch / 256 with lr_base 0.1
# for SGD (timm train.py --lr-base/--lr-base-size; the linear scaling rule of Goyal et al.
# 2017). Checked here on the proxy task (MobileNetV3-Large, 32 px, 20,000 images, 1 epoch,
# seed 0; validation accuracy): lr 0.05 -> 0.835, 0.1 -> 0.834, 0.2 -> 0.817.
DEFAULT_LR = 0.05
# Nesterov momentum 0.9 (timm's SGD default; Sutskever et al. 2013).
DEFAULT_MOMENTUM = 0.9
# L2 weight decay 4e-5: MobileNetV2 (Sandler et al. 2018, Sec. 6.1); MnasNet uses 1e-5,
# timm's default is 2e-5. Over a one-epoch proxy run the choice barely matters.
DEFAULT_WEIGHT_DECAY = 4e-5
# Label smoothing 0.1: Szegedy et al. 2016 (Inception-v3); timm's default --smoothing.
DEFAULT_LABEL_SMOOTHING = 0.1
DEFAULT_BATCH_SIZE = 128
# Linear warm-up over the first 5% of the steps of the cosine schedule (gradual warm-up,
# Goyal et al. 2017; timm warms up too). Without it MobileNetV3-Large diverged at lr 0.4
# within 40 steps here.
DEFAULT_WARMUP = 0.05
# One-cycle warm-up fraction: PyTorch's OneCycleLR default pct_start (Smith & Topin 2019).
ONECYCLE_PCT_START = 0.3
# BatchNorm statistics are re-estimated on this many training images (with the final
# weights, cumulative average) before each validation, as "precise BN" does (Wu & Johnson
# 2021, "Rethinking 'Batch' in BatchNorm"; pycls uses 8192 images). After a short proxy run
# the running averages still lag far behind the weights: here a tiny net at 100% accuracy
# with batch statistics scored 19% with its running averages after 16 steps.
DEFAULT_BN_RECALIBRATION = 2048
# Check the running loss for NaN/inf every this many steps (a host sync on GPU).
_CHECK_EVERY = 10


class NonFiniteLoss(RuntimeError):
    """The training loss became NaN or infinite (diverged); the trial counts as failed."""


@dataclass(frozen=True)
class TrainConfig:
    """Proxy-training recipe; the defaults are the search defaults (see module constants)."""

    epochs: int = 1
    batch_size: int = DEFAULT_BATCH_SIZE
    lr: float = DEFAULT_LR
    momentum: float = DEFAULT_MOMENTUM
    nesterov: bool = True
    weight_decay: float = DEFAULT_WEIGHT_DECAY
    label_smoothing: float = DEFAULT_LABEL_SMOOTHING
    schedule: str = "cosine"
    warmup: float = DEFAULT_WARMUP  # fraction of the steps with linear warm-up (cosine only)
    bn_recalibration: int = DEFAULT_BN_RECALIBRATION  # images; 0 keeps the running averages
    resolution: int = 32
    seed: int = 0
    max_steps: int | None = None  # cap on optimizer steps (NetAdapt short-term fine-tune)
    device: str | None = None  # None: cuda if available else cpu; AMP on cuda

    def __post_init__(self) -> None:
        def need(ok: bool, name: str, accepted: str) -> None:
            if not ok:
                raise HwnasError(f"{name} must be {accepted}, got {getattr(self, name)!r}")

        need(isinstance(self.epochs, int) and self.epochs >= 1, "epochs", "an int >= 1")
        need(isinstance(self.batch_size, int) and self.batch_size >= 1, "batch_size", "an int >= 1")
        check_recipe(self, need)
        need(isinstance(self.bn_recalibration, int) and self.bn_recalibration >= 0,
             "bn_recalibration", "an int >= 0")
        need(self.schedule in SCHEDULES, "schedule", f"one of {', '.join(SCHEDULES)}")
        need(self.max_steps is None or (isinstance(self.max_steps, int) and self.max_steps >= 1),
             "max_steps", "None or an int >= 1")


def check_recipe(config: object, need: Callable[[bool, str, str], None]) -> None:
    """The optimiser fields every training config shares (lr, momentum, decay, smoothing, warm-up)."""
    c: Any = config
    need(c.lr > 0, "lr", "> 0")
    need(0 <= c.momentum < 1, "momentum", "in [0, 1)")
    need(c.weight_decay >= 0, "weight_decay", ">= 0")
    need(0 <= c.label_smoothing < 1, "label_smoothing", "in [0, 1)")
    need(0 <= c.warmup < 1, "warmup", "in [0, 1)")


@dataclass
class TrainResult:
    """What :func:`train` returns."""

    model: nn.Module  # on CPU, eval mode
    val_accuracy: float  # final, in [0, 1]
    val_history: list[float] = field(default_factory=list)  # per epoch
    train_loss: list[float] = field(default_factory=list)  # mean per epoch
    seconds: float = 0.0
    steps: int = 0


DEVICES = ("auto", "cpu", "cuda")  # what --device accepts (also "cuda:N")


def resolve_device(device: str | torch.device | None) -> torch.device:
    """``device`` as a torch device; ``None`` or ``"auto"`` picks CUDA when present, else the CPU.

    Raises:
        HwnasError: not a device name, or CUDA asked for on a machine without it.
    """
    if device is None or device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError):
        raise HwnasError(f"device must be one of {', '.join(DEVICES)} or like 'cuda:1', "
                         f"got {device!r}") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise HwnasError(f"device {device!r} asked for, but torch sees no CUDA GPU here; "
                         f"use 'cpu' or 'auto'")
    if dev.type == "cuda" and dev.index is not None and dev.index >= torch.cuda.device_count():
        raise HwnasError(f"device {device!r}: this machine has {torch.cuda.device_count()} "
                         f"GPU(s), numbered from 0")
    return dev


def autocast_dtype(device: torch.device) -> torch.dtype | None:
    """The AMP dtype on CUDA (bf16 where supported, else fp16); None on CPU (fp32)."""
    if device.type != "cuda":
        return None
    return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16


def _to_device(x: torch.Tensor, device: torch.device) -> torch.Tensor:
    """Move images; a grey set stored as one expanded channel stays one channel in memory."""
    if x.dim() == 4 and x.shape[1] > 1 and x.stride(1) == 0:
        return x[:, :1].to(device).expand(-1, x.shape[1], -1, -1)
    return x.to(device)


def _param_groups(model: nn.Module, weight_decay: float) -> list[dict]:
    """Decay weights of convs and linears only (timm's filter_bias_and_bn default)."""
    decay, no_decay = [], []
    for p in model.parameters():
        if p.requires_grad:
            (no_decay if p.ndim <= 1 else decay).append(p)
    return [{"params": decay, "weight_decay": weight_decay},
            {"params": no_decay, "weight_decay": 0.0}]


def _scheduler(opt: torch.optim.Optimizer, config: TrainConfig, total: int
               ) -> torch.optim.lr_scheduler.LRScheduler:
    if config.schedule == "onecycle":
        return torch.optim.lr_scheduler.OneCycleLR(
            opt, max_lr=config.lr, total_steps=total, pct_start=ONECYCLE_PCT_START,
            cycle_momentum=False)
    return warmup_cosine(opt, config.warmup, total)


def warmup_cosine(opt: torch.optim.Optimizer, warmup: float, total: int
                  ) -> torch.optim.lr_scheduler.LambdaLR:
    """Linear warm-up over ``warmup`` of ``total`` steps, then per-step cosine decay to 0
    (Loshchilov & Hutter 2017, no restarts)."""
    warm = math.ceil(warmup * total)

    def factor(step: int) -> float:
        if step < warm:
            return (step + 1) / (warm + 1)
        t = min(step - warm, total - warm) / max(total - warm, 1)
        return 0.5 * (1.0 + math.cos(math.pi * t))

    return torch.optim.lr_scheduler.LambdaLR(opt, factor)


def _model_device(model: nn.Module) -> torch.device:
    p = next(model.parameters(), None)
    return p.device if p is not None else torch.device("cpu")


@torch.no_grad()
def evaluate(model: nn.Module, x: torch.Tensor | ImageView, y: torch.Tensor,
             batch_size: int = 512) -> float:
    """Top-1 accuracy of ``model`` (in eval mode, on its own device) on ``x``, ``y``.

    ``x`` may be an :class:`~hwnas.proxy.stream.ImageView` (streamed; its
    unreadable images are left out of the count).
    """
    if len(y) == 0:
        raise HwnasError("evaluate needs at least one example, got 0")
    device = _model_device(model)
    amp = autocast_dtype(device)
    was_training = model.training
    model.eval()
    correct = 0
    if isinstance(x, ImageView):
        seen = 0
        for xb, _, pos in x.batches(batch_size, device):
            with torch.autocast(device.type, dtype=amp, enabled=amp is not None):
                logits = model(xb)
            correct += int((logits.argmax(1).cpu() == y[pos]).sum())
            seen += len(pos)
        model.train(was_training)
        if seen == 0:
            raise HwnasError(f"{x.root}: none of the {len(y)} evaluation images could be read")
        return correct / seen
    for i in range(0, len(y), batch_size):
        xb = x[i:i + batch_size].to(device).contiguous(memory_format=torch.channels_last)
        with torch.autocast(device.type, dtype=amp, enabled=amp is not None):
            logits = model(xb)
        correct += int((logits.argmax(1).cpu() == y[i:i + batch_size]).sum())
    model.train(was_training)
    return correct / len(y)


@torch.no_grad()
def recalibrate_bn(model: nn.Module, x: torch.Tensor | ImageView, idx: torch.Tensor,
                   batch_size: int) -> None:
    """Replace BatchNorm running statistics by their average over ``x[idx]`` (current weights).

    ``x`` may be an :class:`~hwnas.proxy.stream.ImageView` (streamed with the
    evaluation transform, on the model's device).
    """
    bns = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    if not bns or len(idx) < 2:
        return
    momenta = [m.momentum for m in bns]
    for m in bns:
        m.reset_running_stats()
        m.momentum = None  # cumulative moving average over the batches below
    was_training = model.training
    model.train()
    streamed = isinstance(x, ImageView)
    device = _model_device(model) if streamed else x.device
    amp = autocast_dtype(device)
    if streamed:
        batches = (xb for xb, _, _ in x.batches(batch_size, device, idx.tolist()) if len(xb) > 1)
    else:  # (a last batch of 1 would fail in BN)
        batches = (x[idx[i:i + batch_size]].contiguous(memory_format=torch.channels_last)
                   for i in range(0, len(idx) - 1, batch_size))
    try:
        for xb in batches:
            with torch.autocast(device.type, dtype=amp, enabled=amp is not None):
                model(xb)
    finally:
        for m, mom in zip(bns, momenta, strict=True):
            m.momentum = mom
        model.train(was_training)


def train(net: Arch | nn.Module, data: Dataset, config: TrainConfig,
          report: Callable[[int, float], None] | None = None) -> TrainResult:
    """Train ``net`` on ``data.train_*`` and score it on ``data.val_*``.

    An :class:`Arch` is built with ``num_classes=data.num_classes`` right after
    ``torch.manual_seed(config.seed)``; a given module is fine-tuned in place.
    ``report(epoch, val_acc)`` is called after each epoch (from 0) and may raise
    (e.g. ``optuna.TrialPruned``), which propagates.

    Raises:
        NonFiniteLoss: the training loss became NaN or infinite.
    """
    t0 = time.perf_counter()
    device = resolve_device(config.device)
    torch.manual_seed(config.seed)
    if isinstance(net, Arch):
        from hwnas.space.build import build

        model = build(net, num_classes=data.num_classes)
    elif isinstance(net, nn.Module):
        model = net
    else:
        raise TypeError(f"train needs an Arch or a torch.nn.Module, got {type(net).__name__}")
    # channels_last: ~2.7x faster training of these depthwise-heavy nets on CPU
    # (measured here: MobileNetV3-Large, 32 px, batch 128, 2 threads: 0.34 -> 0.12 s/step).
    model.to(device=device, memory_format=torch.channels_last).train()
    gen = torch.Generator().manual_seed(config.seed)
    streamed = isinstance(data, StreamingDataset)
    if streamed:  # decoded on the fly by loader workers, train augmentation
        train_x, train_y = data.train_x, data.train_y
    else:
        train_x, train_y = _to_device(data.train_x, device), data.train_y.to(device)
    n = len(train_y)
    if n == 0:
        raise HwnasError(f"{data.name}: no training images")
    bs = min(config.batch_size, n)
    per_epoch = n // bs  # the last partial batch is dropped (a fresh random one each epoch)
    total = per_epoch * config.epochs
    if config.max_steps is not None:
        total = min(total, config.max_steps)
    opt = torch.optim.SGD(_param_groups(model, config.weight_decay), lr=config.lr,
                          momentum=config.momentum, nesterov=config.nesterov and config.momentum > 0)
    sched = _scheduler(opt, config, total)
    amp = autocast_dtype(device)
    scaler = torch.amp.GradScaler(device.type, enabled=amp == torch.float16)
    loss_fn = nn.CrossEntropyLoss(label_smoothing=config.label_smoothing)
    result = TrainResult(model=model, val_accuracy=0.0)
    step = 0
    for epoch in range(config.epochs):
        if step >= total:
            break
        perm = torch.randperm(n, generator=gen).to(train_y.device)
        running = torch.zeros((), device=device, dtype=torch.float64)
        done = 0
        batches = (data.train_batches(perm, bs, device, gen) if streamed
                   else _tensor_batches(train_x, train_y, perm, bs, per_epoch))
        for b, (xb, yb) in enumerate(batches):
            if step >= total:
                break
            if len(yb) < 2:  # unreadable images left a batch BN cannot train on
                continue
            with torch.autocast(device.type, dtype=amp, enabled=amp is not None):
                loss = loss_fn(model(xb), yb)
            opt.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            scaler.step(opt)
            scaler.update()
            sched.step()
            step += 1
            done += 1
            running += loss.detach().double()
            if done % _CHECK_EVERY == 0 or step == total or b == per_epoch - 1:
                _check_finite(running, step, epoch, config.lr)
        if done:
            _check_finite(running, step, epoch, config.lr)
        if config.bn_recalibration:
            recalibrate_bn(model, train_x, perm[:config.bn_recalibration], bs)
        model.eval()
        acc = evaluate(model, data.val_x, data.val_y)
        model.train()
        result.train_loss.append(float(running) / max(done, 1))
        result.val_history.append(acc)
        result.val_accuracy = acc
        result.steps = step
        if report is not None:
            report(epoch, acc)
    result.model = model.to(device="cpu", memory_format=torch.contiguous_format).eval()
    result.seconds = time.perf_counter() - t0
    return result


def _tensor_batches(x: torch.Tensor, y: torch.Tensor, perm: torch.Tensor, bs: int,
                    per_epoch: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """One epoch of in-memory batches in ``perm`` order (the last partial batch dropped)."""
    for b in range(per_epoch):
        idx = perm[b * bs:(b + 1) * bs]
        yield x[idx].contiguous(memory_format=torch.channels_last), y[idx]


def _check_finite(running: torch.Tensor, step: int, epoch: int, lr: float) -> None:
    value = float(running)
    if not math.isfinite(value):
        raise NonFiniteLoss(f"training loss became {value} by step {step} (epoch {epoch}); "
                            f"the learning rate {lr:g} may be too high for this network")

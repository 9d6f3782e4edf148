"""Zero-cost proxies: score an untrained network in well under a second.

Used to pre-filter sampled candidates before any are trained (higher is better).

- ``synflow``: Tanaka et al., "Pruning neural networks without any data by
  iteratively conserving synaptic flow", NeurIPS 2020; as a NAS proxy:
  Abdelfattah et al., "Zero-Cost Proxies for Lightweight NAS", ICLR 2021.
- ``naswot``: Mellor et al., "Neural Architecture Search without Training",
  ICML 2021 (the log-determinant of the binary activation-code kernel).

>>> zero_cost_score(reference("mobilenetv3_large"), data, "synflow")  # doctest: +SKIP
53.25

The proxies are a registry (:data:`PREFILTER_REGISTRY`): ``--prefilter``'s
choices and the config's allowed values are its keys (plus ``none``). To add
one, write its score function here and add an entry. torch (and hwnas.space,
which loads it) is imported when a score is computed, not with this module,
so the config reads the names without loading torch.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

from hwnas.common.errors import HwnasError

if TYPE_CHECKING:
    import torch
    from torch import nn

    from hwnas.proxy.data import Dataset
    from hwnas.space.spec import Arch

# NASWOT mini-batch size: Mellor et al. 2021 score a batch of 128 images.
NASWOT_BATCH = 128
# Both proxies are a few small kernels; one thread avoids the OpenMP start-up and
# contention cost that dominates them (measured here: a V3-Large synflow pass took
# 0.05 s on 1 thread and 0.4-6 s on 2 threads of a busy 2-core machine).
PREFILTER_THREADS = 1


@contextlib.contextmanager
def _torch_threads(n: int) -> Iterator[None]:
    import torch

    old = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(old)


def _synflow_score(model: nn.Module, data: Dataset, seed: int) -> float:
    return synflow(model, data.resolution)


def _naswot_score(model: nn.Module, data: Dataset, seed: int) -> float:
    import torch

    gen = torch.Generator().manual_seed(seed)
    n = min(NASWOT_BATCH, len(data.train_y))
    idx = torch.randperm(len(data.train_y), generator=gen)[:n]
    return naswot(model, data.train_x[idx])


@dataclass(frozen=True)
class Prefilter:
    """A registered zero-cost proxy: ``score(model, data, seed)``, higher is better."""

    score: Callable[[nn.Module, Dataset, int], float]
    help: str


# The proxies by name. To add one: write its score function and add an entry.
PREFILTER_REGISTRY: dict[str, Prefilter] = {
    "synflow": Prefilter(_synflow_score, "SynFlow (Tanaka et al. 2020), no data"),
    "naswot": Prefilter(_naswot_score, "NASWOT (Mellor et al. 2021), one batch of images"),
}
PREFILTER_METHODS = tuple(PREFILTER_REGISTRY)
# --prefilter's choices: a proxy, or none (train every candidate).
PREFILTER_CHOICES = ("none", *PREFILTER_METHODS)


def zero_cost_score(arch: Arch, data: Dataset, method: str, seed: int = 0) -> float:
    """Score ``arch`` untrained (weights drawn after ``torch.manual_seed(seed)``); higher is better.

    Args:
        arch: the network to score (built with ``data.num_classes`` outputs).
        data: gives the resolution, the class count and (naswot) a batch of images.
        method: one of :data:`PREFILTER_METHODS`.
        seed: seeds the weights and (naswot) the choice of images.
    """
    import torch

    from hwnas.space.build import build

    if method not in PREFILTER_REGISTRY:
        raise HwnasError(f"unknown prefilter method {method!r}: known are "
                         f"{', '.join(PREFILTER_METHODS)}")
    torch.manual_seed(seed)
    model = build(arch, num_classes=data.num_classes)
    with _torch_threads(PREFILTER_THREADS):
        return PREFILTER_REGISTRY[method].score(model, data, seed)


def synflow(model: nn.Module, resolution: int, in_chs: int = 3) -> float:
    """Natural log of the SynFlow score: ``sum |theta * dR/dtheta|`` with ``R = sum(f(1))``.

    As in Tanaka et al. (and the Zero-Cost-Proxies code of Abdelfattah et al.):
    every parameter replaced by its absolute value, an all-ones input, float64
    to avoid overflow, BatchNorm left out (eval mode with fresh statistics is
    the identity up to ``1/sqrt(1 + eps)``). The sum runs over conv and linear
    weights. The log keeps deep networks finite and does not change rankings.
    ReLU6 becomes ReLU: SynFlow assumes positively homogeneous activations, and
    with all-positive flow every ReLU6 would saturate at 6 with zero gradient
    (hard-swish is linear above 3, so it stays). ``model`` is modified (use a
    throwaway copy).
    """
    import torch
    from torch import nn

    for parent in list(model.modules()):
        for name, child in parent.named_children():
            if isinstance(child, nn.ReLU6):
                setattr(parent, name, nn.ReLU())
    model = model.double().eval()
    with torch.no_grad():
        for p in model.parameters():
            p.abs_()
    model.zero_grad(set_to_none=True)
    x = torch.ones(1, in_chs, resolution, resolution, dtype=torch.float64)
    model(x).sum().backward()
    total = 0.0
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.Conv2d | nn.Linear) and m.weight.grad is not None:
                total += float((m.weight * m.weight.grad).abs().sum())
    return math.log(total) if total > 0 else float("-inf")


def naswot(model: nn.Module, x: torch.Tensor) -> float:
    """log|K_H| of the NASWOT kernel on the batch ``x`` (Mellor et al. 2021, Eq. 2).

    ``c_i`` is the binary code of image ``i`` (1 where a rectifier's input is
    positive, over every coded activation in the network) and
    ``K_H[i, j] = N_A - hamming(c_i, c_j)``, i.e. the number of units on which
    the two images agree. The network runs in train mode (BatchNorm on batch
    statistics), as the paper's code does. An identity matrix is added before
    the log-determinant so that a singular kernel (duplicate images) stays
    finite; the diagonal is ``N_A`` (thousands), so scores otherwise barely move.
    """
    import torch
    from torch import nn

    # Rectifier-like activations whose sign pattern forms the binary code. The paper
    # hooks ReLUs; hard-swish, ReLU6 and SiLU are likewise zero or negative exactly
    # where their input is negative, so the code "input > 0" marks the same regions.
    coded = (nn.ReLU, nn.ReLU6, nn.Hardswish, nn.SiLU)
    n = len(x)
    kernel = torch.zeros(n, n, dtype=torch.float64)

    def hook(_m: nn.Module, inputs: tuple[torch.Tensor, ...]) -> None:
        # agreements = both 1 + both 0 = u - a_i - a_j + 2 * (c c^T)_ij for u units and
        # a = ones per image; float32 matmul is exact here (integers far below 2**24).
        code = (inputs[0].reshape(n, -1) > 0).float()
        ones = code.sum(1, dtype=torch.float64)
        both = (code @ code.T).double()
        kernel.add_(2 * both - ones[:, None] - ones[None, :] + code.shape[1])

    handles = [m.register_forward_pre_hook(hook) for m in model.modules()
               if isinstance(m, coded)]
    try:
        with torch.no_grad():
            model.train()(x.contiguous())
    finally:
        for h in handles:
            h.remove()
    sign, logdet = torch.linalg.slogdet(kernel + torch.eye(n, dtype=torch.float64))
    return float(logdet) if sign > 0 else float("-inf")

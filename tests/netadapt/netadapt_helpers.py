"""Helpers for the NetAdapt tests."""

from __future__ import annotations

from pathlib import Path

import torch
import yaml
from torch import nn

REPO = Path(__file__).resolve().parents[2]
TINY_YAML = REPO / "examples" / "netadapt_tiny.yaml"
# Small enough for seconds of CPU per refine: the example's network and data
# settings with fewer images, steps and iterations. No single cut of the tiny
# network removes 20% of its latency (the stem, 16 -> 8, removes 16%), so the
# 0.8x goal always takes at least two iterations.
TINY_OVERRIDES = {
    "dr": {"initial": "0.08x", "decay": 1.0},
    "short_term": {"steps": 2, "lr": 0.02},
    "long_term": {"epochs": 1, "lr": 0.02},
    "pretrain_epochs": 1,
    "batch_size": 64,
    "dataset": {"name": "fashion-mnist", "resolution": 16, "val_size": 64, "train_subset": 256},
}


def write_yaml(path: Path, raw: dict) -> Path:
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    return path


def randomize_bn(model: nn.Module, seed: int = 0) -> nn.Module:
    """Random BN affine terms and running statistics, so eval-mode outputs depend on them."""
    g = torch.Generator().manual_seed(seed)
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            n = m.num_features
            m.weight.data = torch.rand(n, generator=g) + 0.5
            m.bias.data = torch.randn(n, generator=g) * 0.1
            m.running_mean = torch.randn(n, generator=g) * 0.1
            m.running_var = torch.rand(n, generator=g) + 0.5
        elif isinstance(m, nn.Linear):
            m.weight.data = torch.randn(m.weight.shape, generator=g) * 0.1
    return model.eval()

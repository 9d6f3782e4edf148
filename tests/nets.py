"""Networks with weights that make comparisons meaningful (shared by the export tests)."""

from __future__ import annotations

import torch
from torch import nn


def randomize(model: nn.Module, seed: int) -> nn.Module:
    """Random BN statistics and affine terms, conv biases and an O(1) classifier; eval mode.

    With freshly initialised BN (identity in eval) and a 0.01-std classifier the
    logits are nearly zero, so a torch-vs-ONNX/TFLite comparison would prove
    little; these draws keep activations O(1) through deep networks.
    """
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                n = m.num_features
                m.weight.copy_(torch.rand(n, generator=g) + 0.5)
                m.bias.copy_(torch.randn(n, generator=g) * 0.2)
                m.running_mean.copy_(torch.randn(n, generator=g) * 0.2)
                m.running_var.copy_(torch.rand(n, generator=g) * 1.5 + 0.5)
            elif isinstance(m, nn.Linear):
                m.weight.copy_(torch.randn(m.weight.shape, generator=g) / m.in_features ** 0.5)
                m.bias.copy_(torch.randn(m.out_features, generator=g) * 0.1)
            elif isinstance(m, nn.Conv2d) and m.bias is not None:
                m.bias.copy_(torch.randn(m.out_channels, generator=g) * 0.5)
    return model.eval()

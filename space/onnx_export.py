"""Export an :class:`Arch` (and optionally trained weights) to ONNX."""

from __future__ import annotations

import os
import warnings
from pathlib import Path
from typing import IO

import torch
from torch import nn

from hwnas.common.atomic import atomic_write

from .build import build
from .spec import Arch, check_resolution

ONNX_OPSET = 17  # HardSwish/HardSigmoid are native from opset 14


def export_onnx(arch: Arch, path: str | os.PathLike, resolution: int = 224, num_classes: int = 1000,
                model: nn.Module | None = None, batch: int = 1) -> Path:
    """Write ``arch`` (or the given trained ``model`` of it) as an ONNX file; returns the path.

    The file is written to a temporary name and renamed, so a failed export
    leaves nothing behind.
    """
    path = Path(path)
    check_resolution(resolution)
    net = model if model is not None else build(arch, num_classes=num_classes)
    net = net.eval()
    x = torch.zeros(batch, 3, resolution, resolution)
    path.parent.mkdir(parents=True, exist_ok=True)

    def write(f: IO[bytes]) -> None:
        with warnings.catch_warnings(), torch.no_grad():
            warnings.simplefilter("ignore")
            torch.onnx.export(net, (x,), f, input_names=["input"], output_names=["logits"],
                              opset_version=ONNX_OPSET, dynamo=False)

    return atomic_write(path, write)

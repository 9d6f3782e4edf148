"""Shared fixtures: independent checks of what ``hwnas.space.build`` makes.

``torch_madds`` counts multiply-adds with forward hooks on the built module
(independent of ``hwnas.space.counts``); ``onnx_vs_torch`` exports a network
with randomised BatchNorm statistics and compares onnxruntime with torch.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch
from nets import randomize
from torch import nn

import hwnas.common  # noqa: F401  (sets OMP_WAIT_POLICY before torch loads, as the CLIs do)
from hwnas.space import Arch, build, export_onnx


def count_torch_madds(model: nn.Module, resolution: int, in_chs: int = 3) -> int:
    """Multiply-adds of one forward pass of a batch of 1, counted by forward hooks.

    Conv2d: ``kh * kw * in / groups * out * H_out * W_out``; Linear: ``in * out``.
    """
    total = 0

    def on_conv(m: nn.Conv2d, _inp: tuple, out: torch.Tensor) -> None:
        nonlocal total
        kh, kw = m.kernel_size
        total += kh * kw * (m.in_channels // m.groups) * m.out_channels * out.shape[2] * out.shape[3]

    def on_linear(m: nn.Linear, _inp: tuple, _out: torch.Tensor) -> None:
        nonlocal total
        total += m.in_features * m.out_features

    handles = []
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            handles.append(m.register_forward_hook(on_conv))
        elif isinstance(m, nn.Linear):
            handles.append(m.register_forward_hook(on_linear))
    try:
        with torch.no_grad():
            model.eval()(torch.zeros(1, in_chs, resolution, resolution))
    finally:
        for h in handles:
            h.remove()
    return total


def torch_params(model: nn.Module) -> int:
    """Trainable parameters of ``model`` (BN running stats are buffers, not counted)."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def compare_onnx(arch: Arch, folder: Path, resolution: int = 64, seed: int = 0,
                 num_classes: int = 100) -> tuple[np.ndarray, np.ndarray]:
    """(torch logits, onnxruntime logits) of ``arch`` with randomised weights on a seeded input."""
    import onnxruntime as ort

    model = randomize(build(arch, num_classes=num_classes), seed).eval()
    path = export_onnx(arch, folder / f"net{seed}.onnx", resolution=resolution, model=model)
    x = torch.randn(1, 3, resolution, resolution, generator=torch.Generator().manual_seed(seed + 1))
    with torch.no_grad():
        expected = model(x).numpy()
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    sess = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
    got = sess.run(None, {sess.get_inputs()[0].name: x.numpy()})[0]
    return expected, got


@pytest.fixture(autouse=True)
def _private_hwnas_home(tmp_path_factory: pytest.TempPathFactory,
                        monkeypatch: pytest.MonkeyPatch) -> None:
    """Tests never read or write the user's targets (``~/.cache/hwnas``): one
    throw-away ``$HWNAS_HOME`` per session unless a test sets its own."""
    monkeypatch.setenv("HWNAS_HOME", str(tmp_path_factory.getbasetemp() / "hwnas-home"))


@pytest.fixture
def torch_madds() -> Callable[..., int]:
    return count_torch_madds


@pytest.fixture
def params_of() -> Callable[[nn.Module], int]:
    return torch_params


@pytest.fixture
def onnx_vs_torch(tmp_path: Path) -> Callable[..., tuple[np.ndarray, np.ndarray]]:
    def run(arch: Arch, resolution: int = 64, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
        return compare_onnx(arch, tmp_path, resolution, seed)

    return run

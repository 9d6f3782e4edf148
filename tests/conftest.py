"""Shared fixtures: independent checks of what ``hwnas.space.build`` makes.

``torch_madds`` counts multiply-adds with forward hooks on the built module
(independent of ``hwnas.space.counts``); ``onnx_vs_torch`` exports a network
with randomised BatchNorm statistics and compares onnxruntime with torch.
"""

from __future__ import annotations

# isort: off
# First, before anything loads torch (and with it OpenMP, which reads the policy once):
# hwnas.common sets OMP_WAIT_POLICY=PASSIVE, as the CLIs do. Below torch, as isort would
# place it, it came too late: spinning OpenMP threads made the in-process training tests
# 2-4x slower on the shared 2-core machine.
import hwnas.common  # noqa: F401
# isort: on

import gc
import os
import shutil
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch
from nets import randomize
from torch import nn

from hwnas.space import Arch, build, export_onnx

# The tests share 2 cores (often with other jobs): one intra-op thread in this process
# and, unless the caller set their own, in the processes the tests start (as
# searchkit.one_thread_env does for nas-search). Tiny nets gain nothing from a second
# thread and lose much when it has to wait for a busy core.
torch.set_num_threads(1)
os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("MKL_NUM_THREADS", "1")

# The tests' temporary folders (tmp_path, $HWNAS_HOME) in memory where the machine has
# a RAM disk: every Optuna trial commits to SQLite dozens of times and the atomic
# writers fsync, which on a disk shared with other jobs took 15 ms a commit (an
# in-process 8-trial search: 7 of its 15 s). Files, renames and locks behave as on
# disk. PYTEST_DEBUG_TEMPROOT is pytest's own setting of the temp root; a caller's
# value, or --basetemp, wins. A passing session's folder is removed at the end
# (pytest_sessionfinish) so that the RAM is given back; a failing one's is kept for
# a look (pytest keeps the last 3 sessions' folders: at most ~1 GB).
RAM_TEMP_ROOT = Path("/dev/shm")
RAM_TEMP_MIN_FREE = 4 << 30  # bytes; a full session writes ~0.3 GB


def _ram_disk(path: Path) -> bool:
    try:
        mounts = Path("/proc/mounts").read_text().splitlines()
        free = shutil.disk_usage(path).free
    except OSError:
        return False
    tmpfs = any(f.split()[1:3] == [str(path), "tmpfs"] for f in mounts if len(f.split()) > 2)
    return tmpfs and free >= RAM_TEMP_MIN_FREE and os.access(path, os.W_OK)


TEMP_IN_RAM = "PYTEST_DEBUG_TEMPROOT" not in os.environ and _ram_disk(RAM_TEMP_ROOT)
if TEMP_IN_RAM:
    os.environ["PYTEST_DEBUG_TEMPROOT"] = str(RAM_TEMP_ROOT)


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    # (pytest's own retention policy "failed" does the same from the same attributes)
    base = getattr(getattr(session.config, "_tmp_path_factory", None), "_basetemp", None)
    if TEMP_IN_RAM and exitstatus == 0 and base is not None \
            and Path(base).resolve().is_relative_to(RAM_TEMP_ROOT.resolve()):
        shutil.rmtree(base, ignore_errors=True)


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


@pytest.fixture(autouse=True, scope="module")
def _freeze_the_heap() -> None:
    """Leave what earlier modules keep alive out of the cyclic collector's work.

    The search collects garbage after every trial (``gc.collect()`` in
    hwnas.search.run), as a long search should; in this one long-lived process a
    full collection walks every object that every test module imported or cached
    so far, and in-process searches late in the suite spent most of their time
    there (a 4 s test took 12-16 s). At each module's start: collect, then
    ``gc.freeze()`` the survivors, so that later collections walk only what
    was made since.
    """
    gc.collect()
    gc.freeze()


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

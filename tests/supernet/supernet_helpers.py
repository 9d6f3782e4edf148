"""Helpers of the supernet tests: a tiny search space frame, toy IDX data, tiny settings.

Imported by name (``tests/supernet`` is on pytest's pythonpath) by the tests, the
fixtures in ``conftest.py`` and the subprocess of the kill -9 test.
"""

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np

import hwnas.common  # noqa: F401  (OMP_WAIT_POLICY before torch loads, as the CLIs do)
from hwnas.space import searchspace
from hwnas.space.skeletons import SKELETONS, Skeleton, SkeletonBlock
from hwnas.space.spec import HeadSpec, StemSpec

# Also used verbatim by the subprocess of the kill -9 test (it must see the same space).
TINY_SKELETON = Skeleton(
    name="mobilenetv3",
    stem=StemSpec(8, kernel=3, stride=2, act="hswish"),
    blocks=(SkeletonBlock(8, 1, 1), SkeletonBlock(16, 1, 2), SkeletonBlock(16, 2, 2)),
    heads={"v3": HeadSpec("v3", 32, features=48, act="hswish"), "v2": HeadSpec("v2", 40, act="hswish")},
    se_gate="hsigmoid", se_from="mid", source="tests: a tiny frame",
)
TINY_RESOLUTION = 16


def use_tiny_space() -> None:
    """Swap in the tiny frame (and forget cached spaces)."""
    SKELETONS["mobilenetv3"] = TINY_SKELETON
    searchspace._space.cache_clear()
    searchspace._smallest.cache_clear()


def tiny_space_for(monkeypatch):  # noqa: ANN001, ANN201 - pytest's MonkeyPatch; a generator
    """Body of a ``tiny_space`` fixture: the tiny frame for one test, then the real one back."""
    monkeypatch.setitem(SKELETONS, "mobilenetv3", TINY_SKELETON)
    searchspace._space.cache_clear()
    searchspace._smallest.cache_clear()
    yield searchspace.get_space("mobilenetv3")
    searchspace._space.cache_clear()
    searchspace._smallest.cache_clear()


def _write_idx(path: Path, arr: np.ndarray) -> None:
    # IDX: two zero bytes, type code 0x08 (uint8), number of dims, big-endian int32 dims.
    header = bytes([0, 0, 0x08, arr.ndim]) + struct.pack(f">{arr.ndim}I", *arr.shape)
    path.write_bytes(header + arr.astype(np.uint8).tobytes())


def make_toy_data(folder: Path, n: int = 480, n_test: int = 64, classes: int = 4) -> Path:
    """Class-dependent bright squares on noise, 12x12 grey, as IDX files."""
    rng = np.random.default_rng(0)
    folder.mkdir(parents=True, exist_ok=True)
    for split, count in (("train", n), ("t10k", n_test)):
        y = rng.integers(0, classes, count)
        x = rng.integers(0, 60, (count, 12, 12))
        for i, c in enumerate(y):
            r, col = divmod(int(c), 2)
            x[i, r * 6:r * 6 + 6, col * 6:col * 6 + 6] += 150
        _write_idx(folder / f"{split}-images-idx3-ubyte", x)
        _write_idx(folder / f"{split}-labels-idx1-ubyte", y)
    return folder


def tiny_settings(data: Path, **kw) -> dict:
    """SupernetConfig fields of a supernet that trains in about a second."""
    return {"space": "mobilenetv3", "data": str(data), "proxy_resolution": TINY_RESOLUTION,
            "seed": 0, "epochs": 2, "train_subset": 256, "val_size": 96, "batch_size": 64, **kw}


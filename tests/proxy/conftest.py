"""ImageFolder trees generated in a temp dir: small JPEG/PNG files whose class is visible.

Class ``k`` of ``n_classes`` is a dominant colour (red, green, blue, ...) with
noise, at a random size and aspect (so crops matter), half JPEG, half PNG.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

COLOURS = ((200, 40, 40), (40, 200, 40), (40, 40, 200), (200, 200, 40))


def make_folder(root: Path, n: int, n_classes: int = 3, size: tuple[int, int] = (36, 52),
                seed: int = 0) -> Path:
    """``n`` images in ``root/<class>/`` (sizes in [size[0], size[1]) px per side)."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    for c in range(n_classes):
        (root / f"class{c}").mkdir(parents=True, exist_ok=True)
    for i in range(n):
        c = i % n_classes
        w, h = (int(v) for v in rng.integers(size[0], size[1], 2))
        noise = rng.integers(-40, 40, (h, w, 3))
        arr = np.clip(np.asarray(COLOURS[c]) + noise, 0, 255).astype(np.uint8)
        ext = "jpg" if i % 2 else "png"
        Image.fromarray(arr).save(root / f"class{c}" / f"{i:05d}.{ext}")
    return root


@pytest.fixture
def make_folder_fn():
    """:func:`make_folder` itself (test modules cannot import conftest in importlib mode)."""
    return make_folder


@pytest.fixture
def folder_factory(tmp_path: Path):
    """``folder_factory(n, **kw)``: a fresh generated ImageFolder under tmp_path."""
    count = iter(range(1000))

    def make(n: int, **kw) -> Path:
        return make_folder(tmp_path / f"imgs{next(count)}", n, **kw)

    return make

"""Data sanity before any training: at least two classes, each with images on both sides."""

from __future__ import annotations

from pathlib import Path

import pytest

from hwnas.proxy.data import DataError, load_dataset


def _png(path: Path, value: int) -> None:
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (8, 8), (value, value, value)).save(path)


def test_one_class_is_refused(tmp_path: Path) -> None:
    for i in range(6):
        _png(tmp_path / "cats" / f"{i}.png", 10 * i)
    with pytest.raises(DataError, match=r"1 class\(es\) with images; a classifier needs at least 2"):
        load_dataset(str(tmp_path), resolution=8, val_size=2)


def test_a_class_with_one_image_is_refused(tmp_path: Path) -> None:
    for i in range(4):
        _png(tmp_path / "cats" / f"{i}.png", 10 * i)
    _png(tmp_path / "dogs" / "0.png", 200)
    with pytest.raises(DataError, match="class\\(es\\) dogs have fewer than 2 images"):
        load_dataset(str(tmp_path), resolution=8, val_size=2)


def test_two_classes_load(tmp_path: Path) -> None:
    for c, v in (("cats", 10), ("dogs", 200)):
        for i in range(3):
            _png(tmp_path / c / f"{i}.png", v + i)
    ds = load_dataset(str(tmp_path), resolution=8, val_size=2)
    assert ds.num_classes == 2 and len(ds.train_y) + len(ds.val_y) == 6

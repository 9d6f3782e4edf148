"""ImageFolder scanning, its one-line errors, and the train/evaluation transforms."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from hwnas.proxy.data import DataError, load_dataset
from hwnas.proxy.imagefolder import (
    RRC_RATIO,
    RRC_SCALE,
    DecodeError,
    decode,
    eval_box,
    rrc_box,
    scan,
)


def _one_line_error(folder: Path, *words: str) -> None:
    for stream in (False, True):
        with pytest.raises(DataError) as e:
            load_dataset(str(folder), resolution=16, val_size=2, stream=stream)
        msg = str(e.value)
        assert "\n" not in msg and all(w in msg for w in words), msg


def test_empty_folder(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    _one_line_error(tmp_path / "empty", "no class sub-folders with images", "empty")


def test_class_folder_without_readable_image(tmp_path: Path, make_folder_fn) -> None:
    root = make_folder_fn(tmp_path / "f", 12)
    (root / "broken").mkdir()
    (root / "broken" / "a.jpg").write_bytes(b"\xff\xd8 not really")
    (root / "broken" / "b.png").write_bytes(b"")
    _one_line_error(root, "class folder", "broken", "no readable image", "cannot decode", "2 image")


def test_class_folder_with_no_image_files(tmp_path: Path, make_folder_fn) -> None:
    root = make_folder_fn(tmp_path / "f", 12)
    (root / "notes").mkdir()
    (root / "notes" / "readme.txt").write_text("hi")
    _one_line_error(root, "notes", "no readable image", "holds no")


def test_scan_lists_nested_files_with_labels(tmp_path: Path, make_folder_fn) -> None:
    root = make_folder_fn(tmp_path / "f", 9)
    nested = root / "class2" / "sub"
    nested.mkdir()
    (root / "class2" / "00002.png").rename(nested / "x.png")
    (root / ".hidden").mkdir()
    f = scan(root)
    assert f.classes == ("class0", "class1", "class2") and len(f.paths) == 9
    assert "class2/sub/x.png" in f.paths
    assert f.labels[f.paths.index("class2/sub/x.png")] == 2
    assert list(f.paths) == sorted(f.paths)


def test_eval_box_is_the_centre_crop() -> None:
    # resize the shorter side (100) to R/0.875, crop R: 87.5 source pixels, centred
    assert eval_box(200, 100) == pytest.approx((56.25, 6.25, 143.75, 93.75))


def test_rrc_box_in_range_and_seeded() -> None:
    for seed in range(50):
        box = rrc_box(120, 80, torch.Generator().manual_seed(seed))
        w, h = box[2] - box[0], box[3] - box[1]
        assert box[0] >= 0 and box[1] >= 0 and box[2] <= 120 and box[3] <= 80
        assert RRC_SCALE[0] * 0.9 <= w * h / (120 * 80) <= RRC_SCALE[1]
        assert RRC_RATIO[0] * 0.9 <= w / h <= RRC_RATIO[1] * 1.1
    a = rrc_box(120, 80, torch.Generator().manual_seed(3))
    assert a == rrc_box(120, 80, torch.Generator().manual_seed(3))


def test_decode_jpeg_draft_and_flip(tmp_path: Path) -> None:
    from PIL import Image

    arr = np.zeros((300, 400, 3), np.uint8)
    arr[:, :200] = 255  # left half white
    Image.fromarray(arr).save(tmp_path / "big.jpg", quality=95)
    ev = decode(tmp_path / "big.jpg", 16, train=False)  # decoded at reduced scale (draft)
    assert ev.shape == (16, 16, 3) and ev.dtype == np.uint8
    assert ev[:, :6].mean() > 200 and ev[:, -6:].mean() < 50
    flipped = 0
    for seed in range(40):
        tr = decode(tmp_path / "big.jpg", 16, train=True, gen=torch.Generator().manual_seed(seed))
        assert tr.shape == (16, 16, 3)
        flipped += int(tr[:, -1].mean() > tr[:, 0].mean() + 100)
    assert 5 <= flipped <= 35  # about half the crops that show both halves are mirrored


def test_decode_error(tmp_path: Path) -> None:
    (tmp_path / "x.png").write_bytes(b"\x89PNG broken")
    with pytest.raises(DecodeError):
        decode(tmp_path / "x.png", 8, train=False)

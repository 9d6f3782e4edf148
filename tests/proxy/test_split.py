"""The split manifest: what a run folder records, and reading it back."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from hwnas.common.errors import HwnasError
from hwnas.proxy.data import DataError, Dataset, load_dataset
from hwnas.proxy.split import SPLIT_FILE, load_split_manifest, save_split_manifest


def test_manifest_of_an_image_folder(tmp_path: Path, make_folder_fn) -> None:
    root = make_folder_fn(tmp_path / "f", 30)
    d = load_dataset(str(root), resolution=16, val_size=6, train_subset=20, seed=5)
    m = d.split_manifest()
    assert m["format_version"] == 1 and m["kind"] == "imagefolder" and m["seed"] == 5
    assert m["classes"] == ["class0", "class1", "class2"]
    assert len(m["train"]) == 20 and len(m["val"]) == 6
    train, val = {p for p, _ in m["train"]}, {p for p, _ in m["val"]}
    assert not train & val and all((root / p).is_file() for p in train | val)
    assert [lab for _, lab in m["val"]] == d.val_y.tolist()
    run = tmp_path / "run"
    run.mkdir()
    assert save_split_manifest(d, run) == run / SPLIT_FILE
    assert load_split_manifest(run) == m
    other = load_dataset(str(root), resolution=16, val_size=6, train_subset=20, seed=6)
    assert other.split_manifest()["val"] != m["val"]


def test_manifest_of_idx_data(tmp_path: Path) -> None:
    import numpy as np

    for name, arr in (("train-images-idx3-ubyte", np.zeros((10, 4, 4), np.uint8)),
                      ("train-labels-idx1-ubyte", np.arange(10, dtype=np.uint8) % 2)):
        head = bytes([0, 0, 0x08, arr.ndim]) + np.asarray(arr.shape, ">u4").tobytes()
        (tmp_path / name).write_bytes(head + arr.tobytes())
    m = load_dataset(str(tmp_path), resolution=8, val_size=3, seed=0).split_manifest()
    assert m["kind"] == "idx" and len(m["val"]) == 3 and len(m["train"]) == 7
    assert sorted(m["train"] + m["val"]) == list(range(10))
    json.dumps(m)


def test_hand_made_dataset_has_no_manifest() -> None:
    x = torch.zeros(4, 3, 8, 8)
    d = Dataset("toy", "synthetic", 2, 8, x, torch.zeros(4, dtype=torch.long), x, x[:, 0, 0, 0].long())
    with pytest.raises(HwnasError, match="no split manifest"):
        d.split_manifest()


def test_bad_manifest_files(tmp_path: Path) -> None:
    (tmp_path / "a.json").write_text(json.dumps({"format_version": 99}))
    with pytest.raises(DataError, match="format_version 99"):
        load_split_manifest(tmp_path / "a.json")
    with pytest.raises(DataError, match="cannot read"):
        load_split_manifest(tmp_path / "missing.json")

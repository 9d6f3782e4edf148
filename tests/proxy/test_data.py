"""Proxy-task data: IDX parsing, ImageFolder, splits, errors."""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import pytest
import torch

from hwnas.proxy import data as D
from hwnas.proxy.data import DataError, load_dataset, load_test_split, read_idx


def write_idx(path: Path, arr: np.ndarray, compress: bool = False) -> Path:
    """Write ``arr`` (uint8) as an IDX file: 0, 0, type 0x08, ndim, big-endian dims, data."""
    head = bytes([0, 0, 0x08, arr.ndim]) + np.asarray(arr.shape, ">u4").tobytes()
    raw = head + arr.astype(np.uint8).tobytes()
    if compress:
        path.write_bytes(gzip.compress(raw))
    else:
        path.write_bytes(raw)
    return path


def make_idx_dir(folder: Path, n: int = 200, n_test: int = 50, classes: int = 4,
                 compress: bool = True, seed: int = 0) -> Path:
    """A tiny IDX data set whose class is visible in the image (brightness band)."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    gz = ".gz" if compress else ""
    for split, count in (("train", n), ("t10k", n_test)):
        y = rng.integers(0, classes, count).astype(np.uint8)
        x = rng.integers(0, 40, (count, 28, 28)).astype(np.uint8)
        for i, c in enumerate(y):
            x[i, 4 * c:4 * c + 6] = 250
        write_idx(folder / f"{split}-images-idx3-ubyte{gz}", x, compress)
        write_idx(folder / f"{split}-labels-idx1-ubyte{gz}", y, compress)
    return folder


@pytest.mark.parametrize("compress", [False, True])
def test_read_idx_round_trip(tmp_path: Path, compress: bool) -> None:
    arr = np.arange(2 * 3 * 5, dtype=np.uint8).reshape(2, 3, 5)
    got = read_idx(write_idx(tmp_path / "a-idx3-ubyte", arr, compress))
    assert got.dtype == np.uint8 and got.shape == (2, 3, 5)
    np.testing.assert_array_equal(got, arr)


def test_read_idx_other_type(tmp_path: Path) -> None:
    arr = np.array([1, -2, 300], dtype=">i4")
    p = tmp_path / "x.idx"
    p.write_bytes(bytes([0, 0, 0x0C, 1]) + np.asarray([3], ">u4").tobytes() + arr.tobytes())
    np.testing.assert_array_equal(read_idx(p), [1, -2, 300])


@pytest.mark.parametrize("payload, words", [
    (b"\x01\x02\x08\x01", "magic"),
    (bytes([0, 0, 8, 3]) + np.asarray([2, 2], ">u4").tobytes(), "truncated"),
    (bytes([0, 0, 8, 1]) + np.asarray([10], ">u4").tobytes() + b"\x00" * 3, "needs 10"),
])
def test_read_idx_malformed(tmp_path: Path, payload: bytes, words: str) -> None:
    p = tmp_path / "bad-idx1-ubyte"
    p.write_bytes(payload)
    with pytest.raises(DataError, match=words) as e:
        read_idx(p)
    assert str(p) in str(e.value) and "\n" not in str(e.value)


def test_idx_folder(tmp_path: Path) -> None:
    folder = make_idx_dir(tmp_path / "toy")
    d = load_dataset(str(folder), resolution=16, val_size=50, train_subset=100, seed=1)
    assert d.name == "toy" and d.num_classes == 4 and d.resolution == 16
    assert d.train_x.shape == (100, 3, 16, 16) and d.val_x.shape == (50, 3, 16, 16)
    assert d.train_x.dtype == torch.float32 and d.train_y.dtype == torch.int64
    # grey images replicated to three channels, normalised with the train statistics
    assert torch.equal(d.train_x[:, 0], d.train_x[:, 2])
    everything = torch.cat([d.train_x, d.val_x])
    assert abs(float(everything.mean())) < 0.2 and 0.7 < float(everything.std()) < 1.3
    x, y = load_test_split(str(folder), resolution=16)
    assert x.shape == (50, 3, 16, 16) and len(y) == 50


def test_plain_idx_names_with_dot(tmp_path: Path) -> None:
    folder = make_idx_dir(tmp_path / "plain", compress=False)
    for p in folder.iterdir():  # the "train-images.idx3-ubyte" spelling of some copies
        p.rename(folder / p.name.replace("-idx", ".idx"))
    assert len(load_dataset(str(folder), resolution=28, val_size=20).train_y) == 180


def test_split_disjoint_and_deterministic(tmp_path: Path) -> None:
    folder = make_idx_dir(tmp_path / "toy", n=300)
    raw = D._raw(str(folder), "train", 16)
    for i in range(len(raw.images)):  # make every image unique so rows identify images
        raw.images[i, 0, 0, :2] = (i // 256, i % 256)

    def ids(x: torch.Tensor) -> set[int]:
        # undo normalisation on the two marker pixels
        mean, std = D._norm_stats(str(folder), 16)
        px = (x[:, 0, 0, :2] * std + mean) * 255
        return set((px[:, 0].round().long() * 256 + px[:, 1].round().long()).tolist())

    D._norm_stats.cache_clear()
    a = load_dataset(str(folder), resolution=28, val_size=60, train_subset=100, seed=3)
    b = load_dataset(str(folder), resolution=28, val_size=60, train_subset=100, seed=3)
    c = load_dataset(str(folder), resolution=28, val_size=60, train_subset=100, seed=4)
    assert torch.equal(a.train_x, b.train_x) and torch.equal(a.val_y, b.val_y)
    assert not torch.equal(a.val_x, c.val_x)
    train_ids, val_ids = ids(a.train_x), ids(a.val_x)
    assert len(train_ids) == 100 and len(val_ids) == 60
    assert not train_ids & val_ids
    full = load_dataset(str(folder), resolution=28, val_size=60, seed=3)
    assert len(full.train_y) == 240 and ids(full.val_x) == val_ids


def _png(path: Path, value: int, size: tuple[int, int], mode: str = "RGB") -> None:
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    color = value if mode == "L" else (value, 255 - value, value // 2)
    Image.new(mode, size, color).save(path)


def test_image_folder(tmp_path: Path) -> None:
    root = tmp_path / "imgs"
    for cls, value in (("cat", 30), ("dog", 200)):
        for i in range(6):
            _png(root / "train" / cls / f"{i}.png", value + i, (40, 30), "L" if i % 2 else "RGB")
        _png(root / "test" / cls / "0.png", value, (20, 20))
    d = load_dataset(str(root), resolution=16, val_size=4, seed=0)
    assert d.num_classes == 2 and d.name == "imgs"
    assert d.train_x.shape == (8, 3, 16, 16) and set(d.train_y.tolist()) <= {0, 1}
    x, y = load_test_split(str(root), resolution=16)
    assert x.shape == (2, 3, 16, 16) and y.tolist() == [0, 1]
    # dog images are brighter in channel 0 than cat images after normalisation
    assert float(x[1, 0].mean()) > float(x[0, 0].mean())


def test_image_folder_flat_has_no_test(tmp_path: Path) -> None:
    for cls in ("a", "b", "c"):
        for i in range(3):
            _png(tmp_path / "flat" / cls / f"{i}.jpg", 40 * i, (8, 8))
    d = load_dataset(str(tmp_path / "flat"), resolution=8, val_size=3)
    assert d.num_classes == 3 and len(d.train_y) == 6
    with pytest.raises(DataError, match="no test split"):
        load_test_split(str(tmp_path / "flat"), resolution=8)


def test_bad_image_is_one_line(tmp_path: Path) -> None:
    _png(tmp_path / "f" / "a" / "0.png", 1, (8, 8))
    (tmp_path / "f" / "b").mkdir()
    (tmp_path / "f" / "b" / "0.png").write_bytes(b"not a png")
    with pytest.raises(DataError, match="cannot decode") as e:
        load_dataset(str(tmp_path / "f"), resolution=8, val_size=1)
    assert "\n" not in str(e.value) and "0.png" in str(e.value)


@pytest.mark.parametrize("make", ["missing", "empty", "labels_short"])
def test_data_errors_are_one_line(tmp_path: Path, make: str) -> None:
    target = tmp_path / "d"
    if make == "empty":
        target.mkdir()
    elif make == "labels_short":
        make_idx_dir(target, compress=False)
        write_idx(target / "train-labels-idx1-ubyte", np.zeros(5, np.uint8))
    with pytest.raises(DataError) as e:
        load_dataset(str(target), resolution=16, val_size=10)
    msg = str(e.value)
    assert "\n" not in msg and str(target) in msg


def test_missing_fashion_mnist_says_how_to_install(tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(D, "FASHION_MNIST_DIRS", (tmp_path / "nowhere",))
    with pytest.raises(DataError) as e:
        load_dataset("fashion-mnist")
    msg = str(e.value)
    assert "\n" not in msg and str(tmp_path / "nowhere") in msg
    assert "apt-get install dataset-fashion-mnist" in msg and "name a folder" in msg


@pytest.mark.parametrize("kw, words", [
    ({"val_size": 0}, "val_size"), ({"val_size": 200}, "val_size"),
    ({"train_subset": 500}, "train_subset"), ({"resolution": 4}, "resolution"),
])
def test_bad_sizes(tmp_path: Path, kw: dict, words: str) -> None:
    folder = make_idx_dir(tmp_path / "toy")
    args = {"resolution": 16, "val_size": 20} | kw
    with pytest.raises(ValueError, match=words):
        load_dataset(str(folder), **args)


@pytest.mark.skipif(not any(D._find_idx(p, "train") for p in D.FASHION_MNIST_DIRS),
                    reason="dataset-fashion-mnist not installed")
def test_fashion_mnist() -> None:
    d = load_dataset("fashion-mnist", resolution=32, val_size=500, train_subset=256, seed=0)
    assert d.num_classes == 10 and d.train_x.shape == (256, 3, 32, 32)
    assert d.source.endswith("fashion-mnist")
    # normalised with the train split's statistics (mean 0.2860, std 0.3530 in [0, 1] units)
    mean, std = D._norm_stats("fashion-mnist", 32)
    assert mean.item() == pytest.approx(0.2860, abs=1e-3) and std.item() == pytest.approx(0.3530, abs=1e-3)

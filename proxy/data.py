"""Proxy-task data: Fashion-MNIST (default), a folder of IDX files, or an ImageFolder.

Images are decoded once per process (uint8, cached), resized to the proxy
resolution with :func:`torch.nn.functional.interpolate`, replicated to three
channels when grey and normalised with the per-channel mean and standard
deviation of the whole train split. The validation split is carved from the
TRAIN split with the seed; the test split is never used for search decisions
(:func:`load_test_split` exists for benchmarks only).

Sources:
- Fashion-MNIST: Xiao, Rasul and Vollgraf, 2017, arXiv:1708.07747; the Debian
  package ``dataset-fashion-mnist`` installs the four IDX files under
  ``/usr/share/datasets/fashion-mnist``.
- IDX format: LeCun et al., http://yann.lecun.com/exdb/mnist/ ("FILE FORMATS").

>>> data = load_dataset("fashion-mnist", resolution=32, val_size=1000, train_subset=2000)
>>> tuple(data.train_x.shape), tuple(data.val_x.shape)  # doctest: +SKIP
((2000, 3, 32, 32), (1000, 3, 32, 32))
"""

from __future__ import annotations

import functools
import gzip
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from hwnas.common.errors import HwnasError

DEFAULT_SPEC = "fashion-mnist"
FASHION_MNIST_ALIASES = ("fashion-mnist", "fashion_mnist", "fashionmnist")
# Where Debian's dataset-fashion-mnist package puts the IDX files.
FASHION_MNIST_DIRS: tuple[Path, ...] = (Path("/usr/share/datasets/fashion-mnist"),)
INSTALL_HINT = ("install it with `apt-get install dataset-fashion-mnist`, or name a folder of "
                "IDX files or of class sub-folders instead")

# Standard IDX file names (the MNIST/Fashion-MNIST distributions; some copies use
# "train-images.idx3-ubyte"), optionally gzipped.
_IDX_FILES = {
    "train": ("train-images{}idx3-ubyte", "train-labels{}idx1-ubyte"),
    "test": ("t10k-images{}idx3-ubyte", "t10k-labels{}idx1-ubyte"),
}
# IDX type codes (third byte of the magic number), big-endian as the format says.
_IDX_DTYPES = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff", ".ppm", ".pgm")
# ImageFolder layouts with separate splits: root/train/<class>/... and root/test/<class>/...
_SPLIT_DIRS = {"train": ("train",), "test": ("test", "val")}


class DataError(HwnasError):
    """The proxy-task data is missing or malformed (one line: where, and how to fix)."""


@dataclass(frozen=True, eq=False)
class Dataset:
    """A proxy task held in memory: normalised float32 images and int64 labels."""

    name: str
    source: str
    num_classes: int
    resolution: int
    train_x: torch.Tensor  # (N, 3, R, R)
    train_y: torch.Tensor  # (N,)
    val_x: torch.Tensor  # held out from the TRAIN split
    val_y: torch.Tensor

    def __repr__(self) -> str:
        return (f"Dataset({self.name!r}, train={len(self.train_y)}, val={len(self.val_y)}, "
                f"classes={self.num_classes}, resolution={self.resolution}, source={self.source!r})")


@dataclass(frozen=True)
class _Raw:
    """One decoded split: uint8 images (N, C, H, W) and int64 labels."""

    name: str
    source: str
    images: np.ndarray
    labels: np.ndarray
    num_classes: int
    classes: tuple[str, ...] = ()  # class folder names (ImageFolder only)


# ---------------------------------------------------------------------------- IDX


def read_idx(path: str | Path) -> np.ndarray:
    """Parse one IDX file (plain or gzip) into a numpy array.

    Header: two zero bytes, a type code, the number of dimensions, then one
    big-endian int32 per dimension; the data follow in C order.
    """
    path = Path(path)
    try:
        with open(path, "rb") as f:
            head = f.read(2)
        opener = gzip.open if head == b"\x1f\x8b" else open
        with opener(path, "rb") as f:
            buf = f.read()
    except (OSError, EOFError) as e:
        raise DataError(f"{path}: cannot read IDX file ({e})") from None
    if len(buf) < 4 or buf[0] != 0 or buf[1] != 0 or buf[2] not in _IDX_DTYPES:
        raise DataError(f"{path}: not an IDX file (bad magic number {buf[:4].hex() or 'none'})")
    ndim = buf[3]
    start = 4 + 4 * ndim
    if ndim == 0 or len(buf) < start:
        raise DataError(f"{path}: truncated IDX header ({ndim} dimensions)")
    shape = tuple(int(d) for d in np.frombuffer(buf, ">u4", ndim, 4))
    dtype = np.dtype(_IDX_DTYPES[buf[2]])
    count = int(np.prod(shape))
    if len(buf) - start != count * dtype.itemsize:
        raise DataError(f"{path}: IDX data has {len(buf) - start} bytes, header {shape} "
                        f"needs {count * dtype.itemsize}")
    return np.frombuffer(buf, dtype, count, start).reshape(shape).astype(dtype.newbyteorder("="))


def _find_idx(folder: Path, split: str) -> tuple[Path, Path] | None:
    found = []
    for pattern in _IDX_FILES[split]:
        names = [pattern.format(sep) + gz for sep in ("-", ".") for gz in (".gz", "")]
        hit = next((folder / n for n in names if (folder / n).is_file()), None)
        if hit is None:
            return None
        found.append(hit)
    return found[0], found[1]


def _load_idx(folder: Path, split: str, name: str) -> _Raw:
    files = _find_idx(folder, split)
    if files is None:
        want = _IDX_FILES[split][0].format("-")
        hint = INSTALL_HINT if name == DEFAULT_SPEC else "name a folder of IDX files or of class sub-folders"
        raise DataError(f"no {split} IDX files ({want}[.gz] and labels) in {folder}; {hint}")
    images, labels = read_idx(files[0]), read_idx(files[1])
    if images.dtype != np.uint8 or images.ndim not in (3, 4):
        raise DataError(f"{files[0]}: expected uint8 images (N, H, W[, C]), got "
                        f"{images.dtype} {images.shape}")
    if labels.ndim != 1 or len(labels) != len(images) or labels.dtype.kind not in "iu":
        raise DataError(f"{files[1]}: expected {len(images)} integer labels, got "
                        f"{labels.dtype} {labels.shape}")
    if len(labels) == 0 or labels.min() < 0:
        raise DataError(f"{files[1]}: labels must be non-negative and not empty")
    images = images[:, None] if images.ndim == 3 else images.transpose(0, 3, 1, 2)
    return _Raw(name, str(folder), np.ascontiguousarray(images), labels.astype(np.int64),
                int(labels.max()) + 1)


# ---------------------------------------------------------------------- ImageFolder


def _class_dirs(folder: Path) -> list[Path]:
    return sorted(d for d in folder.iterdir() if d.is_dir() and not d.name.startswith("."))


def _images_in(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())


def _load_image_folder(folder: Path, resolution: int, classes: tuple[str, ...] | None) -> _Raw:
    """Decode ``folder/<class>/*`` with PIL (RGB) and resize each image to ``resolution``.

    ``classes`` (the train split's class names) fixes the label of each class
    folder for a test split; ``None`` takes the sorted sub-folders with images.
    """
    from PIL import Image, UnidentifiedImageError

    dirs = [d for d in _class_dirs(folder) if _images_in(d)]
    if not dirs:
        raise DataError(f"no class sub-folders with images ({', '.join(IMAGE_SUFFIXES[:3])}, ...) "
                        f"in {folder}; name a folder of IDX files or with one sub-folder per class")
    names = tuple(d.name for d in dirs) if classes is None else classes
    unknown = [d.name for d in dirs if d.name not in names]
    if unknown:
        raise DataError(f"{folder}: class folders {unknown} are not train classes {list(names)}")
    images, labels = [], []
    for d in dirs:
        for p in _images_in(d):
            try:
                with Image.open(p) as im:
                    arr = np.asarray(im.convert("RGB"), dtype=np.uint8)
            except (OSError, UnidentifiedImageError) as e:
                raise DataError(f"{p}: cannot decode image ({e})") from None
            t = torch.from_numpy(arr.copy()).permute(2, 0, 1)[None].float()
            images.append(_resize(t, resolution).round().clamp(0, 255).to(torch.uint8)[0])
            labels.append(names.index(d.name))
    return _Raw(folder.name, str(folder), torch.stack(images).numpy(), np.asarray(labels, np.int64),
                len(names), names)


def _image_folder_root(folder: Path, split: str) -> Path | None:
    """``folder/train`` (or test/val) when the folder holds splits, else ``folder`` for train."""
    for sub in _SPLIT_DIRS[split]:
        if (folder / sub).is_dir() and _class_dirs(folder / sub):
            return folder / sub
    has_splits = any((folder / s).is_dir() for names in _SPLIT_DIRS.values() for s in names)
    return folder if split == "train" and not has_splits else None


# --------------------------------------------------------------------- resolving


def _resize(x: torch.Tensor, resolution: int) -> torch.Tensor:
    """Bilinear resize of float (N, C, H, W) to square ``resolution`` (antialiased when shrinking)."""
    if x.shape[-2:] == (resolution, resolution):
        return x
    shrink = x.shape[-1] > resolution or x.shape[-2] > resolution
    return F.interpolate(x, size=(resolution, resolution), mode="bilinear", align_corners=False,
                         antialias=shrink)


def _resolve(spec: str, split: str) -> tuple[str, Path]:
    """Where ``split`` of ``spec`` lives: ("idx", folder) or ("folder", class-folder root)."""
    if spec.lower() in FASHION_MNIST_ALIASES:
        for folder in FASHION_MNIST_DIRS:
            if _find_idx(folder, split) is not None:
                return "idx", folder
        where = ", ".join(str(d) for d in FASHION_MNIST_DIRS)
        raise DataError(f"Fashion-MNIST {split} IDX files not found in {where}; {INSTALL_HINT}")
    folder = Path(spec).expanduser()
    if not folder.is_dir():
        raise DataError(f"data {spec!r} is neither {DEFAULT_SPEC!r} nor an existing folder; "
                        f"{INSTALL_HINT}")
    if _find_idx(folder, "train") is not None:
        return "idx", folder
    root = _image_folder_root(folder, split)
    if root is None:
        raise DataError(f"no {split} split in {folder} (looked for IDX files and "
                        f"{'/'.join(_SPLIT_DIRS[split])}/<class>/ image folders)")
    return "folder", root


@functools.cache
def _idx_cached(folder: Path, split: str, name: str) -> _Raw:
    return _load_idx(folder, split, name)


@functools.cache
def _folder_cached(root: Path, resolution: int, classes: tuple[str, ...] | None) -> _Raw:
    return _load_image_folder(root, resolution, classes)


def _raw(spec: str, split: str, resolution: int) -> _Raw:
    """Decoded uint8 split, cached per process (IDX at native size, ImageFolder resized)."""
    kind, where = _resolve(spec, split)
    if kind == "idx":
        name = DEFAULT_SPEC if spec.lower() in FASHION_MNIST_ALIASES else where.name
        return _idx_cached(where, split, name)
    classes = None if split == "train" else _raw(spec, "train", resolution).classes
    return _folder_cached(where, resolution, classes)


@functools.cache
def _norm_stats(spec: str, resolution: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-channel mean and std (in [0, 1] units) of the whole train split.

    Exact, from a 256-bin histogram per channel (no float copy of the images).
    """
    imgs = _raw(spec, "train", resolution).images
    levels = np.arange(256, dtype=np.float64) / 255.0
    mean, std = [], []
    for c in range(imgs.shape[1]):
        hist = np.bincount(imgs[:, c].ravel(), minlength=256).astype(np.float64)
        p = hist / hist.sum()
        m = float(p @ levels)
        mean.append(m)
        std.append(max(float(p @ (levels - m) ** 2), 1e-12) ** 0.5)
    return torch.tensor(mean, dtype=torch.float32), torch.tensor(std, dtype=torch.float32)


def _prepare(raw: _Raw, idx: np.ndarray | None, spec: str, resolution: int
             ) -> tuple[torch.Tensor, torch.Tensor]:
    """Select, resize, normalise; a grey split stays one stored channel, expanded to 3."""
    images = raw.images if idx is None else raw.images[idx]
    labels = raw.labels if idx is None else raw.labels[idx]
    mean, std = _norm_stats(spec, resolution)
    x = _resize(torch.from_numpy(images).float().div_(255.0), resolution)
    c = x.shape[1]
    x = x.sub_(mean.view(1, c, 1, 1)).div_(std.view(1, c, 1, 1))
    if c == 1:
        x = x.expand(-1, 3, -1, -1)  # a view: the grey channel replicated without copying
    elif c != 3:
        raise DataError(f"{raw.source}: images have {c} channels; 1 or 3 are supported")
    return x, torch.from_numpy(np.ascontiguousarray(labels))


def _check_resolution(resolution: int) -> None:
    if not isinstance(resolution, int) or resolution < 8:
        raise HwnasError(f"resolution must be an int >= 8, got {resolution!r}")


MIN_CLASSES = 2  # one class scores every net 1.0: the search would optimise latency alone
MIN_PER_CLASS = 2  # at least one image of each class can land on each side of the split


def _check_labels(raw: _Raw) -> None:
    """Labels in range, at least MIN_CLASSES classes with MIN_PER_CLASS images each."""
    labels = np.asarray(raw.labels)
    if labels.size and (labels.min() < 0 or labels.max() >= raw.num_classes):
        raise DataError(f"{raw.source}: labels must be in 0..{raw.num_classes - 1}, found "
                        f"{int(labels.min())}..{int(labels.max())}")
    counts = np.bincount(labels, minlength=raw.num_classes) if labels.size else np.zeros(0, int)
    present = int((counts > 0).sum())
    if present < MIN_CLASSES:
        raise DataError(f"{raw.source}: {present} class(es) with images; a classifier needs at "
                        f"least {MIN_CLASSES} (one sub-folder per class)")
    few = [raw.classes[i] if i < len(raw.classes) else str(i)
           for i in np.flatnonzero(counts < MIN_PER_CLASS)]
    if few:
        raise DataError(f"{raw.source}: class(es) {', '.join(few[:5])} have fewer than "
                        f"{MIN_PER_CLASS} images")


def load_dataset(spec: str = DEFAULT_SPEC, resolution: int = 32, val_size: int = 5000,
                 train_subset: int | None = None, seed: int = 0) -> Dataset:
    """Load the proxy task: a seeded validation split and training subset of the TRAIN split.

    One seeded permutation of the train split gives the validation images
    (the first ``val_size``) and the training subset (the next
    ``train_subset``, or all the rest); the two never overlap.

    Args:
        spec: ``"fashion-mnist"``, a folder of IDX files, or an ImageFolder folder.
        resolution: square side the images are resized to.
        val_size: images held out for validation.
        train_subset: training images kept (``None``: all that remain).
        seed: selects the split and the subset.

    Raises:
        DataError: data missing or malformed. ValueError: bad sizes.
    """
    _check_resolution(resolution)
    raw = _raw(str(spec), "train", resolution)
    _check_labels(raw)
    n = len(raw.labels)
    if not isinstance(val_size, int) or not 1 <= val_size < n:
        raise HwnasError(f"val_size must be an int in [1, {n - 1}] for {raw.name} "
                         f"({n} train images), got {val_size!r}")
    left = n - val_size
    if train_subset is not None and (not isinstance(train_subset, int)
                                     or not 1 <= train_subset <= left):
        raise HwnasError(f"train_subset must be an int in [1, {left}] (the {raw.name} train split "
                         f"minus {val_size} validation images) or None, got {train_subset!r}")
    perm = np.random.default_rng(seed).permutation(n)
    val_idx = np.sort(perm[:val_size])
    train_idx = np.sort(perm[val_size:val_size + (train_subset or left)])
    train_x, train_y = _prepare(raw, train_idx, str(spec), resolution)
    val_x, val_y = _prepare(raw, val_idx, str(spec), resolution)
    name = DEFAULT_SPEC if str(spec).lower() in FASHION_MNIST_ALIASES else _folder_name(spec)
    return Dataset(name, raw.source, raw.num_classes, resolution, train_x, train_y, val_x, val_y)


def _folder_name(spec: str | Path) -> str:
    return Path(spec).expanduser().resolve().name


def load_test_split(spec: str = DEFAULT_SPEC, resolution: int = 32
                    ) -> tuple[torch.Tensor, torch.Tensor]:
    """The test split, normalised like the train split. For benchmarks only, never for search."""
    _check_resolution(resolution)
    train = _raw(str(spec), "train", resolution)
    raw = _raw(str(spec), "test", resolution)
    if raw.num_classes > train.num_classes:
        raise DataError(f"{raw.source}: test labels go up to {raw.num_classes - 1}, the train "
                        f"split only to {train.num_classes - 1}")
    return _prepare(raw, None, str(spec), resolution)

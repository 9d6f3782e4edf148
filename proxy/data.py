"""Proxy-task data: Fashion-MNIST (default), a folder of IDX files, or an ImageFolder.

IDX images are decoded once per process (uint8, cached), resized to the proxy
resolution with :func:`torch.nn.functional.interpolate`, replicated to three
channels when grey and normalised with the per-channel mean and standard
deviation of the whole train split. A small ImageFolder is decoded the same
way (evaluation transform: resize and centre crop, :mod:`hwnas.proxy.imagefolder`);
one too large for memory streams through a DataLoader with workers and the
train augmentation (:mod:`hwnas.proxy.stream`). Unreadable images are skipped
and counted in one warning. The validation split is carved from the
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
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from hwnas.common.errors import HwnasError

from .errors import DataError
from .idx import find_idx as _find_idx
from .idx import load_idx, read_idx
from .imagefolder import IMAGE_SUFFIXES, DecodeError, Folder, class_dirs, decode, scan
from .split import SplitRecord

__all__ = ["DEFAULT_SPEC", "IMAGE_SUFFIXES", "DataError", "Dataset", "load_dataset",
           "load_test_split", "read_idx"]

DEFAULT_SPEC = "fashion-mnist"
FASHION_MNIST_ALIASES = ("fashion-mnist", "fashion_mnist", "fashionmnist")
# Where Debian's dataset-fashion-mnist package puts the IDX files.
FASHION_MNIST_DIRS: tuple[Path, ...] = (Path("/usr/share/datasets/fashion-mnist"),)
INSTALL_HINT = ("install it with `apt-get install dataset-fashion-mnist`, or name a folder of "
                "IDX files or of class sub-folders instead")

# ImageFolder layouts with separate splits: root/train/<class>/... and root/test/<class>/...
_SPLIT_DIRS = {"train": ("train",), "test": ("test", "val")}


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
    # The split as a run folder records it (see split_manifest); None for hand-made sets.
    manifest: SplitRecord | None = field(default=None, repr=False)

    def split_manifest(self) -> dict:
        """The train/held-out split: which images (relative paths and labels, or IDX indices),
        with the seed and sizes that chose them; JSON-ready. Save it with
        :func:`hwnas.proxy.split.save_split_manifest`.

        Raises:
            HwnasError: the data set was built by hand, not by :func:`load_dataset`.
        """
        if self.manifest is None:
            raise HwnasError(f"{self.name}: no split manifest (built by hand, not by load_dataset)")
        return self.manifest.as_dict()

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
    paths: tuple[str, ...] = ()  # per image, relative to source (ImageFolder only)


# ---------------------------------------------------------------------- ImageFolder


def _load_image_folder(folder: Folder, resolution: int) -> _Raw:
    """Decode every image of ``folder`` (evaluation transform); unreadable ones are skipped."""
    images, keep, bad = [], [], []
    for i, rel in enumerate(folder.paths):
        try:
            images.append(torch.from_numpy(decode(folder.root / rel, resolution, train=False)))
            keep.append(i)
        except DecodeError:
            bad.append(rel)
    if bad:
        warnings.warn(f"{folder.root}: skipped {len(bad)} unreadable image(s) of "
                      f"{len(folder.paths)} (first {bad[0]}); they are left out", stacklevel=4)
    x = torch.stack(images).permute(0, 3, 1, 2).contiguous().numpy()
    return _Raw(folder.root.name, str(folder.root), x, folder.labels[keep], len(folder.classes),
                folder.classes, tuple(folder.paths[i] for i in keep))


def _image_folder_root(folder: Path, split: str) -> Path | None:
    """``folder/train`` (or test/val) when the folder holds splits, else ``folder`` for train."""
    for sub in _SPLIT_DIRS[split]:
        if (folder / sub).is_dir() and class_dirs(folder / sub):
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
    hint = INSTALL_HINT if name == DEFAULT_SPEC else "name a folder of IDX files or of class sub-folders"
    images, labels = load_idx(folder, split, hint)
    return _Raw(name, str(folder), images, labels, int(labels.max()) + 1)


@functools.cache
def _scan_cached(root: Path, classes: tuple[str, ...] | None) -> Folder:
    return scan(root, classes)


@functools.cache
def _folder_cached(root: Path, resolution: int, classes: tuple[str, ...] | None) -> _Raw:
    return _load_image_folder(_scan_cached(root, classes), resolution)


def _folder(spec: str, split: str) -> Folder | None:
    """The scanned ImageFolder of ``split`` (None for IDX data)."""
    kind, where = _resolve(spec, split)
    if kind == "idx":
        return None
    classes = None if split == "train" else _folder(spec, "train").classes
    return _scan_cached(where, classes)


def _raw(spec: str, split: str, resolution: int) -> _Raw:
    """Decoded uint8 split, cached per process (IDX at native size, ImageFolder resized)."""
    kind, where = _resolve(spec, split)
    if kind == "idx":
        name = DEFAULT_SPEC if spec.lower() in FASHION_MNIST_ALIASES else where.name
        return _idx_cached(where, split, name)
    classes = None if split == "train" else _folder(spec, "train").classes
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


def _check_labels(source: str, labels: np.ndarray, num_classes: int,
                  classes: tuple[str, ...]) -> None:
    """Labels in range, at least MIN_CLASSES classes with MIN_PER_CLASS images each."""
    labels = np.asarray(labels)
    if labels.size and (labels.min() < 0 or labels.max() >= num_classes):
        raise DataError(f"{source}: labels must be in 0..{num_classes - 1}, found "
                        f"{int(labels.min())}..{int(labels.max())}")
    counts = np.bincount(labels, minlength=num_classes) if labels.size else np.zeros(0, int)
    present = int((counts > 0).sum())
    if present < MIN_CLASSES:
        raise DataError(f"{source}: {present} class(es) with images; a classifier needs at "
                        f"least {MIN_CLASSES} (one sub-folder per class)")
    few = [classes[i] if i < len(classes) else str(i) for i in np.flatnonzero(counts < MIN_PER_CLASS)]
    if few:
        raise DataError(f"{source}: class(es) {', '.join(few[:5])} have fewer than "
                        f"{MIN_PER_CLASS} images")


def load_dataset(spec: str = DEFAULT_SPEC, resolution: int = 32, val_size: int = 5000,
                 train_subset: int | None = None, seed: int = 0, stream: bool | None = None,
                 workers: int = 2) -> Dataset:
    """Load the proxy task: a seeded validation split and training subset of the TRAIN split.

    One seeded permutation of the train split gives the validation images
    (the first ``val_size``) and the training subset (the next
    ``train_subset``, or all the rest); the two never overlap.
    ``data.split_manifest()`` records them.

    Args:
        spec: ``"fashion-mnist"``, a folder of IDX files, or an ImageFolder folder.
        resolution: square side the images are resized to.
        val_size: images held out for validation.
        train_subset: training images kept (``None``: all that remain).
        seed: selects the split and the subset.
        stream: ImageFolder only. ``None``: stream (a :class:`~hwnas.proxy.stream.StreamingDataset`,
            decoded on the fly, train augmentation) when the decoded folder would exceed
            ``hwnas.proxy.stream.IN_MEMORY_BYTES``, else hold it in memory; True/False force it.
        workers: DataLoader worker processes of a streaming data set.

    Raises:
        DataError: data missing or malformed. HwnasError: bad sizes.
    """
    from .stream import IN_MEMORY_BYTES, in_memory_bytes, streaming_dataset

    _check_resolution(resolution)
    spec = str(spec)
    if not isinstance(workers, int) or workers < 0:
        raise HwnasError(f"workers must be an int >= 0, got {workers!r}")
    folder = _folder(spec, "train")
    if folder is None and stream:
        raise HwnasError(f"stream=True needs an ImageFolder; {spec!r} is IDX data (held in memory)")
    if folder is not None and stream is None:
        stream = in_memory_bytes(len(folder.paths), resolution) > IN_MEMORY_BYTES
    if stream:
        labels, source, ncls, classes = folder.labels, str(folder.root), len(folder.classes), folder.classes
        paths = folder.paths
    else:
        raw = _raw(spec, "train", resolution)
        labels, source, ncls, classes, paths = raw.labels, raw.source, raw.num_classes, raw.classes, raw.paths
    _check_labels(source, labels, ncls, classes)
    n = len(labels)
    name = DEFAULT_SPEC if spec.lower() in FASHION_MNIST_ALIASES else _folder_name(spec)
    if not isinstance(val_size, int) or not 1 <= val_size < n:
        raise HwnasError(f"val_size must be an int in [1, {n - 1}] for {name} "
                         f"({n} train images), got {val_size!r}")
    left = n - val_size
    if train_subset is not None and (not isinstance(train_subset, int)
                                     or not 1 <= train_subset <= left):
        raise HwnasError(f"train_subset must be an int in [1, {left}] (the {name} train split "
                         f"minus {val_size} validation images) or None, got {train_subset!r}")
    perm = np.random.default_rng(seed).permutation(n)
    val_idx = np.sort(perm[:val_size])
    train_idx = np.sort(perm[val_size:val_size + (train_subset or left)])
    record = SplitRecord(name, "idx" if folder is None else "imagefolder", source, seed, val_size,
                         train_subset, train_idx, val_idx, classes, paths,
                         None if folder is None else np.asarray(labels))
    if stream:
        return streaming_dataset(folder, name, train_idx, val_idx, resolution, workers, record)
    train_x, train_y = _prepare(raw, train_idx, spec, resolution)
    val_x, val_y = _prepare(raw, val_idx, spec, resolution)
    return Dataset(name, raw.source, raw.num_classes, resolution, train_x, train_y, val_x, val_y,
                   record)


def _folder_name(spec: str | Path) -> str:
    return Path(spec).expanduser().resolve().name


def load_test_split(spec: str = DEFAULT_SPEC, resolution: int = 32, stream: bool | None = None,
                    workers: int = 2) -> tuple[torch.Tensor, torch.Tensor]:
    """The test split, normalised like the train split. For benchmarks only, never for search.

    An ImageFolder test split too large for memory (or ``stream=True``) comes back as
    an :class:`~hwnas.proxy.stream.ImageView`, which :func:`hwnas.proxy.train.evaluate` reads.
    """
    from .stream import IN_MEMORY_BYTES, in_memory_bytes, test_view

    _check_resolution(resolution)
    spec = str(spec)
    test = _folder(spec, "test")
    train_folder = _folder(spec, "train")
    if test is not None and stream is None:  # normalised by the train split: stream like it
        stream = in_memory_bytes(len(train_folder.paths), resolution) > IN_MEMORY_BYTES
    if test is not None and stream:
        return test_view(train_folder, test, resolution, workers)
    train = _raw(spec, "train", resolution)
    raw = _raw(spec, "test", resolution)
    if raw.num_classes > train.num_classes:
        raise DataError(f"{raw.source}: test labels go up to {raw.num_classes - 1}, the train "
                        f"split only to {train.num_classes - 1}")
    return _prepare(raw, None, spec, resolution)

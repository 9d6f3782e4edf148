"""ImageFolder trees: scanning, the standard transforms, and a torch Dataset that decodes.

A tree is ``root/<class>/**/<image>``; the class of an image is its top
sub-folder, classes are the sorted sub-folder names (hidden ones ignored).
Decoding uses PIL only (torchvision cannot be installed here); the transforms
are the standard ImageNet ones at the proxy resolution ``R``:

- train: Inception-style random-resized crop (area 8-100%, aspect 3/4-4/3;
  Szegedy et al. 2015, torchvision's ``RandomResizedCrop`` defaults) to R x R,
  then a horizontal flip with probability 1/2;
- evaluation: resize the shorter side to R / 0.875 and centre-crop R x R
  (timm's and torchvision's ImageNet evaluation, crop_pct 0.875).

Both are one PIL ``resize`` with a ``box`` (crop and resize in one antialiased
step); JPEGs are decoded at 1/2, 1/4 or 1/8 scale (libjpeg's DCT scaling,
``Image.draft``) when the crop still has at least R pixels per side.

Images leave the workers as uint8 (N, 3, R, R) tensors in channels-last
layout: a quarter of the bytes of float32; normalisation happens on the
training device. An unreadable image gives ``None`` and is counted, never an
exception inside a worker.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from .errors import DataError

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff", ".ppm", ".pgm")
# Evaluation: resize to R / EVAL_CROP_PCT, centre-crop R (timm's default crop_pct for ImageNet).
EVAL_CROP_PCT = 0.875
# Random-resized crop: area fraction and aspect ratio ranges (torchvision RandomResizedCrop
# defaults, after Szegedy et al. 2015, "Going deeper with convolutions").
RRC_SCALE = (0.08, 1.0)
RRC_RATIO = (3 / 4, 4 / 3)
RRC_ATTEMPTS = 10  # tries before falling back to a centre crop (torchvision's value)
FLIP_P = 0.5


@dataclass(frozen=True, eq=False)
class Folder:
    """The images of one ImageFolder tree: paths relative to ``root`` and their labels."""

    root: Path
    classes: tuple[str, ...]
    paths: tuple[str, ...]
    labels: np.ndarray  # int64, one per path


def class_dirs(folder: Path) -> list[Path]:
    return sorted(d for d in folder.iterdir() if d.is_dir() and not d.name.startswith("."))


def _files_in(folder: Path) -> list[str]:
    """Image files under ``folder`` (recursively), sorted, relative to ``folder``."""
    out = []
    for dirpath, dirnames, filenames in os.walk(folder):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        rel = os.path.relpath(dirpath, folder)
        for f in filenames:
            if f.lower().endswith(IMAGE_SUFFIXES) and not f.startswith("."):
                out.append(f if rel == "." else os.path.join(rel, f))
    return sorted(out)


def scan(folder: Path, classes: tuple[str, ...] | None = None) -> Folder:
    """List ``folder/<class>/**`` images; check each class has at least one readable image.

    ``classes`` (a train split's class names) fixes the labels of a test split;
    ``None`` takes the sorted sub-folders. Checking readability decodes images of
    each class in order until one succeeds (normally one image per class).

    Raises:
        DataError: no class sub-folders with images; a class folder without a
            readable image; a test class unknown to the train split.
    """
    dirs = class_dirs(folder)
    files = {d.name: _files_in(d) for d in dirs}
    if not any(files.values()):
        raise DataError(f"no class sub-folders with images ({', '.join(IMAGE_SUFFIXES[:3])}, ...) "
                        f"in {folder}; name a folder of IDX files or with one sub-folder per class")
    names = tuple(d.name for d in dirs) if classes is None else classes
    unknown = [d.name for d in dirs if d.name not in names]
    if unknown:
        raise DataError(f"{folder}: class folders {unknown} are not train classes {list(names)}")
    paths: list[str] = []
    labels: list[int] = []
    for d in dirs:
        _check_class(d, files[d.name])
        paths += [f"{d.name}/{f}" for f in files[d.name]]
        labels += [names.index(d.name)] * len(files[d.name])
    return Folder(folder, names, tuple(paths), np.asarray(labels, np.int64))


def _check_class(d: Path, files: list[str]) -> None:
    first_error = None
    for f in files:
        try:
            decode(d / f, 8, train=False)
            return
        except DecodeError as e:
            first_error = first_error or f"{f}: {e}"
    what = (f"cannot decode any of its {len(files)} image file(s) (first {first_error})" if files
            else f"it holds no {', '.join(IMAGE_SUFFIXES[:3])}, ... files")
    raise DataError(f"class folder {d} has no readable image: {what}; remove the folder or add images")


class DecodeError(Exception):
    """One image could not be read (the caller skips it)."""


def eval_box(w: int, h: int) -> tuple[float, float, float, float]:
    """The centre square that "resize shorter side to R/0.875, crop R" keeps, in source pixels."""
    side = min(w, h) * EVAL_CROP_PCT
    left, top = (w - side) / 2, (h - side) / 2
    return left, top, left + side, top + side


def rrc_box(w: int, h: int, gen: torch.Generator | None = None) -> tuple[float, float, float, float]:
    """A random-resized-crop box (torchvision's sampling: log-uniform aspect, uniform area)."""
    area = w * h
    log_lo, log_hi = math.log(RRC_RATIO[0]), math.log(RRC_RATIO[1])
    for _ in range(RRC_ATTEMPTS):
        u = torch.rand(4, generator=gen).tolist()
        target = area * (RRC_SCALE[0] + u[0] * (RRC_SCALE[1] - RRC_SCALE[0]))
        ratio = math.exp(log_lo + u[1] * (log_hi - log_lo))
        cw, ch = round(math.sqrt(target * ratio)), round(math.sqrt(target / ratio))
        if 0 < cw <= w and 0 < ch <= h:
            left, top = int(u[2] * (w - cw + 1)), int(u[3] * (h - ch + 1))
            return left, top, left + cw, top + ch
    ratio = min(max(w / h, RRC_RATIO[0]), RRC_RATIO[1])  # fallback: centre crop, ratio clamped
    cw, ch = (w, round(w / ratio)) if w / h < ratio else (round(h * ratio), h)
    left, top = (w - cw) / 2, (h - ch) / 2
    return left, top, left + cw, top + ch


def decode(path: Path | str, resolution: int, train: bool,
           gen: torch.Generator | None = None) -> np.ndarray:
    """One image as uint8 (R, R, 3): the train or the evaluation transform.

    Raises:
        DecodeError: the file cannot be opened or decoded.
    """
    from PIL import Image

    try:
        with Image.open(path) as im:
            w, h = im.size
            box = rrc_box(w, h, gen) if train else eval_box(w, h)
            reduce = min(box[2] - box[0], box[3] - box[1]) / resolution
            if im.format == "JPEG" and reduce >= 2:
                im.draft("RGB", (math.ceil(w / reduce), math.ceil(h / reduce)))
                sx, sy = im.size[0] / w, im.size[1] / h
                box = (box[0] * sx, box[1] * sy, min(box[2] * sx, im.size[0]),
                       min(box[3] * sy, im.size[1]))
            out = im.convert("RGB").resize((resolution, resolution), Image.Resampling.BILINEAR,
                                           box=box)
        if train and float(torch.rand(1, generator=gen)) < FLIP_P:
            out = out.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
        return np.array(out, dtype=np.uint8)  # a writable copy (torch.from_numpy needs one)
    except Exception as e:  # noqa: BLE001 - PIL raises many types for a bad file; all mean "skip"
        raise DecodeError(f"{type(e).__name__}: {e}".replace("\n", " ")[:160]) from None


class FolderImages(torch.utils.data.Dataset):
    """Items ``(image uint8 (R, R, 3) or None, label, position)`` of a list of files."""

    def __init__(self, root: Path, paths: list[str], labels: np.ndarray, resolution: int,
                 train: bool) -> None:
        self.root, self.paths, self.labels = root, paths, labels
        self.resolution, self.train = resolution, train

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int) -> tuple[np.ndarray | None, int, int]:
        try:
            img = decode(self.root / self.paths[i], self.resolution, self.train)
        except DecodeError:
            img = None
        return img, int(self.labels[i]), i


def collate(items: list[tuple[np.ndarray | None, int, int]]
            ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, list[int]]:
    """(uint8 images (B, 3, R, R) channels-last, labels, positions, positions unreadable)."""
    good = [it for it in items if it[0] is not None]
    bad = [it[2] for it in items if it[0] is None]
    if good:
        x = torch.from_numpy(np.stack([it[0] for it in good])).permute(0, 3, 1, 2)
    else:
        x = torch.zeros((0, 3, 1, 1), dtype=torch.uint8)
    y = torch.tensor([it[1] for it in good], dtype=torch.int64)
    pos = torch.tensor([it[2] for it in good], dtype=torch.int64)
    return x, y, pos, bad


def worker_init(_: int) -> None:
    """One intra-op thread per loader worker: decoding is PIL's, parallel across workers."""
    torch.set_num_threads(1)

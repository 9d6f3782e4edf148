"""Streaming ImageFolder data: decoded on the fly by DataLoader workers, memory bounded.

:func:`hwnas.proxy.data.load_dataset` returns a :class:`StreamingDataset` for an
ImageFolder whose decoded tensors would not fit :data:`IN_MEMORY_BYTES` (or
when asked with ``stream=True``). It is a :class:`~hwnas.proxy.data.Dataset`
whose ``train_x`` and ``val_x`` are :class:`ImageView` s: indexing one decodes
just those images (evaluation transform, normalised), so code written for
tensors (``data.train_x[idx]``, ``data.val_x[:n]``) keeps working; the trainer
reads them in batches through a ``DataLoader`` with workers, and trains on the
train transform (random-resized crop and flip, :mod:`hwnas.proxy.imagefolder`).

Memory: the file list and labels (~100 bytes per image) plus a few batches in
flight per worker; no image is kept after its batch.
"""

from __future__ import annotations

import functools
import multiprocessing as mp
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from .data import Dataset
from .errors import DataError
from .imagefolder import Folder, FolderImages, collate, worker_init

# Decoded ImageFolders above this many bytes stream instead of living in memory. The
# in-memory path holds the whole folder as uint8 at the proxy resolution plus the selected
# images as float32 (5 bytes per pixel-channel): 256 MiB is ~17,000 images at 32 px and
# ~350 at 224 px, small next to a laptop's RAM even with two trial processes, and below it
# the folder decodes in seconds (serially), after which every epoch is free of decoding.
IN_MEMORY_BYTES = 256 * 2**20
# DataLoader worker processes (the setting; this machine has 2 cores).
DEFAULT_WORKERS = 2
# Normalisation statistics come from this many train images (evaluation transform, a fixed
# seeded sample): the exact mean over 1.28 M ImageNet images would cost a full pass.
NORM_SAMPLE = 512
# Batches each worker decodes ahead (DataLoader's default prefetch factor).
PREFETCH = 2


def in_memory_bytes(n_images: int, resolution: int) -> int:
    """Bytes the in-memory path needs for ``n_images`` at ``resolution`` (uint8 + float32)."""
    return n_images * 3 * resolution * resolution * 5


def loader_workers(requested: int) -> int:
    """``requested``, or 0 inside a daemonic process (which may not start children)."""
    return 0 if mp.current_process().daemon else requested


@dataclass(eq=False)
class _Skips:
    """Unreadable images seen by this process, and how many have been reported."""

    root: Path
    paths: Sequence[str]
    bad: set[str] = field(default_factory=set)
    reported: int = 0

    def add(self, rels: list[str]) -> None:
        self.bad.update(rels)

    def report(self) -> None:
        """One warning when images were skipped since the last one (so once per file)."""
        if len(self.bad) > self.reported:
            first = sorted(self.bad)[0]
            warnings.warn(f"{self.root}: skipped {len(self.bad)} unreadable image(s) of "
                          f"{len(self.paths)} (first {first}); they are left out", stacklevel=3)
            self.reported = len(self.bad)


class ImageView:
    """Images of one split, decoded on demand with the evaluation transform and normalised.

    ``view[i]``, ``view[a:b]``, ``view[index_tensor]`` return float32 tensors
    ``(k, 3, R, R)`` like the in-memory ``Dataset.train_x``; an unreadable image
    comes back as zeros (the mean) and is counted. :meth:`batches` streams through
    a ``DataLoader`` and leaves unreadable images out.
    """

    def __init__(self, root: Path, paths: list[str], labels: np.ndarray, resolution: int,
                 mean: torch.Tensor, std: torch.Tensor, workers: int, skips: _Skips) -> None:
        self.root, self.paths, self.labels = root, paths, labels
        self.resolution, self.mean, self.std = resolution, mean, std
        self.workers, self.skips = workers, skips

    def __len__(self) -> int:
        return len(self.paths)

    @property
    def shape(self) -> tuple[int, int, int, int]:
        return (len(self.paths), 3, self.resolution, self.resolution)

    def __repr__(self) -> str:
        return f"ImageView({self.root}, images={len(self)}, resolution={self.resolution})"

    def normalize(self, x: torch.Tensor) -> torch.Tensor:
        """uint8 (N, 3, R, R) -> float32, normalised, on x's device, memory format kept."""
        mean = self.mean.to(x.device).view(1, 3, 1, 1)
        std = self.std.to(x.device).view(1, 3, 1, 1)
        return x.float().div_(255.0).sub_(mean).div_(std)

    def __getitem__(self, key: int | slice | Sequence[int] | torch.Tensor | np.ndarray
                    ) -> torch.Tensor:
        pos = np.arange(len(self))[key]
        single = pos.ndim == 0
        pos = np.atleast_1d(pos)
        uniq, inverse = np.unique(pos, return_inverse=True)  # each image decoded once
        buf = torch.zeros((len(uniq), 3, self.resolution, self.resolution))
        for x, _, got, _ in self._loader(uniq, batch_size=256, pin=False):
            buf[torch.from_numpy(np.searchsorted(uniq, got.numpy()))] = self.normalize(x)
        out = buf[torch.from_numpy(inverse)]
        self.skips.report()
        return out[0] if single else out

    def to(self, device: torch.device | str) -> torch.Tensor:
        """All images as one tensor on ``device`` (refused when over IN_MEMORY_BYTES)."""
        need = in_memory_bytes(len(self), self.resolution)
        if need > IN_MEMORY_BYTES:
            raise DataError(f"{self.root}: {len(self)} images at {self.resolution} px need "
                            f"{need / 2**20:.0f} MiB in memory, over the {IN_MEMORY_BYTES // 2**20} "
                            f"MiB limit; use fewer images (a train subset) or the streaming loader")
        return self[:].to(device)

    def _loader(self, positions: np.ndarray, batch_size: int, pin: bool, train: bool = False,
                generator: torch.Generator | None = None) -> Iterator:
        """Yield (uint8 x, y, positions, unreadable positions) in the order of ``positions``."""
        images = FolderImages(self.root, self.paths, self.labels, self.resolution, train)
        workers = loader_workers(self.workers) if len(positions) > batch_size else 0
        loader = torch.utils.data.DataLoader(
            images, batch_size=batch_size, sampler=[int(p) for p in positions], drop_last=train,
            num_workers=workers, collate_fn=collate, pin_memory=pin, worker_init_fn=worker_init,
            prefetch_factor=PREFETCH if workers else None, generator=generator)
        for x, y, pos, bad in loader:
            self.skips.add([self.paths[i] for i in bad])
            yield x, y, pos, bad

    def batches(self, batch_size: int, device: torch.device, positions: Sequence[int] | None = None,
                train: bool = False, generator: torch.Generator | None = None
                ) -> Iterator[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
        """(normalised channels-last images, labels, positions) on ``device``, batch by batch.

        ``train=True`` applies the train transform and drops the last partial batch.
        Memory is pinned on CUDA so the copies overlap compute.
        """
        pos = np.arange(len(self)) if positions is None else np.asarray(positions)
        cuda = device.type == "cuda"
        try:
            for x, y, p, _ in self._loader(pos, batch_size, cuda, train, generator):
                if len(y) == 0:
                    continue
                x = x.to(device, non_blocking=cuda)
                yield (self.normalize(x).contiguous(memory_format=torch.channels_last),
                       y.to(device, non_blocking=cuda), p)
        finally:
            self.skips.report()


@dataclass(frozen=True, eq=False)
class StreamingDataset(Dataset):
    """A :class:`Dataset` whose images stay on disk (``train_x``/``val_x`` are ImageViews)."""

    workers: int = DEFAULT_WORKERS

    @property
    def skipped(self) -> list[str]:
        """Relative paths of the unreadable images met so far in this process."""
        return sorted(self.train_x.skips.bad)

    def train_batches(self, order: torch.Tensor, batch_size: int, device: torch.device,
                      generator: torch.Generator | None = None
                      ) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """One epoch of augmented (x, y) batches on ``device`` in ``order`` (partial batch dropped)."""
        for x, y, _ in self.train_x.batches(batch_size, device, order.tolist(), train=True,
                                            generator=generator):
            yield x, y

    def __repr__(self) -> str:
        return "Streaming" + super().__repr__()


@functools.cache
def norm_stats(root: Path, paths: tuple[str, ...], resolution: int, workers: int
               ) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-channel mean and std (in [0, 1] units) of NORM_SAMPLE seeded train images."""
    pick = np.sort(np.random.default_rng(0).permutation(len(paths))[:NORM_SAMPLE])
    skips = _Skips(root, paths)
    view = ImageView(root, list(paths), np.zeros(len(paths), np.int64), resolution,
                     torch.zeros(3), torch.full((3,), 255.0), workers, skips)  # x / 255 / 255
    total, sq, count = torch.zeros(3, dtype=torch.float64), torch.zeros(3, dtype=torch.float64), 0
    for x, _, _, _ in view._loader(pick, batch_size=128, pin=False):
        v = x.double().div(255.0)
        total += v.sum((0, 2, 3))
        sq += v.square().sum((0, 2, 3))
        count += v.shape[0] * v.shape[2] * v.shape[3]
    if count == 0:
        raise DataError(f"{root}: none of {len(pick)} sampled train images could be decoded")
    mean = total / count
    std = (sq / count - mean.square()).clamp_min(1e-12).sqrt()
    return mean.float(), std.float()


def streaming_dataset(folder: Folder, name: str, train_idx: np.ndarray, val_idx: np.ndarray,
                      resolution: int, workers: int, manifest: dict) -> StreamingDataset:
    """The streaming dataset of ``folder``'s images at ``train_idx`` and ``val_idx``."""
    mean, std = norm_stats(folder.root, folder.paths, resolution, workers)
    skips = _Skips(folder.root, folder.paths)

    def view(idx: np.ndarray) -> ImageView:
        return ImageView(folder.root, [folder.paths[i] for i in idx], folder.labels[idx],
                         resolution, mean, std, workers, skips)

    return StreamingDataset(name, str(folder.root), len(folder.classes), resolution,
                            view(train_idx), torch.from_numpy(folder.labels[train_idx]),
                            view(val_idx), torch.from_numpy(folder.labels[val_idx]),
                            manifest, workers)


def test_view(train: Folder, test: Folder, resolution: int, workers: int
              ) -> tuple[ImageView, torch.Tensor]:
    """The test split of an ImageFolder as an ImageView (normalised with train statistics)."""
    mean, std = norm_stats(train.root, train.paths, resolution, workers)
    view = ImageView(test.root, list(test.paths), test.labels, resolution, mean, std, workers,
                     _Skips(test.root, test.paths))
    return view, torch.from_numpy(test.labels)

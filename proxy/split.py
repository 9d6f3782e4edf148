"""The train/held-out split as a run folder records it (``split.json``).

:func:`hwnas.proxy.data.load_dataset` draws the split with one seeded
permutation; the record lists the images on each side — relative paths and
labels for an ImageFolder, indices into the train split for IDX data — with
the seed and sizes that chose them, so a run can be audited or re-created
without trusting that the folder (or NumPy's generator) never changed.

>>> save_split_manifest(data, run_dir)  # doctest: +SKIP
PosixPath('.../split.json')
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from hwnas.common.atomic import atomic_write_text

from .errors import DataError

SPLIT_FORMAT_VERSION = 1
SPLIT_FILE = "split.json"


@dataclass(frozen=True, eq=False)
class SplitRecord:
    """A split kept compact (index arrays) until :meth:`as_dict` builds the JSON form."""

    name: str
    kind: str  # "imagefolder" or "idx"
    source: str
    seed: int
    val_size: int
    train_subset: int | None
    train_idx: np.ndarray
    val_idx: np.ndarray
    classes: tuple[str, ...] = ()
    paths: tuple[str, ...] = ()  # ImageFolder: every image of the train split, relative
    labels: np.ndarray | None = None

    def _side(self, idx: np.ndarray) -> list[Any]:
        if self.kind == "idx":
            return idx.tolist()
        labels = self.labels.tolist() if self.labels is not None else []
        return [[self.paths[i], labels[i]] for i in idx.tolist()]

    def as_dict(self) -> dict[str, Any]:
        return {"format_version": SPLIT_FORMAT_VERSION, "data": self.name, "kind": self.kind,
                "source": self.source, "seed": self.seed, "val_size": self.val_size,
                "train_subset": self.train_subset, "classes": list(self.classes),
                "train": self._side(self.train_idx), "val": self._side(self.val_idx)}


def save_split_manifest(data: Any, path: str | Path) -> Path:
    """Write ``data.split_manifest()`` as JSON to ``path`` (a folder gets ``split.json``)."""
    path = Path(path)
    if path.is_dir():
        path = path / SPLIT_FILE
    return atomic_write_text(path, json.dumps(data.split_manifest(), separators=(",", ":")))


def load_split_manifest(path: str | Path) -> dict[str, Any]:
    """Read a saved split (a file or a run folder holding ``split.json``).

    Raises:
        DataError: missing, not JSON, or a format version this code does not read.
    """
    path = Path(path)
    if path.is_dir():
        path = path / SPLIT_FILE
    try:
        record = json.loads(path.read_text())
    except (OSError, ValueError) as e:
        raise DataError(f"{path}: cannot read the split manifest ({e})") from None
    version = record.get("format_version") if isinstance(record, dict) else None
    if version != SPLIT_FORMAT_VERSION:
        raise DataError(f"{path}: split manifest format_version {version!r}; this version of "
                        f"hwnas reads {SPLIT_FORMAT_VERSION}")
    return record

"""IDX files (the MNIST/Fashion-MNIST format).

Source: LeCun et al., http://yann.lecun.com/exdb/mnist/ ("FILE FORMATS").
"""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np

from .errors import DataError

# Standard IDX file names (the MNIST/Fashion-MNIST distributions; some copies use
# "train-images.idx3-ubyte"), optionally gzipped.
_IDX_FILES = {
    "train": ("train-images{}idx3-ubyte", "train-labels{}idx1-ubyte"),
    "test": ("t10k-images{}idx3-ubyte", "t10k-labels{}idx1-ubyte"),
}
# IDX type codes (third byte of the magic number), big-endian as the format says.
_IDX_DTYPES = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


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


def find_idx(folder: Path, split: str) -> tuple[Path, Path] | None:
    found = []
    for pattern in _IDX_FILES[split]:
        names = [pattern.format(sep) + gz for sep in ("-", ".") for gz in (".gz", "")]
        hit = next((folder / n for n in names if (folder / n).is_file()), None)
        if hit is None:
            return None
        found.append(hit)
    return found[0], found[1]


def load_idx(folder: Path, split: str, hint: str) -> tuple[np.ndarray, np.ndarray]:
    """uint8 images (N, C, H, W) and int64 labels of ``split`` in ``folder``."""
    files = find_idx(folder, split)
    if files is None:
        want = _IDX_FILES[split][0].format("-")
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
    return np.ascontiguousarray(images), labels.astype(np.int64)

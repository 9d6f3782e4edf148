"""The one atomic writer: every file hwnas leaves behind goes through here.

A write goes to a temporary file in the destination's folder
(``.NAME.XXXX.tmp``), is flushed and ``fsync``'ed, then renamed over the
destination with :func:`os.replace`. A reader therefore sees the old file or
the new one, never half of one, and an interrupted write leaves at most a
hidden temporary file that the next write's rename does not depend on.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

TMP_SUFFIX = ".tmp"


def atomic_write(path: str | os.PathLike, write: Callable[[IO[bytes]], Any]) -> Path:
    """Call ``write(f)`` on a binary temporary file, then move it to ``path``; return ``path``."""
    dest = Path(path)
    fd, tmp = tempfile.mkstemp(dir=dest.parent, prefix=f".{dest.name}.", suffix=TMP_SUFFIX)
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, dest)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return dest


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    return atomic_write(path, lambda f: f.write(data))


def atomic_write_text(path: str | os.PathLike, text: str) -> Path:
    return atomic_write(path, lambda f: f.write(text.encode()))


def atomic_write_df(df: Any, path: str | os.PathLike) -> Path:
    """A pandas DataFrame as parquet (``.parquet``) or CSV (any other suffix), without the index."""
    if Path(path).suffix == ".parquet":
        return atomic_write(path, lambda f: df.to_parquet(f, index=False))
    return atomic_write(path, lambda f: f.write(df.to_csv(index=False).encode()))


def atomic_save_state_dict(state: dict, path: str | os.PathLike) -> Path:
    """A torch state dict (``torch.save``; read it back with ``weights_only=True``)."""
    import torch

    return atomic_write(path, lambda f: torch.save(state, f))


def atomic_save_figure(fig: Any, path: str | os.PathLike, dpi: int = 120) -> Path:
    """A matplotlib figure in the format its suffix names (``.png``, ``.pdf``, ...)."""
    fmt = Path(path).suffix.lstrip(".") or "png"
    return atomic_write(path, lambda f: fig.savefig(f, format=fmt, dpi=dpi))


def atomic_copy(src: str | os.PathLike, path: str | os.PathLike) -> Path:
    """A copy of the file ``src``."""

    def copy(f: IO[bytes]) -> None:
        with open(src, "rb") as s:
            shutil.copyfileobj(s, f)

    return atomic_write(path, copy)

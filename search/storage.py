"""Checks of a run folder and its Optuna storage before anything is written.

* ``--out`` must be a folder this process can write (not a file, not read-only);
* a resumed run's ``config.yaml`` that cannot be read is named, with what to do;

* a resumed run's SQLite ``study.db`` is opened read-only and checked, so a
  truncated or overwritten file is named in one line (start a new ``--out``)
  instead of failing deep inside SQLAlchemy;
* a search on a Ray cluster (``--ray-address``) needs a storage every node can
  reach: PostgreSQL (or any server URL), or a SQLite file proven to be on a
  file system all nodes share (each node reads a token the driver wrote next
  to it). The default SQLite file in the run folder is refused.
"""

from __future__ import annotations

import os
import sqlite3
import uuid
from contextlib import closing
from pathlib import Path
from typing import TYPE_CHECKING

from hwnas.common.errors import ConfigError, HwnasError
from hwnas.common.units import shorten

if TYPE_CHECKING:
    from .config import SearchConfig

STUDY_FILE = "study.db"
SHARED_TOKEN = ".hwnas-shared-{}"  # written beside a SQLite file, read by every node, removed


class StorageError(HwnasError):
    """The run's storage is damaged or cannot serve the run: one line."""


def check_sqlite_study(db: Path, name: str) -> None:
    """Raise :class:`StorageError` unless ``db`` (when present) is a sound Optuna
    SQLite file holding study ``name``. Opens it read-only: nothing is written."""
    if not db.exists():
        return
    what = (f"{shorten(str(db))} is damaged or not an Optuna study"
            if db.stat().st_size else f"{shorten(str(db))} is empty")
    fix = "start a new --out (the finished trials, if any, are in trials.csv)"
    try:
        with closing(sqlite3.connect(f"file:{db.resolve()}?mode=ro", uri=True, timeout=5)) as con:
            ok = con.execute("PRAGMA quick_check").fetchone()[0]
            if ok != "ok":
                raise StorageError(f"{what} (sqlite: {shorten(ok, 80)}): {fix}")
            names = {r[0] for r in con.execute("SELECT study_name FROM studies")}
    except sqlite3.Error as e:
        raise StorageError(f"{what} (sqlite: {shorten(str(e), 80)}): {fix}") from None
    if name not in names:
        raise StorageError(f"{shorten(str(db))} holds no study {name!r} (it holds "
                           f"{', '.join(sorted(names)) or 'none'}): {fix}")


def check_run_folder(run_dir: Path) -> None:
    """``--out`` must be a folder (or not exist yet) this process may write in."""
    if run_dir.exists() and not run_dir.is_dir():
        raise StorageError(f"--out {shorten(str(run_dir))} is a file, not a run folder: name a new "
                       "folder (or an existing run's folder with --resume)")
    parent = run_dir if run_dir.exists() else next(
        (p for p in run_dir.absolute().parents if p.exists()), None)
    if parent is not None and not os.access(parent, os.W_OK | os.X_OK):
        raise StorageError(f"run folder {shorten(str(run_dir))} cannot be written "
                       f"({'it' if parent == run_dir else shorten(str(parent))} is read-only): "
                       "make it writable or pass another --out")


def saved_config(cfg_file: Path) -> SearchConfig:
    """A run's config.yaml; a damaged one is named, with what to do."""
    from .config import SearchConfig

    try:
        return SearchConfig.from_yaml(cfg_file)
    except HwnasError as e:
        msg = str(e) if str(cfg_file) in str(e) else f"{cfg_file}: {e}"
        if "new --out" not in msg:
            msg += "; the run's config.yaml is damaged: start a new --out"
        raise ConfigError(msg) from None


def _sqlite_path(url: str) -> Path | None:
    if not url.startswith("sqlite:"):
        return None
    return Path(url.split(":///", 1)[1]) if ":///" in url else None


def check_shared_storage(config: SearchConfig) -> None:
    """On a Ray cluster (``config.ray_address``) the storage must reach every node."""
    if not config.ray_address:
        return
    if not config.storage:
        raise StorageError(
            f"--ray-address {shorten(config.ray_address, 80)} needs a --storage every node can "
            "reach (e.g. postgresql://user@head/hwnas, or sqlite:////shared/path/study.db on a "
            "file system all nodes mount); the default SQLite file in the run folder is on "
            "this machine only")
    path = _sqlite_path(config.storage)
    if path is not None:
        prove_shared(path.parent, config.ray_address)


def prove_shared(folder: Path, address: str) -> None:
    """Raise unless every alive node of the Ray cluster at ``address`` sees a
    token written in ``folder`` (the token is removed again)."""
    import ray
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    if not folder.is_dir():
        raise StorageError(f"--storage folder {shorten(str(folder))} does not exist on this node")
    token = folder / SHARED_TOKEN.format(uuid.uuid4().hex)
    started = not ray.is_initialized()
    try:
        token.write_text("hwnas\n")
    except OSError as e:
        raise StorageError(f"--storage folder {shorten(str(folder))} cannot be written "
                           f"({e.strerror})") from None
    try:
        if started:
            ray.init(address=address, include_dashboard=False, log_to_driver=False,
                     configure_logging=False)

        @ray.remote(num_cpus=0)
        def sees(p: str) -> bool:
            return Path(p).is_file()

        nodes = [n for n in ray.nodes() if n.get("Alive")]
        seen = ray.get([sees.options(scheduling_strategy=NodeAffinitySchedulingStrategy(
            n["NodeID"], soft=False)).remote(str(token)) for n in nodes])
        blind = [n["NodeManagerAddress"] for n, ok in zip(nodes, seen, strict=True) if not ok]
    finally:
        token.unlink(missing_ok=True)
        if started and ray.is_initialized():
            ray.shutdown()
    if blind:
        raise StorageError(f"--storage {shorten(str(folder))} is not shared: node(s) "
                           f"{', '.join(blind[:3])} cannot see it; use a file system every node "
                           "mounts, or postgresql://")

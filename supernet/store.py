"""Trained supernets on disk: ids, the cache folder, provenance, training with resume.

A supernet lives in ``$HWNAS_HOME/supernets/<id>/``:

- ``provenance.json``: format and version, id, settings, status (``training`` or
  ``complete``), epochs done, per-epoch loss and seconds, training time,
  machine, versions; rewritten after every epoch.
- ``checkpoint.pt``: weights, optimiser, schedule and epoch, written (atomically)
  after every epoch; training resumes from it after any interruption, ``kill -9``
  included.
- ``supernet.pt``: the final weights only, written once training is complete;
  what :func:`load_supernet` reads (``weights_only=True``), read-only, so any
  number of processes may share one supernet.

The id is a readable prefix plus a hash of every setting that changes the weights
(:class:`SupernetConfig`), so equal settings always find the same folder.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import torch

from hwnas.common.atomic import atomic_save_state_dict, atomic_write_text
from hwnas.common.errors import HwnasError
from hwnas.common.home import hwnas_home
from hwnas.latency.runners.protocol import cpu_model
from hwnas.proxy.data import Dataset, load_dataset

from .train import SupernetConfig, Trainer, new_supernet

FORMAT = "hwnas-supernet"
FORMAT_VERSION = 1
PROVENANCE = "provenance.json"
CHECKPOINT = "checkpoint.pt"
WEIGHTS = "supernet.pt"
SUBDIR = "supernets"
LOCK = ".train.lock"


def supernets_root() -> Path:
    """``$HWNAS_HOME/supernets``."""
    return hwnas_home() / SUBDIR


def supernet_id(config: SupernetConfig) -> str:
    """Deterministic id: ``<space>-<data>-r<res>-<recipe>-e<epochs>-s<seed>-<hash of all settings>``."""
    blob = json.dumps({"format_version": FORMAT_VERSION, **config.as_dict()}, sort_keys=True)
    digest = hashlib.sha256(blob.encode()).hexdigest()[:10]
    data = "".join(c if c.isalnum() else "-" for c in Path(config.data).name.lower()).strip("-")
    return (f"{config.space}-{data or 'data'}-r{config.proxy_resolution}-{config.recipe}"
            f"-e{config.epochs}-s{config.seed}-{digest}")


def _versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    try:
        hw = version("hwnas")
    except PackageNotFoundError:
        hw = "unknown"
    return {"hwnas": hw, "torch": torch.__version__, "python": platform.python_version()}


def _machine(device: torch.device) -> dict[str, Any]:
    info: dict[str, Any] = {"host": platform.node(), "platform": platform.platform(),
                            "cpu": cpu_model(),
                            "cpus": os.cpu_count(), "torch_threads": torch.get_num_threads(),
                            "device": str(device)}
    if device.type == "cuda":
        info["gpu"] = torch.cuda.get_device_name(device)
    return info


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def _read_json(path: Path) -> dict:
    try:
        data = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise HwnasError(f"corrupt supernet provenance {path}: {e}; delete the folder to retrain") from None
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise HwnasError(f"{path} is not a supernet provenance file (format {FORMAT!r})")
    if data.get("format_version") != FORMAT_VERSION:
        raise HwnasError(f"{path} has supernet format version {data.get('format_version')!r}; "
                         f"this hwnas reads version {FORMAT_VERSION}")
    return data


def _torch_load(path: Path) -> dict:
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise HwnasError(f"missing supernet file {path}; delete the folder to retrain") from None
    except Exception as e:  # noqa: BLE001 (any unpickling failure means a corrupt file)
        raise HwnasError(f"corrupt supernet checkpoint {path}: {type(e).__name__}: "
                         f"{' '.join(str(e).split())[:200]}; delete the folder to retrain") from None
    if not isinstance(state, dict):
        raise HwnasError(f"corrupt supernet checkpoint {path}: expected a dict, got {type(state).__name__}")
    return state


def load_data(config: SupernetConfig) -> Dataset:
    """The proxy task of ``config`` (the same split the search uses for the same seed)."""
    return load_dataset(config.data, resolution=config.proxy_resolution, val_size=config.val_size,
                        train_subset=config.train_subset, seed=config.seed)


def train_supernet(config: SupernetConfig, *, device: str | None = None, progress: bool = True,
                   on_epoch: Callable[[int, dict], None] | None = None,
                   data: Dataset | None = None) -> Path:
    """Train the supernet of ``config`` (or resume it) into its cache folder; return the folder.

    Data and settings are checked before anything is written. A complete
    supernet is left as it is. ``on_epoch(epoch, record)`` runs after each
    epoch's checkpoint is on disk.
    """
    from filelock import FileLock

    data = data if data is not None else load_data(config)
    sid = supernet_id(config)
    folder = supernets_root() / sid
    if (folder / PROVENANCE).exists():
        prov = _read_json(folder / PROVENANCE)
        if prov.get("status") == "complete":
            return folder
    folder.mkdir(parents=True, exist_ok=True)
    with FileLock(str(folder / LOCK)):
        return _train_locked(config, data, folder, sid, device, progress, on_epoch)


def _train_locked(config: SupernetConfig, data: Dataset, folder: Path, sid: str,
                  device: str | None, progress: bool,
                  on_epoch: Callable[[int, dict], None] | None) -> Path:
    prov: dict[str, Any] = {}
    if (folder / PROVENANCE).exists():
        prov = _read_json(folder / PROVENANCE)
        if prov.get("status") == "complete":  # another process finished while we waited
            return folder
    net = new_supernet(config, data.num_classes)
    trainer = Trainer(net, data, config, device)
    if (folder / CHECKPOINT).exists():
        trainer.load_state_dict(_torch_load(folder / CHECKPOINT))
    if not prov:
        prov = {"format": FORMAT, "format_version": FORMAT_VERSION, "id": sid,
                "settings": config.as_dict(), "data": {"name": data.name, "source": data.source,
                                                       "classes": data.num_classes,
                                                       "train_images": len(data.train_y),
                                                       "val_images": len(data.val_y)},
                "started": _now(), "train_seconds": 0.0}
    prov.update(status="training", versions=_versions(), machine=_machine(trainer.device),
                params=sum(p.numel() for p in net.parameters()),
                steps_per_epoch=trainer.steps_per_epoch)
    bar = _progress(progress, sid)
    with bar:
        task = bar.add_task("supernet", total=trainer.total,
                            completed=trainer.epoch * trainer.steps_per_epoch)
        while trainer.epoch < config.epochs:
            record = trainer.run_epoch(tick=lambda: bar.advance(task))
            prov["train_seconds"] = round(prov["train_seconds"] + record["seconds"], 3)
            prov.update(epochs_done=trainer.epoch, history=trainer.history, updated=_now())
            atomic_save_state_dict(trainer.state_dict(), folder / CHECKPOINT)
            atomic_write_text(folder / PROVENANCE, json.dumps(prov, indent=2) + "\n")
            if on_epoch is not None:
                on_epoch(record["epoch"], record)
    net_cpu = {k: v.detach().cpu() for k, v in net.state_dict().items()}
    atomic_save_state_dict(net_cpu, folder / WEIGHTS)
    prov.update(status="complete", finished=_now())
    atomic_write_text(folder / PROVENANCE, json.dumps(prov, indent=2) + "\n")
    (folder / CHECKPOINT).unlink(missing_ok=True)  # the optimiser state is no longer needed
    return folder


def _progress(enabled: bool, sid: str) -> Any:
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    return Progress(TextColumn(f"[bold]{sid}"), BarColumn(), MofNCompleteColumn(), TextColumn("steps"),
                    TimeElapsedColumn(), TextColumn("ETA"), TimeRemainingColumn(),
                    console=Console(stderr=True), disable=not enabled, transient=False)


def list_supernets() -> list[dict]:
    """Provenance of every supernet under ``$HWNAS_HOME/supernets`` (complete or not), by id."""
    root = supernets_root()
    out = []
    if root.is_dir():
        for folder in sorted(root.iterdir()):
            if (folder / PROVENANCE).is_file():
                try:
                    out.append(_read_json(folder / PROVENANCE))
                except HwnasError as e:
                    out.append({"id": folder.name, "status": f"unreadable: {e}"})
    return out


def supernet_folder(sid: str) -> Path:
    """The folder of a complete supernet ``sid``.

    Raises:
        HwnasError: no such supernet, or its training is not complete.
    """
    if not isinstance(sid, str) or not sid or "/" in sid or sid.startswith("."):
        raise HwnasError(f"supernet id must be a folder name under {supernets_root()}, got {sid!r}")
    folder = supernets_root() / sid
    if not (folder / PROVENANCE).is_file():
        known = [p["id"] for p in list_supernets()]
        raise HwnasError(f"no supernet {sid!r} under {supernets_root()}: known are "
                         f"{', '.join(known) if known else 'none (train one with nas-supernet train)'}")
    prov = _read_json(folder / PROVENANCE)
    if prov.get("status") != "complete":
        raise HwnasError(f"supernet {sid!r} is not fully trained ({prov.get('epochs_done', 0)} of "
                         f"{prov['settings']['epochs']} epochs); resume it with nas-supernet train")
    return folder


def read_weights(folder: Path) -> dict:
    return _torch_load(folder / WEIGHTS)


def read_provenance(folder: Path) -> dict:
    return _read_json(folder / PROVENANCE)


__all__ = ["FORMAT_VERSION", "list_supernets", "load_data", "supernet_folder", "supernet_id",
           "supernets_root", "train_supernet"]

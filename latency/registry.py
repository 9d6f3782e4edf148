"""Target names: ``host``, ``pixel``/``pixel1`` and user targets under ``$HWNAS_HOME``.

Measured tables live in ``$HWNAS_HOME/targets/NAME/`` (default
``~/.cache/hwnas``). ``host`` is this machine, measured with the local
runner; its table is created the first time it is loaded. A user target is
made by :func:`create_target` (``nas-latency build --target NAME --runner
adb|ssh ...``); its runner settings are saved with its table, so
:func:`load_target` can measure missing layers later.

>>> load_target("pixel").name
'pixel'
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from hwnas.common.errors import HwnasError
from hwnas.common.home import hwnas_home

from .measured_target import METHOD, MeasuredTarget
from .pixel import NOT_OFFERED, PIXEL_NAMES, load_pixel_target
from .runners import LocalRunner, make_runner
from .runners.base import DEFAULT_THREADS, Runner
from .table import META_FILE, LatencyTable, TableError
from .target import MEASURED_ONLY, Target

HOST = "host"
BUILTIN_NAMES = (HOST, *PIXEL_NAMES)
_NAME = re.compile(r"[a-z0-9][a-z0-9_.-]{0,63}")


def targets_dir() -> Path:
    return hwnas_home() / "targets"


def target_path(name: str) -> Path:
    """Folder of the table of measured target ``name``."""
    return targets_dir() / name


def user_target_names() -> tuple[str, ...]:
    """Names of the user targets found under ``$HWNAS_HOME/targets``."""
    root = targets_dir()
    if not root.is_dir():
        return ()
    return tuple(
        sorted(
            p.name
            for p in root.iterdir()
            if p.name != HOST and _NAME.fullmatch(p.name) and (p / META_FILE).is_file()
        )
    )


def target_names() -> tuple[str, ...]:
    """Every loadable target: ``host``, ``pixel``, ``pixel1`` and the user targets."""
    return (*BUILTIN_NAMES, *user_target_names())


def check_user_name(name: str) -> str:
    """``name`` if it can name a new user target; ValueError otherwise."""
    if name.lower() in BUILTIN_NAMES or name.lower() in NOT_OFFERED:
        raise HwnasError(f"target name {name!r} is built in; choose another name for a device")
    if not _NAME.fullmatch(name):
        raise HwnasError(
            f"target name {name!r} must be lower-case letters, digits, '_', '.', '-' "
            "(starting with a letter or digit, at most 64)"
        )
    return name


def _unknown(name: str) -> HwnasError:
    return HwnasError(
        f"unknown target {name!r}: known are {', '.join(target_names())} "
        "(make one with: nas-latency build --target NAME --runner adb|ssh ...)"
    )


def new_provenance(
    name: str,
    runner: Mapping[str, Any],
    *,
    threads: int = DEFAULT_THREADS,
    runs: int | None = None,
    warmup: int | None = None,
) -> dict:
    """Provenance of a new measured table (device details are added by its first fill).

    ``runs``/``warmup`` (per layer) of None leave the defaults of ``hwnas.latency.measurement``.
    """
    proto: dict[str, int] = {"threads": threads}
    proto.update({k: v for k, v in (("key_runs", runs), ("key_warmup", warmup)) if v is not None})
    return {
        "name": name,
        "kind": "measured",
        "runner": dict(runner),
        "protocol": proto,
        "threads": threads,
        "method": METHOD,
    }


def load_target(name: str, runner: Runner | None = None) -> Target:
    """The target called ``name``.

    Args:
        name: ``host``, ``pixel``, ``pixel1`` or a user target.
        runner: measure missing layers with this runner instead of the saved one.

    Raises:
        ValueError: unknown name (the message lists the known ones).
        TableError: the target's table is corrupt, foreign or too new.
    """
    if not isinstance(name, str):
        raise HwnasError(f"target name must be a string, got {name!r}")
    key = name.strip().lower()
    if key in PIXEL_NAMES or key in NOT_OFFERED:
        return load_pixel_target(key)
    if key == HOST:
        prov = new_provenance(HOST, {"kind": LocalRunner.name})
        table = LatencyTable.open(target_path(HOST), prov)
        return MeasuredTarget(HOST, table, runner)
    if not _NAME.fullmatch(name) or not (target_path(name) / META_FILE).is_file():
        raise _unknown(name)
    return MeasuredTarget(name, LatencyTable.load(target_path(name)), runner)


def create_target(
    name: str,
    runner: Mapping[str, Any],
    *,
    threads: int = DEFAULT_THREADS,
    runs: int | None = None,
    warmup: int | None = None,
    check: bool = True,
) -> MeasuredTarget:
    """A new user target measured by the runner with settings ``runner``.

    With ``check`` the device is contacted first (``device_info``), so an
    unreachable device leaves nothing behind.

    Raises:
        ValueError: bad name or runner settings; the target exists.
        RunnerError: the device cannot be reached.
    """
    check_user_name(name)
    live = make_runner(runner)  # checks the kind and the settings first
    path = target_path(name)
    if (path / META_FILE).exists():
        raise HwnasError(f"target {name!r} exists already ({path})")
    if check:
        live.device_info()
    try:
        table = LatencyTable.create(
            path, new_provenance(name, runner, threads=threads, runs=runs, warmup=warmup)
        )
    except TableError as e:
        raise HwnasError(str(e)) from None
    return MeasuredTarget(name, table, live)


def target_for_build(name: str, settings: Mapping[str, Any] | None) -> MeasuredTarget:
    """The measured target ``build`` fills: ``host``, an existing user target, or a new one.

    A new user target needs runner ``settings`` (the device is contacted
    first); an existing one keeps its saved runner (other settings are an error).
    """
    if name.lower() == HOST:
        if settings and settings["kind"] != LocalRunner.name:
            raise HwnasError(
                f"host is measured with the local runner; name a user target for "
                f"--runner {settings['kind']}"
            )
        return load_target(HOST)  # type: ignore[return-value]
    if name.lower() in BUILTIN_NAMES or name.lower() in NOT_OFFERED:
        raise HwnasError(f"target {name!r} is a fitted model, not measured here: {MEASURED_ONLY}")
    if _NAME.fullmatch(name) and (target_path(name) / META_FILE).is_file():
        t = load_target(name)
        saved = t.provenance.get("runner")
        if settings is not None and dict(settings) != saved:
            raise HwnasError(
                f"target {name!r} exists with runner {saved}; drop the runner "
                "options or choose a new name"
            )
        return t  # type: ignore[return-value]
    if settings is None:
        raise HwnasError(f"{_unknown(name)}; to create {name!r} give --runner adb|ssh|local")
    return create_target(name, settings)


def describe_targets() -> list[dict]:
    """One row per target for listings: name, kind, device, runtime, entries, overhead, error."""
    rows = []
    for name in target_names():
        if name == "pixel1":
            continue  # an alias of pixel
        if name == HOST and not (target_path(HOST) / META_FILE).is_file():
            rows.append(
                {
                    "name": HOST,
                    "kind": "measured",
                    "device": "this machine (no table yet)",
                    "entries": 0,
                }
            )
            continue
        try:
            t = load_target(name)
        except HwnasError as e:  # a corrupt, foreign or too new table
            rows.append({"name": name, "kind": "?", "error": str(e)})
            continue
        rows.append(t.describe())
    return rows

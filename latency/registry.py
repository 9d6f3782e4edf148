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
from .runners import RUNNERS, LocalRunner, make_runner
from .runners.base import DEFAULT_THREADS, Runner
from .table import META_FILE, LatencyTable, TableError
from .target import MEASURED_ONLY, Target
from .user_config import programs_for

HOST = "host"
HOST_TFLITE = "host-tflite"  # this machine with the LiteRT interpreter (the runtime phones ship)
LOCAL_TARGETS = {HOST: "onnxruntime", HOST_TFLITE: "tflite"}  # name -> runtime, local runner
BUILTIN_NAMES = (HOST, *PIXEL_NAMES, HOST_TFLITE)
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
            if p.name not in LOCAL_TARGETS and _NAME.fullmatch(p.name) and (p / META_FILE).is_file()
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


def load_target(
    name: str, runner: Runner | None = None, *, programs: Mapping[str, str] | None = None
) -> Target:
    """The target called ``name``.

    Args:
        name: ``host``, ``host-tflite``, ``pixel``, ``pixel1`` or a user target.
        runner: measure missing layers with this runner instead of the saved one.
        programs: host programs of the saved runner (``{"perf_test": PATH}``);
            default: the user's config (:mod:`hwnas.latency.user_config`), never the table.

    Raises:
        ValueError: unknown name (the message lists the known ones).
        TableError: the target's table is corrupt, foreign or too new.
    """
    if not isinstance(name, str):
        raise HwnasError(f"target name must be a string, got {name!r}")
    key = name.strip().lower()
    if key in PIXEL_NAMES or key in NOT_OFFERED:
        return load_pixel_target(key)
    if key in LOCAL_TARGETS:
        prov = new_provenance(key, _local_settings(key))
        table = LatencyTable.open(target_path(key), prov)
        return MeasuredTarget(key, table, runner, programs=programs)
    if not _NAME.fullmatch(name) or not (target_path(name) / META_FILE).is_file():
        raise _unknown(name)
    return MeasuredTarget(
        name, LatencyTable.load(target_path(name)), runner, programs=programs
    )


def _local_settings(name: str) -> dict:
    runtime = LOCAL_TARGETS[name]
    return {"kind": LocalRunner.name, **({"runtime": runtime} if runtime != "onnxruntime" else {})}


def create_target(
    name: str,
    runner: Mapping[str, Any],
    *,
    threads: int = DEFAULT_THREADS,
    runs: int | None = None,
    warmup: int | None = None,
    check: bool = True,
    programs: Mapping[str, str] | None = None,
) -> MeasuredTarget:
    """A new user target measured by the runner with settings ``runner``.

    With ``check`` the device is contacted first (``device_info``), so an
    unreachable device leaves nothing behind. ``programs`` are the runner's
    host programs (default: the user's config; never saved with the table).

    Raises:
        ValueError: bad name or runner settings; the target exists.
        RunnerError: the device cannot be reached.
    """
    check_user_name(name)
    if programs is None:
        programs = programs_for(name, _programs_of(runner))
    live = make_runner(runner, programs=programs)  # checks the kind and the settings first
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


def _programs_of(settings: Mapping[str, Any]) -> Mapping[str, str]:
    cls = RUNNERS.get(settings.get("kind"))  # type: ignore[arg-type]
    return cls.programs if cls is not None else {}


def target_for_build(
    name: str, settings: Mapping[str, Any] | None, programs: Mapping[str, str] | None = None
) -> MeasuredTarget:
    """The measured target ``build`` fills: ``host``, an existing user target, or a new one.

    A new user target needs runner ``settings`` (the device is contacted
    first); an existing one keeps its saved runner (other settings are an error).
    ``programs`` (``{"perf_test": PATH}``, from the command line) override
    the user's config for this build; they are never saved.
    """
    given = {k: v for k, v in (programs or {}).items() if v is not None}
    if name.lower() in LOCAL_TARGETS:
        key = name.lower()
        want = _local_settings(key)
        if settings and dict(settings) != want:
            raise HwnasError(
                f"{key} is measured with the local runner and {LOCAL_TARGETS[key]}; name a user "
                f"target for --runner {settings['kind']} {settings.get('runtime', '')}".rstrip()
            )
        if given:
            raise HwnasError(f"{key} runs no program; --{next(iter(given))} applies to adb/ssh")
        return load_target(key)  # type: ignore[return-value]
    if name.lower() in BUILTIN_NAMES or name.lower() in NOT_OFFERED:
        raise HwnasError(f"target {name!r} is a fitted model, not measured here: {MEASURED_ONLY}")
    if _NAME.fullmatch(name) and (target_path(name) / META_FILE).is_file():
        t = load_target(name, programs=_with_config(name, saved_kind(name), given))
        saved = t.provenance.get("runner")
        if settings is not None and dict(settings) != saved:
            raise HwnasError(
                f"target {name!r} exists with runner {saved}; drop the runner "
                "options or choose a new name"
            )
        return t  # type: ignore[return-value]
    if settings is None:
        raise HwnasError(f"{_unknown(name)}; to create {name!r} give --runner adb|ssh|local")
    return create_target(name, settings, programs=_with_config(name, settings["kind"], given))


def saved_kind(name: str) -> str | None:
    """The runner kind saved with user target ``name`` (None if unreadable)."""
    try:
        return (LatencyTable.load(target_path(name)).provenance.get("runner") or {}).get("kind")
    except HwnasError:
        return None


def _with_config(name: str, kind: str | None, given: Mapping[str, str]) -> dict[str, str]:
    cls = RUNNERS.get(kind)  # type: ignore[arg-type]
    if cls is None:
        return dict(given)
    bad = [o for o in given if o not in cls.programs]
    if bad:
        raise HwnasError(f"--{bad[0].replace('_', '-')} does not apply to --runner {kind}")
    return {**programs_for(name, cls.programs), **given}


def describe_targets() -> list[dict]:
    """One row per target for listings: name, kind, device, runtime, entries, overhead, error."""
    rows = []
    for name in target_names():
        if name == "pixel1":
            continue  # an alias of pixel
        if name in LOCAL_TARGETS and not (target_path(name) / META_FILE).is_file():
            rows.append(
                {
                    "name": name,
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

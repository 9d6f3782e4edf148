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

import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from hwnas.common.errors import HwnasError

from .measured import METHOD, RUNNER_KINDS, MeasuredTarget, make_runner
from .pixel import NOT_OFFERED, PIXEL_NAMES, load_pixel_target
from .runner import DEFAULT_THREADS, Runner
from .table import META_FILE, LatencyTable, TableError
from .target import Target

HOME_ENV = "HWNAS_HOME"
DEFAULT_HOME = "~/.cache/hwnas"
HOST = "host"
BUILTIN_NAMES = (HOST, *PIXEL_NAMES)
_NAME = re.compile(r"[a-z0-9][a-z0-9_.-]{0,63}")


def hwnas_home() -> Path:
    """``$HWNAS_HOME`` or ``~/.cache/hwnas``."""
    return Path(os.environ.get(HOME_ENV) or DEFAULT_HOME).expanduser()


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

    ``runs``/``warmup`` (per layer) of None leave the defaults of ``hwnas.latency.measure``.
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
        table = LatencyTable.open(target_path(HOST), new_provenance(HOST, {"kind": "local"}))
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
    if runner.get("kind") not in RUNNER_KINDS:
        raise HwnasError(
            f"runner kind must be one of {', '.join(RUNNER_KINDS)}, got {runner.get('kind')!r}"
        )
    path = target_path(name)
    if (path / META_FILE).exists():
        raise HwnasError(f"target {name!r} exists already ({path})")
    live = make_runner(runner)
    if check:
        live.device_info()
    try:
        table = LatencyTable.create(
            path, new_provenance(name, runner, threads=threads, runs=runs, warmup=warmup)
        )
    except TableError as e:
        raise HwnasError(str(e)) from None
    return MeasuredTarget(name, table, live)


def runner_settings(
    kind: str | None,
    *,
    device: str | None = None,
    host: str | None = None,
    user: str | None = None,
    port: int | None = None,
    identity: str | Path | None = None,
    timeout: float | None = None,
) -> dict | None:
    """Runner settings as a table saves them, from ``nas-latency build``'s options.

    ``timeout`` is the seconds each step with the device may take (adb, ssh).
    Returns None when no option is given (an existing target's runner applies).
    """
    given = {
        k: v
        for k, v in (
            ("device", device),
            ("host", host),
            ("user", user),
            ("port", port),
            ("identity", identity),
            ("timeout", timeout),
        )
        if v is not None
    }
    if kind is None:
        if given:
            raise HwnasError(f"--{next(iter(given))} needs --runner adb or --runner ssh")
        return None
    allowed = {
        "local": (),
        "adb": ("device", "timeout"),
        "ssh": ("host", "user", "port", "identity", "timeout"),
    }
    if kind not in allowed:
        raise HwnasError(f"runner kind must be one of {', '.join(RUNNER_KINDS)}, got {kind!r}")
    extra = sorted(set(given) - set(allowed[kind]))
    if extra:
        raise HwnasError(f"--{extra[0]} does not apply to --runner {kind}")
    if timeout is not None and not timeout > 0:
        raise HwnasError(f"--timeout must be a positive number of seconds, got {timeout}")
    extra_opts = {"timeout": float(timeout)} if timeout is not None else {}
    if kind == "adb":
        if device is None:
            raise HwnasError("--runner adb needs --device SERIAL")
        return {"kind": "adb", "serial": device, **extra_opts}
    if kind == "ssh":
        if host is None:
            raise HwnasError("--runner ssh needs --host HOST")
        s: dict[str, Any] = {"kind": "ssh", "host": host}
        s.update({k: v for k, v in (("user", user), ("port", port)) if v is not None})
        s.update(extra_opts)
        if identity is not None:
            ident = Path(identity).expanduser().resolve()
            if not ident.is_file():
                raise HwnasError(f"--identity {identity}: no such file")
            s["identity"] = str(ident)
        return s
    return {"kind": "local"}


MEASURED_ONLY = "use host or a user target"


def target_for_build(name: str, settings: Mapping[str, Any] | None) -> MeasuredTarget:
    """The measured target ``build`` fills: ``host``, an existing user target, or a new one.

    A new user target needs runner ``settings`` (the device is contacted
    first); an existing one keeps its saved runner (other settings are an error).
    """
    if name.lower() == HOST:
        if settings and settings["kind"] != "local":
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
        row: dict[str, Any] = {"name": name}
        try:
            if name == HOST and not (target_path(HOST) / META_FILE).is_file():
                row.update(kind="measured", device="this machine (no table yet)", entries=0)
                rows.append(row)
                continue
            t = load_target(name)
        except (TableError, ValueError) as e:
            row.update(kind="?", error=str(e))
            rows.append(row)
            continue
        row.update(_describe(t))
        rows.append(row)
    return rows


def _describe(t: Target) -> dict:
    prov = t.provenance
    if isinstance(t, MeasuredTarget):
        dev = prov.get("device") or {}
        runner = prov.get("runner") or {}
        where = {"ssh": runner.get("host"), "adb": runner.get("serial")}.get(runner.get("kind"))
        device = " ".join(
            str(x)
            for x in (dev.get("model") or dev.get("cpu") or "", dev.get("hostname") or "")
            if x
        )
        runtime = " ".join(
            x for x in (prov.get("runtime", ""), prov.get("runtime_version", "")) if x
        )
        val = prov.get("validation")
        return {
            "kind": "measured",
            "device": device or "not measured yet",
            "runner": runner.get("kind", "") + (f" {where}" if where else ""),
            "runtime": runtime,
            "threads": prov.get("threads"),
            "entries": len(t.table),
            "overhead_ms": t.table.overhead_ms,
            "updated": prov.get("updated") or prov.get("created"),
            "validation": val,
            "path": str(t.table.path),
        }
    from .pixel import _read_model

    errs = [abs(r["loo_err"]) for r in _read_model()["table3_errors"]]
    return {
        "kind": "modelled",
        "device": prov.get("device", ""),
        "runtime": prov.get("runtime", ""),
        "threads": prov.get("threads"),
        "overhead_ms": 0.0,
        "updated": prov.get("fitted"),
        "validation": {
            "n": len(errs),
            "mape": sum(errs) / len(errs),
            "max_error": max(errs),
            "what": "MobileNetV3 Table 3, leave-one-out",
        },
    }

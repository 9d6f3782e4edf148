"""Runners, the things that measure ONNX models on a device, and their registry.

``RUNNERS`` maps a runner's name (``--runner`` of ``nas-latency build``, the
``kind`` of a target's saved runner settings) to its class. Everything that
lists runners derives from it: :func:`make_runner`, :func:`runner_settings`,
the CLI's choices, the target store and the docs. To add a runner, write a
:class:`~hwnas.latency.runners.base.Runner` subclass (its ``name``,
``options``, ``required``, ``_measure``, ``protocol``, ``device_info``) and
add it to ``RUNNERS`` below: one edit.

Example::

    runner = make_runner({"kind": "ssh", "host": "rpi4.local", "user": "pi"})
    stats = runner.measure({"ir_k3_s1_m96_c24_nre_noskip|24x56x56": path}, runs=50)
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from hwnas.common.errors import HwnasError

from .adb import AdbRunner, parse_perf_test_results
from .base import (
    DEFAULT_RUNS,
    DEFAULT_RUNTIME,
    DEFAULT_THREADS,
    DEFAULT_WARMUP,
    RUNTIMES,
    Runner,
    RunnerError,
    Stats,
)
from .local import LocalRunner
from .ssh import SshRunner

RUNNERS: dict[str, type[Runner]] = {cls.name: cls for cls in (LocalRunner, AdbRunner, SshRunner)}
RUNNER_KINDS = tuple(RUNNERS)
# Every option of ``nas-latency build`` that some runner takes (derived).
RUNNER_OPTIONS = tuple(dict.fromkeys(o for cls in RUNNERS.values() for o in cls.options))
# Host programs some runner runs (``--adb``, ``--perf-test``...), derived likewise.
RUNNER_PROGRAMS = tuple(dict.fromkeys(o for cls in RUNNERS.values() for o in cls.programs))


def _runner_class(kind: object) -> type[Runner]:
    if kind not in RUNNERS:
        raise HwnasError(f"runner kind must be one of {', '.join(RUNNER_KINDS)}, got {kind!r}")
    return RUNNERS[kind]  # type: ignore[index]


def make_runner(
    settings: Mapping[str, Any],
    *,
    programs: Mapping[str, Any] | None = None,
    where: str | None = None,
    **trusted: Any,
) -> Runner:
    """A runner from its saved settings: ``{"kind": NAME, **constructor keywords}``.

    Saved settings (a target's ``provenance.json``) may hold only the
    runner's ``options`` and ``saved`` keywords; a program path there is
    refused, never run. ``programs`` (from the command line or
    :func:`hwnas.latency.user_config.programs_for`) sets the runner's host
    programs by option name (``{"adb": "/opt/adb", "perf_test": "..."}``);
    ``trusted`` are keywords set by hwnas itself (a worker's ``cpus``).
    ``where`` names the settings' file in error messages.
    """
    opts = dict(settings)
    cls = _runner_class(opts.pop("kind", None))
    origin = f"{where}: " if where else ""
    prog_kw = set(cls.programs.values()) | {"adb", "ssh", "perf_test", "python"}
    allowed = set(cls.options.values()) | set(cls.saved)
    for key in opts:
        if key in prog_kw and key not in allowed:
            raise HwnasError(
                f"{origin}runner settings name the program {key!r}; programs come only from "
                "the command line or the user's config, never from a target's files"
            )
        if key not in allowed:
            raise HwnasError(
                f"{origin}runner setting {key!r} is not one runner {cls.name!r} takes "
                f"(allowed: {', '.join(sorted(allowed)) or 'none'})"
            )
    for opt, value in (programs or {}).items():
        if value is None:
            continue
        if opt not in cls.programs:
            raise HwnasError(f"runner {cls.name!r} runs no program {opt!r}")
        opts[cls.programs[opt]] = str(value)
    try:
        return cls(**opts, **trusted)
    except TypeError as e:  # a keyword the runner does not take
        raise HwnasError(
            f"{origin}runner settings {dict(settings)} do not fit runner {cls.name!r}: {e}"
        ) from None


def runner_settings(kind: str | None, **given: Any) -> dict | None:
    """Runner settings as a table saves them, from ``nas-latency build``'s options.

    ``given`` holds the options (``device``, ``host``, ``user``, ``port``,
    ``identity``, ``timeout``: see each runner's ``options``); None values
    count as not given. ``timeout`` is the seconds each step with the device
    may take. Returns None when neither a kind nor an option is given (an
    existing target's runner applies).
    """
    given = {k: v for k, v in given.items() if v is not None}
    unknown = sorted(set(given) - set(RUNNER_OPTIONS))
    if unknown:
        raise HwnasError(
            f"no runner takes the option {unknown[0]!r}; known: {', '.join(RUNNER_OPTIONS)}"
        )
    if kind is None:
        if given:
            opt = next(iter(given))
            takers = " or ".join(f"--runner {k}" for k, c in RUNNERS.items() if opt in c.options)
            raise HwnasError(f"--{opt} needs {takers}")
        return None
    cls = _runner_class(kind)
    extra = sorted(set(given) - set(cls.options))
    if extra:
        raise HwnasError(f"--{extra[0]} does not apply to --runner {kind}")
    for opt in cls.required:
        if opt not in given:
            raise HwnasError(f"--runner {kind} needs --{opt} {opt.upper()}")
    settings: dict[str, Any] = {"kind": kind}
    for opt, value in given.items():
        if opt == "runtime" and value == DEFAULT_RUNTIME:
            continue  # the default is saved as no setting (tables made before runtimes)
        settings[cls.options[opt]] = _check_option(opt, value)
    return settings


def _check_option(opt: str, value: Any) -> Any:
    """The saved form of one option (a timeout as float, a key file as an absolute path)."""
    if opt == "timeout":
        if not value > 0:
            raise HwnasError(f"--timeout must be a positive number of seconds, got {value}")
        return float(value)
    if opt == "runtime":
        if value not in RUNTIMES:
            raise HwnasError(f"--runtime must be one of {', '.join(RUNTIMES)}, got {value!r}")
        return value
    if opt == "identity":
        ident = Path(value).expanduser().resolve()
        if not ident.is_file():
            raise HwnasError(f"--identity {value}: no such file")
        return str(ident)
    return value


__all__ = [
    "DEFAULT_RUNS",
    "DEFAULT_THREADS",
    "DEFAULT_WARMUP",
    "RUNNERS",
    "RUNNER_KINDS",
    "RUNNER_OPTIONS",
    "RUNNER_PROGRAMS",
    "RUNTIMES",
    "AdbRunner",
    "LocalRunner",
    "Runner",
    "RunnerError",
    "SshRunner",
    "Stats",
    "make_runner",
    "parse_perf_test_results",
    "runner_settings",
]

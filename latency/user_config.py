"""The user's own settings for devices: host programs per runner and per target.

Program paths (``adb``, ``ssh``, the benchmark binary of a phone) are never
read from a target's folder: a planted ``provenance.json`` must not choose
what runs on this machine. They come from the command line
(``nas-latency build --perf-test PATH``) or from ``$HWNAS_HOME/config.yaml``::

    programs:              # every target
      adb: /opt/android-sdk/platform-tools/adb
    targets:
      pixel7:              # one target
        perf_test: ~/android/benchmark_model

A per-target value wins over ``programs``; the command line wins over both.

>>> programs_for("pixel7", {})
{}
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from hwnas.common.errors import HwnasError
from hwnas.common.home import hwnas_home

CONFIG_FILE = "config.yaml"


def config_path() -> Path:
    return hwnas_home() / CONFIG_FILE


def _load() -> dict:
    path = config_path()
    if not path.is_file():
        return {}
    try:
        doc = yaml.safe_load(path.read_text()) or {}
    except (OSError, yaml.YAMLError) as e:
        raise HwnasError(f"{path}: unreadable YAML ({' '.join(str(e).split())[:160]})") from None
    if not isinstance(doc, dict) or set(doc) - {"programs", "targets"}:
        raise HwnasError(f"{path}: expected a mapping with 'programs' and/or 'targets'")
    return doc


def programs_for(target: str | None, programs: Mapping[str, str]) -> dict[str, str]:
    """The user's program paths for a runner whose ``programs`` are ``programs``.

    Args:
        target: the target's name (its ``targets:`` entry applies), or None.
        programs: the runner class's ``programs`` (option name -> keyword).

    Returns:
        ``{option name: path}`` for the options the config sets (``~`` expanded).
    """
    doc = _load()
    path = config_path()
    merged: dict[str, Any] = dict(doc.get("programs") or {})
    per = (doc.get("targets") or {}).get(target) if target else None
    merged.update(per or {})
    out = {}
    for opt, value in merged.items():
        if opt not in programs:
            continue  # a program of another runner
        if not isinstance(value, str) or not value:
            raise HwnasError(f"{path}: {opt} must be a path, got {value!r}")
        out[opt] = str(Path(value).expanduser())
    return out

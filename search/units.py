"""Latency values with units: ``50ms``, ``0.05s``, ``50000us``."""

from __future__ import annotations

import re

_UNITS_MS = {"ms": 1.0, "s": 1000.0, "us": 1e-3, "µs": 1e-3}
_LAT = re.compile(r"^\s*([0-9]*\.?[0-9]+(?:[eE][-+]?[0-9]+)?)\s*(ms|s|us|µs)\s*$")


def parse_latency(text: str | float | int) -> float:
    """Milliseconds from a latency with a unit.

    >>> parse_latency("50ms"), parse_latency("0.05s"), parse_latency("50000us")
    (50.0, 50.0, 50.0)

    A bare number is refused: ``50`` could be ms or s.
    """
    if isinstance(text, (int, float)):
        raise ValueError(f"latency {text!r} has no unit: write e.g. {text}ms, {text}s or {text}us")
    m = _LAT.match(str(text))
    if not m:
        s = str(text).strip()
        if re.fullmatch(r"[0-9]*\.?[0-9]+", s):
            raise ValueError(f"latency {s!r} has no unit: write e.g. {s}ms, {s}s or {s}us")
        raise ValueError(f"bad latency {s!r}: expected a number with a unit ms, s or us (e.g. 50ms)")
    ms = float(m.group(1)) * _UNITS_MS[m.group(2)]
    if ms <= 0:
        raise ValueError(f"latency {text!r} must be positive")
    return ms


def format_ms(ms: float) -> str:
    return f"{ms:.2f}ms"

"""Durations with units: ``50ms``, ``0.05s``, ``50000us``."""

from __future__ import annotations

import re

from .errors import HwnasError

_UNITS_MS = {"ms": 1.0, "s": 1000.0, "us": 1e-3, "µs": 1e-3}
_LAT = re.compile(r"^\s*([0-9]*\.?[0-9]+(?:[eE][-+]?[0-9]+)?)\s*(ms|s|us|µs)\s*$")
SHOWN_CHARS = 80  # longest piece of a user's value repeated in an error message


def shorten(text: object, limit: int = SHOWN_CHARS) -> str:
    """``repr(text)`` cut to ``limit`` characters (errors must stay one short line)."""
    r = repr(text)
    return r if len(r) <= limit else r[: limit - 5] + "...'" + f" ({len(str(text))} chars)"


def parse_latency(text: str | float | int) -> float:
    """Milliseconds from a latency with a unit.

    >>> parse_latency("50ms"), parse_latency("0.05s"), parse_latency("50000us")
    (50.0, 50.0, 50.0)

    A bare number is refused: ``50`` could be ms or s.
    """
    if isinstance(text, (int, float)):
        raise HwnasError(f"latency {text!r} has no unit: write e.g. {text}ms, {text}s or {text}us")
    m = _LAT.match(str(text))
    if not m:
        s = str(text).strip()
        if re.fullmatch(r"[0-9]*\.?[0-9]+", s):
            raise HwnasError(f"latency {s!r} has no unit: write e.g. {s}ms, {s}s or {s}us")
        raise HwnasError(f"bad latency {shorten(s)}: expected a positive number with a unit ms, "
                         "s or us (e.g. 50ms)")
    ms = float(m.group(1)) * _UNITS_MS[m.group(2)]
    if ms <= 0:
        raise HwnasError(f"latency {text!r} must be positive")
    return ms

"""The proxy package's error type (its own module so that every proxy module can import it)."""

from __future__ import annotations

from hwnas.common.errors import HwnasError


class DataError(HwnasError):
    """The proxy-task data is missing or malformed (one line: where, and how to fix)."""

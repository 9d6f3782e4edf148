"""The one root of "you asked for something wrong".

Every error a user can cause (a bad flag, a malformed architecture string, a
corrupt table, an unreachable device, a data folder with one class) derives
from :class:`HwnasError`. The CLIs catch exactly that and print its message
on one line with exit code 2; any other exception is a bug and keeps its
traceback. ``HwnasError`` is a ``ValueError`` so callers that caught
``ValueError`` before keep working.
"""

from __future__ import annotations


class HwnasError(ValueError):
    """Bad input or an unusable resource; the message is the one line shown to the user."""


class UsageError(HwnasError):
    """A command line that cannot be acted on (raised by the CLIs)."""


class ConfigError(HwnasError):
    """A settings file or mapping (run.yaml, config.yaml) that does not validate."""

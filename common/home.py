"""Where hwnas keeps what it measures and trains: ``$HWNAS_HOME`` (default ``~/.cache/hwnas``)."""

from __future__ import annotations

import os
from pathlib import Path

HOME_ENV = "HWNAS_HOME"
DEFAULT_HOME = "~/.cache/hwnas"


def hwnas_home() -> Path:
    """``$HWNAS_HOME`` or ``~/.cache/hwnas``."""
    return Path(os.environ.get(HOME_ENV) or DEFAULT_HOME).expanduser()

"""hwnas.common: what several hwnas packages need, at the bottom of the layers.

The error root, the one atomic writer, duration units, ``$HWNAS_HOME``, safe
YAML reading with pydantic error lines, and the CLI toolkit. It imports no
other hwnas package.
"""

import os

# OpenMP threads that spin while waiting starve each other on a shared machine:
# a default proxy trial took 331 s with the default policy and 34 s with
# PASSIVE on the 2-core development machine under load (bench/trial_time.py,
# docs/benchmarks.md). Every package that trains imports hwnas.common before
# torch, so this runs before torch's OpenMP runtime reads it; a user's own
# setting wins. This is the only place it is set.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

from .atomic import (
    atomic_copy,
    atomic_save_figure,
    atomic_save_state_dict,
    atomic_write,
    atomic_write_bytes,
    atomic_write_df,
    atomic_write_text,
)
from .errors import HwnasError, UsageError
from .home import hwnas_home
from .units import parse_latency, shorten

__all__ = [
    "HwnasError", "UsageError", "atomic_copy", "atomic_save_figure", "atomic_save_state_dict",
    "atomic_write", "atomic_write_bytes", "atomic_write_df", "atomic_write_text", "hwnas_home",
    "parse_latency", "shorten",
]

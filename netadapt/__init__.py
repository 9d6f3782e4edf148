"""hwnas.netadapt: shrink a trained network to a latency goal on a target (NetAdapt).

>>> from hwnas.netadapt import load_config, run_refine
>>> summary = run_refine(load_config("examples/netadapt_tiny.yaml"))  # doctest: +SKIP
"""

import os

# OpenMP threads that spin while waiting starve each other on a shared machine:
# a default proxy trial took 331 s with the default policy and 34 s with
# PASSIVE on the 2-core development machine under load (bench/trial_time.py,
# docs/benchmarks.md). Set before torch is first imported; a user's own
# setting wins.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

from .config import RefineConfig, load_config, parse_config
from .refine import Progress
from .run import prepare, run_refine
from .surgery import prune
from .units import MODES, Unit, layout, normalize, smallest, units, with_count

__all__ = [
    "MODES", "Progress", "RefineConfig", "Unit", "layout", "load_config", "normalize",
    "parse_config", "prepare", "prune", "run_refine", "smallest", "units", "with_count",
]

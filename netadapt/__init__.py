"""hwnas.netadapt: shrink a trained network to a latency goal on a target (NetAdapt).

>>> from hwnas.netadapt import load_config, run_refine
>>> summary = run_refine(load_config("examples/netadapt_tiny.yaml"))  # doctest: +SKIP
"""

import hwnas.common  # noqa: F401 (sets OMP_WAIT_POLICY before torch loads)

from .config import RefineConfig, load_config, parse_config
from .prunable import MODES, Unit, layout, normalize, smallest, units, with_count
from .refine import Progress
from .run import prepare, run_refine
from .surgery import prune

__all__ = [
    "MODES", "Progress", "RefineConfig", "Unit", "layout", "load_config", "normalize",
    "parse_config", "prepare", "prune", "run_refine", "smallest", "units", "with_count",
]

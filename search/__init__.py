"""hwnas.search: rewards, proxy training, controllers, execution and results.

>>> from hwnas.search import parse_config, run_search, load_run   # doctest: +SKIP
>>> run = load_run(run_search(parse_config({"target": "pixel", "latency": "50ms"})))  # doctest: +SKIP
"""

from __future__ import annotations

from typing import Any

import hwnas.common  # noqa: F401 (sets OMP_WAIT_POLICY before torch loads)

from .config import SearchConfig, parse_config
from .results import Run, load_run
from .rewards import REWARD_NAMES, make_reward

__all__ = ["REWARD_NAMES", "Run", "SearchConfig", "load_run", "make_reward", "parse_config",
           "run_search"]


def __getattr__(name: str) -> Any:
    if name == "run_search":  # imported on use: it pulls in torch and the trainer
        from .run import run_search

        return run_search
    raise AttributeError(f"module 'hwnas.search' has no attribute {name!r}")

"""Controllers that propose architectures: Optuna samplers by name.

``make_sampler`` maps the ``--sampler`` choice of ``nas-search`` to a seeded
Optuna sampler; :class:`RLSampler` is MnasNet's policy-gradient controller.

Example:
    >>> sampler = make_sampler("rl", seed=0)
    >>> type(sampler).__name__
    'RLSampler'
"""

from __future__ import annotations

import warnings

import optuna
from optuna.samplers import BaseSampler

from hwnas.common.errors import HwnasError

from ._policy import CategoricalPolicy, RewardBaseline
from ._rl import BEHAVIOUR_PROBS_ATTR, ReplayState, RLSampler

__all__ = [
    "BEHAVIOUR_PROBS_ATTR",
    "SAMPLER_NAMES",
    "CategoricalPolicy",
    "RLSampler",
    "ReplayState",
    "RewardBaseline",
    "make_sampler",
]

SAMPLER_NAMES = ("tpe", "nsga2", "random", "rl")
# Samplers that can rank trials by several objectives (Pareto search).
_MULTI_OBJECTIVE = ("tpe", "nsga2", "random")


def make_sampler(
    name: str | None = "tpe", seed: int | None = None, multi_objective: bool = False
) -> BaseSampler:
    """A seeded sampler by name.

    Args:
        name: One of :data:`SAMPLER_NAMES`: ``tpe`` (multivariate, grouped TPE,
            which handles define-by-run conditional spaces), ``nsga2``, ``random``
            or ``rl`` (:class:`RLSampler`). ``None`` picks ``nsga2`` for a
            multi-objective study and ``tpe`` otherwise.
        seed: Seed of the sampler's random numbers.
        multi_objective: The study has several objectives (``rl`` cannot serve it).

    Raises:
        ValueError: Unknown ``name``, or ``rl`` asked for a multi-objective study.
    """
    if name is None:
        name = "nsga2" if multi_objective else "tpe"
    if name not in SAMPLER_NAMES:
        raise HwnasError(f"unknown sampler {name!r}; known: {', '.join(SAMPLER_NAMES)}")
    if multi_objective and name not in _MULTI_OBJECTIVE:
        raise HwnasError(f"sampler {name!r} optimises a single objective; for a "
                         f"multi-objective search use one of: {', '.join(_MULTI_OBJECTIVE)}")
    if name == "tpe":
        with warnings.catch_warnings():
            # ``group`` is marked experimental in Optuna; we use it deliberately.
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            return optuna.samplers.TPESampler(seed=seed, multivariate=True, group=True)
    if name == "nsga2":
        return optuna.samplers.NSGAIISampler(seed=seed)
    if name == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    return RLSampler(seed=seed)

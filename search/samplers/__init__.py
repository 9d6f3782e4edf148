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
from collections.abc import Callable
from dataclasses import dataclass

import optuna
from optuna.samplers import BaseSampler

from hwnas.common.errors import HwnasError

from ._policy import CategoricalPolicy, RewardBaseline
from ._rl import BEHAVIOUR_PROBS_ATTR, ReplayState, RLSampler

__all__ = [
    "BEHAVIOUR_PROBS_ATTR",
    "MULTI_OBJECTIVE_SAMPLERS",
    "SAMPLER_REGISTRY",
    "SAMPLER_NAMES",
    "CategoricalPolicy",
    "RLSampler",
    "ReplayState",
    "RewardBaseline",
    "SamplerKind",
    "default_sampler",
    "make_sampler",
]

def _tpe(seed: int | None) -> BaseSampler:
    with warnings.catch_warnings():
        # ``group`` is marked experimental in Optuna; we use it deliberately.
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        return optuna.samplers.TPESampler(seed=seed, multivariate=True, group=True)


@dataclass(frozen=True)
class SamplerKind:
    """A registered sampler: ``make(seed)``, and whether it can rank several objectives."""

    make: Callable[[int | None], BaseSampler]
    multi_objective: bool
    help: str


# The samplers by name, in the order --help lists them. To add a sampler: add
# an entry here (the class may live in this package, like RLSampler); the
# config, the CLI choices and the docs read this table.
SAMPLER_REGISTRY: dict[str, SamplerKind] = {
    "tpe": SamplerKind(_tpe, True, "multivariate, grouped TPE (handles conditional spaces)"),
    "nsga2": SamplerKind(lambda seed: optuna.samplers.NSGAIISampler(seed=seed), True,
                         "NSGA-II, a genetic algorithm for Pareto fronts"),
    "random": SamplerKind(lambda seed: optuna.samplers.RandomSampler(seed=seed), True,
                          "uniform random architectures"),
    "rl": SamplerKind(lambda seed: RLSampler(seed=seed), False,
                      "MnasNet's policy-gradient controller (one objective)"),
}
SAMPLER_NAMES = tuple(SAMPLER_REGISTRY)
# Samplers that can rank trials by several objectives (Pareto search).
MULTI_OBJECTIVE_SAMPLERS = tuple(n for n, k in SAMPLER_REGISTRY.items() if k.multi_objective)


def default_sampler(multi_objective: bool) -> str:
    """The sampler used when none is named: NSGA-II for a Pareto search, else TPE."""
    return "nsga2" if multi_objective else "tpe"


def make_sampler(
    name: str | None = "tpe", seed: int | None = None, multi_objective: bool = False
) -> BaseSampler:
    """A seeded sampler by name.

    Args:
        name: One of :data:`SAMPLER_NAMES`: ``tpe`` (multivariate, grouped TPE,
            which handles define-by-run conditional spaces), ``nsga2``, ``random``
            or ``rl`` (:class:`RLSampler`). ``None``: :func:`default_sampler`.
        seed: Seed of the sampler's random numbers.
        multi_objective: The study has several objectives (``rl`` cannot serve it).

    Raises:
        HwnasError: Unknown ``name``, or ``rl`` asked for a multi-objective study.
    """
    if name is None:
        name = default_sampler(multi_objective)
    if name not in SAMPLER_REGISTRY:
        raise HwnasError(f"unknown sampler {name!r}; known: {', '.join(SAMPLER_NAMES)}")
    if multi_objective and not SAMPLER_REGISTRY[name].multi_objective:
        raise HwnasError(f"sampler {name!r} optimises a single objective; for a "
                         f"multi-objective search use one of: {', '.join(MULTI_OBJECTIVE_SAMPLERS)}")
    return SAMPLER_REGISTRY[name].make(seed)

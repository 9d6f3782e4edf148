"""Controllers that propose architectures: Optuna samplers by name.

``make_sampler`` maps the ``--sampler`` choice of ``nas-search`` to a seeded
Optuna sampler; :class:`RLSampler` is MnasNet's policy-gradient controller.

Example:
    >>> sampler = make_sampler("rl", seed=0)
    >>> type(sampler).__name__
    'RLSampler'
"""

from __future__ import annotations

import inspect
import threading
import warnings
from collections.abc import Callable
from dataclasses import dataclass

import optuna
from optuna.samplers import BaseSampler

from hwnas.common.errors import HwnasError

from ._pickling import FreshLocksOnCopy
from ._policy import CategoricalPolicy, RewardBaseline
from ._rl import BEHAVIOUR_PROBS_ATTR, FAILED_REWARD, INTERRUPTED_ATTR, ReplayState, RLSampler

__all__ = [
    "BEHAVIOUR_PROBS_ATTR",
    "FAILED_REWARD",
    "INTERRUPTED_ATTR",
    "MULTI_OBJECTIVE_SAMPLERS",
    "NSGAIISampler",
    "SAMPLER_REGISTRY",
    "SAMPLER_NAMES",
    "CategoricalPolicy",
    "RLSampler",
    "ReplayState",
    "RewardBaseline",
    "SamplerKind",
    "default_sampler",
    "make_sampler",
    "nsga2_population",
]

# TPE's random start-up: Optuna's default n_startup_trials, read from its signature.
TPE_STARTUP_TRIALS: int = inspect.signature(optuna.samplers.TPESampler).parameters[
    "n_startup_trials"].default


def _tpe(seed: int | None, trials: int | None = None) -> BaseSampler:
    with warnings.catch_warnings():
        # ``group`` is marked experimental in Optuna; we use it deliberately.
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        return optuna.samplers.TPESampler(seed=seed, multivariate=True, group=True)


def nsga2_population(trials: int | None) -> int:
    """NSGA-II's population for a budget of ``trials``: ``max(4, min(50, trials // 4))``.

    The first generation is random, so a population as large as the budget (Optuna's
    default 50 against our 16-60 trials) never breeds: the run is random search.
    A quarter of the budget gives at least four generations (three of them bred from
    selected parents) at any budget; 4 is the least that leaves crossover two parents
    and a choice between them; 50 is Optuna's default and enough diversity for our
    ~60-decision spaces (Deb et al. 2002 use 100 for 30-variable problems over 250
    generations). ``None`` (budget unknown): 50.

    >>> nsga2_population(16), nsga2_population(60), nsga2_population(1000), nsga2_population(None)
    (4, 15, 50, 50)
    """
    if trials is None:
        return NSGA2_MAX_POPULATION
    return max(NSGA2_MIN_POPULATION, min(NSGA2_MAX_POPULATION, trials // NSGA2_GENERATIONS))


NSGA2_MIN_POPULATION = 4
NSGA2_MAX_POPULATION = 50  # Optuna's default population_size
NSGA2_GENERATIONS = 4


class NSGAIISampler(FreshLocksOnCopy, optuna.samplers.NSGAIISampler):
    """Optuna's NSGA-II, picklable (Optuna 5.1's genetic-algorithm base keeps a
    ``threading.Lock``, ``_thread_lock``), and counting queued trials.

    NSGA-II gives a trial its generation when it first samples for it; a queued
    trial (``enqueue_trial``: the warm start, a re-queued interrupted trial)
    with every decision given is never sampled for, so it belonged to no
    generation and could never be a parent: 3 warm-start trials within a 20 ms
    budget left the next generation bred from nothing (random draws). Each
    trial now gets its generation as it starts.

    The class keeps Optuna's name: the generation is stored in the study under
    ``<class name>:generation``, so runs of either class resume alike."""

    LOCKS = {"_thread_lock": threading.Lock}

    def before_trial(self, study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
        super().before_trial(study, trial)
        if hasattr(self, "get_trial_generation"):  # Optuna >= 4.3's genetic-algorithm base
            self.get_trial_generation(study, trial)


def _nsga2(seed: int | None, trials: int | None = None) -> BaseSampler:
    return NSGAIISampler(seed=seed, population_size=nsga2_population(trials))


@dataclass(frozen=True)
class SamplerKind:
    """A registered sampler: ``make(seed, trials)`` (trials: the run's budget, or None),
    whether it can rank several objectives, and ``startup(trials)``: how many of its
    first trials it draws at random (the warm start, ``hwnas.search.warmstart``,
    queues that many nets within the budget instead)."""

    make: Callable[..., BaseSampler]
    multi_objective: bool
    help: str
    startup: Callable[[int | None], int] = lambda _trials: 0


# The samplers by name, in the order --help lists them. To add a sampler: add
# an entry here (the class may live in this package, like RLSampler); the
# config, the CLI choices and the docs read this table.
SAMPLER_REGISTRY: dict[str, SamplerKind] = {
    "tpe": SamplerKind(_tpe, True, "multivariate, grouped TPE (handles conditional spaces)",
                       lambda _trials: TPE_STARTUP_TRIALS),
    "nsga2": SamplerKind(_nsga2, True, "NSGA-II, a genetic algorithm for Pareto fronts "
                         "(population: a quarter of --trials, 4 to 50)", nsga2_population),
    "random": SamplerKind(lambda seed, trials=None: optuna.samplers.RandomSampler(seed=seed), True,
                          "uniform random architectures"),
    "rl": SamplerKind(lambda seed, trials=None: RLSampler(seed=seed), False,
                      "MnasNet's policy-gradient controller (one objective)"),
}
SAMPLER_NAMES = tuple(SAMPLER_REGISTRY)
# Samplers that can rank trials by several objectives (Pareto search).
MULTI_OBJECTIVE_SAMPLERS = tuple(n for n, k in SAMPLER_REGISTRY.items() if k.multi_objective)


def default_sampler(multi_objective: bool) -> str:
    """The sampler used when none is named: NSGA-II for a Pareto search, else TPE."""
    return "nsga2" if multi_objective else "tpe"


def make_sampler(
    name: str | None = "tpe", seed: int | None = None, multi_objective: bool = False,
    trials: int | None = None,
) -> BaseSampler:
    """A seeded sampler by name.

    Args:
        name: One of :data:`SAMPLER_NAMES`: ``tpe`` (multivariate, grouped TPE,
            which handles define-by-run conditional spaces), ``nsga2``, ``random``
            or ``rl`` (:class:`RLSampler`). ``None``: :func:`default_sampler`.
        seed: Seed of the sampler's random numbers.
        multi_objective: The study has several objectives (``rl`` cannot serve it).
        trials: The run's trial budget (sizes NSGA-II's population, :func:`nsga2_population`).

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
    return SAMPLER_REGISTRY[name].make(seed, trials=trials)

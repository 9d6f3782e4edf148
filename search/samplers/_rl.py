"""MnasNet's RL controller as an Optuna sampler.

MnasNet (Tan et al. 2019, Sec. 4) samples an architecture decision by decision
from a controller and trains the controller by policy gradient on the reward
of each sampled model. Here the controller is a factorised softmax policy
(:class:`~._policy.CategoricalPolicy`), one decision per
``trial.suggest_categorical`` call, so define-by-run spaces and conditional
decisions work as they are.

The policy is never kept as private state of a process: it is a pure function
of the study's finished trials, replayed in trial-number order
(:func:`replay`). A resumed study, or several workers sharing one storage, thus
derive the same policy from the same history. The sampler caches the replay
and only applies the trials that finished since, rebuilding from scratch when
a trial with a smaller number finished late.
"""

from __future__ import annotations

import math
import threading
from collections import OrderedDict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from optuna.distributions import BaseDistribution, CategoricalDistribution
from optuna.samplers import BaseSampler, RandomSampler
from optuna.study import Study, StudyDirection
from optuna.trial import FrozenTrial, TrialState

from hwnas.common.errors import HwnasError

from ._pickling import FreshLocksOnCopy
from ._policy import CategoricalPolicy, Pick, RewardBaseline

# EMA baseline as in Zoph & Le 2017 (Sec. 3.2) and the MnasNet controller; decay
# 0.95 as in TuNAS's REINFORCE controller (Bender et al. 2020).
DEFAULT_BASELINE_DECAY = 0.95
# Step on the logits per unit (normalised) advantage. No paper value applies to
# this parametrisation; 0.3 learns the 6 x 4 toy problem of
# tests/search/test_samplers.py within 150 trials (0.1 learns it more slowly,
# 1.0 settles early on wrong choices).
DEFAULT_LEARNING_RATE = 0.3
# PPO's clip range eps; 0.2 is the value Schulman et al. 2017 (Sec. 6.1) found best.
DEFAULT_CLIP_RATIO = 0.2

# System attribute under which a trial keeps the probabilities its decisions were
# sampled with (PPO's pi_old), so every replay sees the same ratios.
BEHAVIOUR_PROBS_ATTR = "hwnas.rl.behaviour_probs"
# What a failed trial (an exception, a non-finite loss) teaches the controller: the
# reward's floor for an untrained net (accuracy 0 gives 0 under the soft and hard
# rewards; the hard reward scores far-over-budget nets 0 too). Interrupted trials
# (user attr INTERRUPTED_ATTR, re-queued on resume) teach nothing.
FAILED_REWARD = 0.0
INTERRUPTED_ATTR = "interrupted"
# Open trials whose policy snapshot is kept; older ones (asked, never told) are
# dropped and fall back to the latest policy.
_MAX_OPEN_TRIALS = 1024


@dataclass
class ReplayState:
    """Everything the controller learned from a prefix of the trial history."""

    policy: CategoricalPolicy
    baseline: RewardBaseline
    numbers: tuple[int, ...] = ()
    window: list[tuple[dict[str, Pick], dict[str, float], float]] = field(
        default_factory=list
    )

    def copy(self) -> ReplayState:
        return ReplayState(self.policy.copy(), self.baseline.copy(), self.numbers,
                           list(self.window))


class RLSampler(FreshLocksOnCopy, BaseSampler):
    """Policy-gradient controller over categorical decisions (MnasNet-style).

    Each categorical parameter is drawn from the policy's softmax for that name;
    other distributions are drawn by :class:`optuna.samplers.RandomSampler`.
    After each finished trial the policy takes one REINFORCE step with the
    trial's objective value as reward (negated when the study minimises) and an
    exponential-moving-average baseline. With ``clip_ratio`` set, steps use
    PPO's clipped ratio to the probabilities the trial was sampled with, which
    matters when workers sample from stale policies or ``ppo_window > 1``
    re-applies the most recent trials.

    Example:
        >>> import optuna
        >>> study = optuna.create_study(sampler=RLSampler(seed=0), direction="maximize")
        >>> study.optimize(lambda t: float(t.suggest_categorical("k", [3, 5]) == 5), n_trials=5)
        >>> sorted(RLSampler().policy(study).as_dict())
        ['k']

    Args:
        seed: Seed of the sampler's random numbers.
        learning_rate: Step size on the logits.
        baseline_decay: Decay of the reward's moving-average baseline.
        entropy_weight: Weight of an entropy bonus that keeps the policy exploring.
        normalize_advantage: Divide advantages by the reward's running std.
        clip_ratio: PPO clip range ``eps``; ``None`` for plain REINFORCE.
        ppo_window: Number of most recent trials each update re-applies (PPO's
            epochs over recent samples); more than 1 needs ``clip_ratio`` and
            multiplies the effective step, so lower ``learning_rate`` with it.
        penalty_value: Objective value given to pruned and failed trials instead of
            the defaults; ``None`` (default): a pruned trial gives its last
            intermediate value (the reward so far, which the search reports each
            epoch; one pruned without any report, as by the prefilter, is left
            out) and a failed one :data:`FAILED_REWARD`.
    """

    LOCKS = {"_lock": threading.RLock}

    def __init__(
        self,
        seed: int | None = None,
        *,
        learning_rate: float = DEFAULT_LEARNING_RATE,
        baseline_decay: float = DEFAULT_BASELINE_DECAY,
        entropy_weight: float = 0.0,
        normalize_advantage: bool = True,
        clip_ratio: float | None = DEFAULT_CLIP_RATIO,
        ppo_window: int = 1,
        penalty_value: float | None = None,
    ) -> None:
        if learning_rate <= 0:
            raise HwnasError(f"learning_rate must be positive, got {learning_rate}")
        if not 0.0 <= baseline_decay < 1.0:
            raise HwnasError(f"baseline_decay must be in [0, 1), got {baseline_decay}")
        if entropy_weight < 0:
            raise HwnasError(f"entropy_weight must be >= 0, got {entropy_weight}")
        if clip_ratio is not None and clip_ratio <= 0:
            raise HwnasError(f"clip_ratio must be positive or None, got {clip_ratio}")
        if ppo_window < 1:
            raise HwnasError(f"ppo_window must be >= 1, got {ppo_window}")
        if ppo_window > 1 and clip_ratio is None:
            raise HwnasError("ppo_window > 1 re-applies old trials and needs clip_ratio")
        if penalty_value is not None and not math.isfinite(penalty_value):
            raise HwnasError(f"penalty_value must be finite or None, got {penalty_value}")
        self._learning_rate = learning_rate
        self._baseline_decay = baseline_decay
        self._entropy_weight = entropy_weight
        self._normalize = normalize_advantage
        self._clip_ratio = clip_ratio
        self._ppo_window = ppo_window
        self._penalty_value = penalty_value
        self._rng = np.random.default_rng(seed)
        self._random = RandomSampler(seed=seed)
        self._lock = threading.RLock()
        self._cache: tuple[tuple[int, int], ReplayState] | None = None
        self._snapshots: OrderedDict[int, CategoricalPolicy] = OrderedDict()
        self._sampled_probs: dict[int, dict[str, float]] = {}

    # ------------------------------------------------------------ replay ---
    def _replayed_states(self) -> tuple[TrialState, ...]:
        return (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL)

    def _reward(self, trial: FrozenTrial, direction: StudyDirection) -> float | None:
        if trial.state == TrialState.FAIL and trial.user_attrs.get(INTERRUPTED_ATTR):
            return None  # re-queued: it will be run again
        if trial.state == TrialState.COMPLETE and trial.values is not None:
            value = trial.values[0]
            if not math.isfinite(value):
                value = self._failed_value()
        elif self._penalty_value is not None:
            value = self._penalty_value
        elif trial.state == TrialState.PRUNED:
            value = _last_intermediate(trial)
        else:
            value = self._failed_value()
        if value is None:
            return None
        return -value if direction == StudyDirection.MINIMIZE else value

    def _failed_value(self) -> float:
        return FAILED_REWARD if self._penalty_value is None else self._penalty_value

    def fresh_state(self) -> ReplayState:
        """The state before any trial: uniform policy, no baseline."""
        return ReplayState(CategoricalPolicy(),
                           RewardBaseline(self._baseline_decay, self._normalize))

    def apply(self, state: ReplayState, trial: FrozenTrial, direction: StudyDirection) -> None:
        """Learn from one finished trial, in place; trials must come in number order."""
        state.numbers = (*state.numbers, trial.number)
        reward = self._reward(trial, direction)
        decisions = _decisions(trial)
        if reward is None or not decisions:
            return
        advantage = state.baseline.advantage(reward)
        probs = trial.system_attrs.get(BEHAVIOUR_PROBS_ATTR) or {}
        state.window = [*state.window, (decisions, probs, advantage)][-self._ppo_window:]
        for past_decisions, past_probs, past_advantage in state.window:
            state.policy.step(past_decisions, past_advantage, self._learning_rate,
                              self._entropy_weight, self._clip_ratio, past_probs)

    def replay(self, trials: Iterable[FrozenTrial], direction: StudyDirection) -> ReplayState:
        """The controller's state after the given finished trials, replayed by number."""
        state = self.fresh_state()
        for trial in sorted(trials, key=lambda t: t.number):
            self.apply(state, trial, direction)
        return state

    def _sync(self, study: Study) -> ReplayState:
        study = _whole_study(study)
        trials = sorted(study.get_trials(deepcopy=False, states=self._replayed_states()),
                        key=lambda t: t.number)
        numbers = tuple(t.number for t in trials)
        key = (id(study._storage), study._study_id)
        with self._lock:
            cached = self._cache[1] if self._cache and self._cache[0] == key else None
            if cached is not None and numbers == cached.numbers:
                return cached
            if cached is not None and numbers[: len(cached.numbers)] == cached.numbers:
                state, todo = cached.copy(), trials[len(cached.numbers):]
            else:
                state, todo = self.fresh_state(), trials
            for trial in todo:
                self.apply(state, trial, study.direction)
            self._cache = (key, state)
            return state

    def policy(self, study: Study) -> CategoricalPolicy:
        """A copy of the policy learned from ``study``'s finished trials so far."""
        self._raise_error_if_multi_objective(study)
        return self._sync(study).policy.copy()

    # ----------------------------------------------------- Optuna sampler ---
    def reseed_rng(self) -> None:
        with self._lock:
            self._rng = np.random.default_rng()
            self._random.reseed_rng()

    def infer_relative_search_space(
        self, study: Study, trial: FrozenTrial
    ) -> dict[str, BaseDistribution]:
        return {}

    def sample_relative(
        self, study: Study, trial: FrozenTrial, search_space: dict[str, BaseDistribution]
    ) -> dict[str, Any]:
        return {}

    def before_trial(self, study: Study, trial: FrozenTrial) -> None:
        self._raise_error_if_multi_objective(study)
        policy = self._sync(study).policy
        with self._lock:
            self._snapshots[trial._trial_id] = policy
            while len(self._snapshots) > _MAX_OPEN_TRIALS:
                dropped, _ = self._snapshots.popitem(last=False)
                self._sampled_probs.pop(dropped, None)

    def sample_independent(
        self,
        study: Study,
        trial: FrozenTrial,
        param_name: str,
        param_distribution: BaseDistribution,
    ) -> Any:
        if not isinstance(param_distribution, CategoricalDistribution):
            return self._random.sample_independent(study, trial, param_name, param_distribution)
        policy = self._snapshots.get(trial._trial_id)
        if policy is None:
            policy = self._sync(study).policy
        choices = param_distribution.choices
        probs = policy.probabilities(param_name, choices)
        with self._lock:
            index = _draw(probs, float(self._rng.random()))
            self._sampled_probs.setdefault(trial._trial_id, {})[param_name] = float(probs[index])
        return choices[index]

    def after_trial(
        self,
        study: Study,
        trial: FrozenTrial,
        state: TrialState,
        values: Sequence[float] | None,
    ) -> None:
        with self._lock:
            self._snapshots.pop(trial._trial_id, None)
            probs = self._sampled_probs.pop(trial._trial_id, None)
        if probs:
            study._storage.set_trial_system_attr(trial._trial_id, BEHAVIOUR_PROBS_ATTR, probs)


def _whole_study(study: Study) -> Study:
    """The study itself, not Hyperband's per-bracket view of it.

    Optuna hands samplers a view holding one bracket's trials when the pruner is
    Hyperband; the controller learns from every trial's final reward instead.
    """
    return getattr(study, "_study", study)


def _last_intermediate(trial: FrozenTrial) -> float | None:
    """The value a pruned trial reported last (None if it reported none or a non-finite one)."""
    if not trial.intermediate_values:
        return None
    value = trial.intermediate_values[max(trial.intermediate_values)]
    return float(value) if math.isfinite(value) else None


def _decisions(trial: FrozenTrial) -> dict[str, Pick]:
    """The trial's categorical decisions as ``{name: (choices, index)}``."""
    out: dict[str, Pick] = {}
    for name, dist in trial.distributions.items():
        if isinstance(dist, CategoricalDistribution) and len(dist.choices) > 1:
            out[name] = (dist.choices, int(dist.to_internal_repr(trial.params[name])))
    return out


def _draw(probs: np.ndarray, u: float) -> int:
    """Index drawn from ``probs`` by inverting the CDF at ``u`` in [0, 1)."""
    index = int(np.searchsorted(np.cumsum(probs), u * probs.sum(), side="right"))
    return min(index, len(probs) - 1)

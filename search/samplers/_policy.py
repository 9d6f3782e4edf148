"""The controller's policy and its REINFORCE/PPO update, free of Optuna.

The policy is factorised: one independent softmax over the choices of each
categorical decision, ``pi(a | name) = softmax(theta[name])[a]``, with one logit
per (decision name, choice). An architecture's log-probability is the sum over
the decisions it took, so the score-function gradient splits per decision:

    d log pi(a) / d theta[name][c] = 1[c == a] - pi(c | name)

REINFORCE (Williams 1992) ascends ``A * d log pi(a)`` where the advantage ``A``
is the reward minus a baseline (:class:`RewardBaseline`). With PPO-style
clipping (Schulman et al. 2017, eq. 7) each decision is weighted by its ratio
``rho = pi(a) / pi_old(a)`` to the probability it was sampled with, and the step
is dropped where ``rho`` already left ``[1 - eps, 1 + eps]`` in the direction the
advantage pushes. Ratios are taken per decision, not for the whole architecture:
with twenty or more decisions the joint ratio would be clipped almost always.

Choices are keyed by ``repr`` so that ``1``, ``1.0``, ``True`` and ``"1"`` stay
distinct choices, as they are for ``optuna.distributions.CategoricalDistribution``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

# What the controller picked at one decision (hwnas.space.Decision): its declared
# choices and the index taken.
Pick = tuple[Sequence[object], int]


def choice_key(choice: object) -> str:
    """Key of one choice in the logit table.

    >>> choice_key(3), choice_key("3"), choice_key(3.0)
    ('3', "'3'", '3.0')
    """
    return repr(choice)


def softmax(logits: np.ndarray) -> np.ndarray:
    """Numerically stable softmax of a 1-D array."""
    z = np.exp(logits - logits.max())
    return z / z.sum()


@dataclass
class CategoricalPolicy:
    """Independent softmax logits per categorical decision; all start at 0 (uniform).

    Example:
        >>> policy = CategoricalPolicy()
        >>> policy.probabilities("kernel", (3, 5)).tolist()
        [0.5, 0.5]
        >>> policy.step({"kernel": ((3, 5), 1)}, advantage=1.0, learning_rate=0.5)
        >>> policy.best("kernel", (3, 5))
        5
    """

    table: dict[str, dict[str, float]] = field(default_factory=dict)

    def copy(self) -> CategoricalPolicy:
        """An independent copy (the sampler hands snapshots to running trials)."""
        return CategoricalPolicy({name: dict(row) for name, row in self.table.items()})

    def as_dict(self) -> dict[str, dict[str, float]]:
        """The logits as ``{decision: {repr(choice): logit}}``, sorted by decision name."""
        return {name: dict(self.table[name]) for name in sorted(self.table)}

    def logits(self, name: str, choices: Sequence[object]) -> np.ndarray:
        """Logits of ``choices`` of decision ``name``; unseen choices have logit 0."""
        row = self.table.get(name, {})
        return np.array([row.get(choice_key(c), 0.0) for c in choices], dtype=float)

    def probabilities(self, name: str, choices: Sequence[object]) -> np.ndarray:
        """The policy's distribution over ``choices`` of decision ``name``."""
        return softmax(self.logits(name, choices))

    def best(self, name: str, choices: Sequence[object]) -> object:
        """The most probable choice of ``name`` (the first one on ties)."""
        return choices[int(np.argmax(self.logits(name, choices)))]

    def step(
        self,
        decisions: Mapping[str, Pick],
        advantage: float,
        learning_rate: float,
        entropy_weight: float = 0.0,
        clip_ratio: float | None = None,
        behaviour_probs: Mapping[str, float] | None = None,
    ) -> None:
        """One policy-gradient ascent step on the decisions of one trial.

        Args:
            decisions: ``{name: (choices, index picked)}`` for each categorical decision.
            advantage: Reward minus baseline (already normalised if wanted).
            learning_rate: Step size on the logits.
            entropy_weight: Weight of the entropy bonus ``beta * H(pi(. | name))``
                added to each decision's objective (Williams & Peng 1991).
            clip_ratio: PPO's ``eps``; ``None`` gives plain REINFORCE (no ratio).
            behaviour_probs: ``pi_old(a)`` per decision, the probability each choice
                was sampled with; a decision missing here counts as on-policy.
        """
        behaviour_probs = behaviour_probs or {}
        for name, (choices, index) in decisions.items():
            probs = self.probabilities(name, choices)
            grad = -probs * advantage
            grad[index] += advantage
            if clip_ratio is not None:
                grad *= _clipped_weight(
                    probs[index], behaviour_probs.get(name), advantage, clip_ratio
                )
            if entropy_weight:
                # dH/dtheta_c = -pi_c * (log pi_c + H)
                log_p = np.log(np.maximum(probs, np.finfo(float).tiny))
                entropy = -float(np.dot(probs, log_p))
                grad += entropy_weight * (-probs * (log_p + entropy))
            row = self.table.setdefault(name, {})
            for choice, g in zip(choices, grad, strict=True):
                key = choice_key(choice)
                row[key] = row.get(key, 0.0) + learning_rate * float(g)


def _clipped_weight(
    prob: float, behaviour_prob: float | None, advantage: float, clip_ratio: float
) -> float:
    """Weight of one decision's REINFORCE gradient under PPO's clipped surrogate.

    The surrogate ``min(rho * A, clip(rho, 1 - eps, 1 + eps) * A)`` has gradient
    ``rho * A * d log pi`` unless the clipped term is the smaller one, where it is 0.
    """
    if behaviour_prob is None or behaviour_prob <= 0.0:
        return 1.0
    ratio = prob / behaviour_prob
    if (advantage > 0 and ratio > 1.0 + clip_ratio) or (advantage < 0 and ratio < 1.0 - clip_ratio):
        return 0.0
    return ratio


@dataclass
class RewardBaseline:
    """Exponential-moving-average baseline, optionally scaling advantages by the reward std.

    The baseline starts at the first reward (so the first trial teaches nothing)
    and then follows ``b <- decay * b + (1 - decay) * r`` after each advantage is
    taken. With ``normalize`` the advantage is divided by the standard deviation
    of all rewards so far (Welford's running variance), which makes the learning
    rate independent of the reward's units: accuracies near 0.7 and counts up
    to 6 then learn at the same pace.

    Example:
        >>> b = RewardBaseline(decay=0.5, normalize=False)
        >>> b.advantage(1.0), b.advantage(3.0), b.value
        (0.0, 2.0, 2.0)
    """

    decay: float
    normalize: bool = True
    value: float | None = None
    count: int = 0
    mean: float = 0.0
    sum_sq: float = 0.0  # Welford's M2: sum of squared deviations from the running mean

    def copy(self) -> RewardBaseline:
        return RewardBaseline(
            self.decay, self.normalize, self.value, self.count, self.mean, self.sum_sq
        )

    def advantage(self, reward: float) -> float:
        """Advantage of ``reward`` against the current baseline, then fold it in."""
        self.count += 1
        delta = reward - self.mean
        self.mean += delta / self.count
        self.sum_sq += delta * (reward - self.mean)
        if self.value is None:
            self.value = reward
            return 0.0
        advantage = reward - self.value
        self.value = self.decay * self.value + (1.0 - self.decay) * reward
        if not self.normalize:
            return advantage
        std = math.sqrt(self.sum_sq / (self.count - 1))
        return advantage / std if std > _MIN_STD else 0.0


# Below this spread, rewards are treated as all equal (advantage 0) when normalising.
_MIN_STD = 1e-12

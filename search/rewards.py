"""Rewards: how a candidate's proxy accuracy and predicted latency become the
value the controller maximises.

=========  ===================================================  ==============================
name       value                                                source
=========  ===================================================  ==============================
soft       ``ACC * (LAT/TAR)^w``, ``w = alpha = beta = -0.07``   MnasNet, Tan et al. 2019, Eq. 2
hard       ``ACC * (LAT/TAR)^w``, ``alpha = 0``, ``beta = -1``   MnasNet, Tan et al. 2019, Eq. 2
abs        ``ACC + beta * |LAT/TAR - 1|``, ``beta = -0.10``      TuNAS, Bender et al. 2020, Eq. 3
pareto     ``(ACC, LAT)``: accuracy up, latency down            multi-objective (Optuna)
=========  ===================================================  ==============================

``w`` in the MnasNet rows is ``alpha`` when ``LAT <= TAR`` and ``beta``
otherwise. ``--w`` overrides the exponent: both ``alpha`` and ``beta`` for
``soft``, ``beta`` for ``hard`` (``alpha`` stays 0: a net under budget is
judged by accuracy alone), and ``beta`` for ``abs``.

>>> r = make_reward("soft", 50.0)
>>> round(r(0.75, 100.0), 4)    # 0.75 * 2 ** -0.07
0.7145
>>> make_reward("hard", 50.0)(0.75, 40.0)    # under budget: accuracy alone
0.75
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass

from hwnas.common.errors import HwnasError

# MnasNet (Tan et al., CVPR 2019, Sec. 3.1, Eq. 2): "we simply set alpha = beta
# = -0.07" so that a net twice as slow must be ~5% more accurate to win.
MNAS_SOFT_W = -0.07
# MnasNet Sec. 3.1: alpha = 0, beta = -1 makes latency a hard constraint
# (reward = ACC under budget, ACC * TAR / LAT over it).
MNAS_HARD_ALPHA = 0.0
MNAS_HARD_BETA = -1.0
# TuNAS (Bender, Liu et al., CVPR 2020, Sec. 4, "absolute value reward"):
# reward = Q + beta * |T/T0 - 1| with beta < 0. -0.10 is the released code's
# default (google-research/tunas, mobile_architecture_search.py flag
# rl_cost_model_exponent; formula in search_space_utils.reward_for_single_cost_model).
TUNAS_BETA = -0.10


class Reward(ABC):
    """A reward for a latency target of ``target_ms`` milliseconds.

    ``__call__(acc, lat)`` takes the proxy accuracy in [0, 1] and the predicted
    latency in ms. Single-objective rewards return one float (higher is
    better); multi-objective ones return a tuple in the study's directions.
    """

    name: str
    multi_objective: bool = False
    target_ms: float

    @abstractmethod
    def __call__(self, acc: float, lat: float) -> float | tuple[float, float]:
        """The reward of a net with accuracy ``acc`` and latency ``lat`` (ms)."""

    def describe(self) -> str:
        """The formula with its constants filled in."""
        return self.name


def _check_lat(lat: float) -> None:
    if not lat > 0 or math.isinf(lat):
        raise HwnasError(f"latency {lat!r} ms must be a positive finite number")


@dataclass(frozen=True)
class MnasReward(Reward):
    """MnasNet's ``ACC * (LAT/TAR)^w``, ``w = alpha if LAT <= TAR else beta``.

    >>> r = MnasReward("soft", 50.0, alpha=-0.07, beta=-0.07)
    >>> round(r(0.8, 25.0), 4)    # 0.8 * 0.5 ** -0.07: faster than needed earns a little
    0.8398
    """

    name: str
    target_ms: float
    alpha: float
    beta: float

    def __call__(self, acc: float, lat: float) -> float:
        _check_lat(lat)
        # MnasNet Eq. 2: ACC(m) * [LAT(m) / T]^w, w = alpha if LAT(m) <= T else beta
        w = self.alpha if lat <= self.target_ms else self.beta
        return float(acc) * (lat / self.target_ms) ** w

    def describe(self) -> str:
        return (f"ACC * (LAT/{self.target_ms:g}ms)^w, w = {self.alpha:g} if LAT <= "
                f"{self.target_ms:g}ms else {self.beta:g}  (MnasNet)")


@dataclass(frozen=True)
class AbsReward(Reward):
    """TuNAS's absolute reward ``ACC + beta * |LAT/TAR - 1|`` (``beta < 0``).

    >>> round(AbsReward("abs", 50.0, beta=-0.1)(0.8, 60.0), 4)    # 0.8 - 0.1 * 0.2
    0.78
    """

    name: str
    target_ms: float
    beta: float

    def __call__(self, acc: float, lat: float) -> float:
        _check_lat(lat)
        # TuNAS Eq. 3: Q(y) + beta * |T(y) / T0 - 1|
        return float(acc) + self.beta * abs(lat / self.target_ms - 1.0)

    def describe(self) -> str:
        return f"ACC + {self.beta:g} * |LAT/{self.target_ms:g}ms - 1|  (TuNAS)"


@dataclass(frozen=True)
class ParetoReward(Reward):
    """Two objectives, ``(ACC, LAT)``: maximise accuracy, minimise latency.

    The run keeps the accuracy/latency Pareto front; the target only marks
    the budget on plots and picks ``best`` (most accurate net within it).
    """

    name: str
    target_ms: float
    multi_objective: bool = True
    directions: tuple[str, str] = ("maximize", "minimize")

    def __call__(self, acc: float, lat: float) -> tuple[float, float]:
        _check_lat(lat)
        return float(acc), float(lat)

    def describe(self) -> str:
        return "(ACC max, LAT min): Pareto front"


@dataclass(frozen=True)
class RewardKind:
    """A registered reward: how to make it and what it accepts.

    Attributes:
        make: ``(target_ms, w) -> Reward``; ``w`` is None or already checked.
        w_rule: what ``--w`` may be: ``"<= 0"``, ``"< 0"``, or None (no ``w``).
        multi_objective: the reward returns ``(ACC, LAT)`` (a Pareto search).
        help: one line for ``--help`` and the docs.
    """

    make: Callable[[float, float | None], Reward]
    w_rule: str | None
    multi_objective: bool
    help: str


# The rewards by name, in the order --help lists them. To add a reward: write
# its Reward class above and add one entry here; the config, the CLI choices and
# the docs read this table.
REWARD_REGISTRY: dict[str, RewardKind] = {
    "soft": RewardKind(
        lambda t, w: MnasReward("soft", t, alpha=MNAS_SOFT_W if w is None else w,
                                beta=MNAS_SOFT_W if w is None else w),
        "<= 0", False, "MnasNet ACC*(LAT/TAR)^w, w = -0.07 on both sides of the budget"),
    "hard": RewardKind(
        lambda t, w: MnasReward("hard", t, alpha=MNAS_HARD_ALPHA,
                                beta=MNAS_HARD_BETA if w is None else w),
        "<= 0", False, "MnasNet with w = 0 under the budget, -1 over it"),
    "abs": RewardKind(lambda t, w: AbsReward("abs", t, beta=TUNAS_BETA if w is None else w),
                      "< 0", False, "TuNAS ACC + beta*|LAT/TAR - 1|, beta = -0.10"),
    "pareto": RewardKind(lambda t, _w: ParetoReward("pareto", t), None, True,
                         "multi-objective: the accuracy/latency Pareto front"),
}
REWARD_NAMES = tuple(REWARD_REGISTRY)


def make_reward(name: str, target_ms: float, w: float | None = None) -> Reward:
    """The reward called ``name`` for a target of ``target_ms`` ms.

    Args:
        name: One of :data:`REWARD_NAMES`.
        target_ms: The latency budget TAR in ms (> 0).
        w: Overrides the exponent of ``soft``/``hard`` or ``beta`` of ``abs``.

    Raises:
        HwnasError: Unknown name, non-positive target, or a ``w`` the reward
            cannot take (positive, which would reward slow nets; any ``w`` with
            ``pareto``).
    """
    if name not in REWARD_REGISTRY:
        raise HwnasError(f"unknown reward {name!r}: known are {', '.join(REWARD_NAMES)}")
    if not target_ms > 0 or math.isinf(target_ms):
        raise HwnasError(f"latency target {target_ms!r} ms must be a positive finite number")
    kind = REWARD_REGISTRY[name]
    if w is not None:
        if kind.w_rule is None:
            raise HwnasError(f"reward {name} has no exponent to override (got w={w!r})")
        if math.isnan(w) or w > 0 or (kind.w_rule == "< 0" and w == 0):
            raise HwnasError(f"w={w!r} for reward {name}: need w {kind.w_rule} (a positive w "
                             "would reward slower nets)")
    return kind.make(target_ms, w)

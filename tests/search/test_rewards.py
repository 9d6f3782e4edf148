"""Rewards: worked numbers for each formula, presets, overrides, bad input."""

from __future__ import annotations

import math

import pytest

from hwnas.search.rewards import (
    MNAS_HARD_BETA,
    MNAS_SOFT_W,
    REWARD_NAMES,
    TUNAS_BETA,
    AbsReward,
    MnasReward,
    make_reward,
)

TAR = 50.0


# --------------------------------------------------------- worked numbers ---
@pytest.mark.parametrize(("acc", "lat", "expected"), [
    (0.75, 50.0, 0.75),                  # on target: (1)^w = 1
    (0.75, 100.0, 0.7144785),            # 0.75 * 2^-0.07 = 0.75 * 0.9526380
    (0.80, 25.0, 0.8397733),             # 0.80 * 0.5^-0.07 = 0.80 * 1.0497167
    (0.60, 75.0, 0.5832099),             # 0.60 * 1.5^-0.07 = 0.60 * 0.9720164
])
def test_soft_mnasnet_numbers(acc: float, lat: float, expected: float) -> None:
    assert make_reward("soft", TAR)(acc, lat) == pytest.approx(expected, abs=1e-7)


def test_soft_matches_mnasnet_rule_of_thumb() -> None:
    # MnasNet Sec. 3.1: with w = -0.07, a net twice as slow needs ~5% more accuracy
    # (relative) for the same reward: 2^0.07 = 1.0497.
    r = make_reward("soft", TAR)
    assert r(0.70 * 2 ** 0.07, 2 * TAR) == pytest.approx(r(0.70, TAR))


@pytest.mark.parametrize(("acc", "lat", "expected"), [
    (0.75, 40.0, 0.75),        # under budget: alpha = 0, accuracy alone
    (0.75, 50.0, 0.75),
    (0.75, 100.0, 0.375),      # 0.75 * (100/50)^-1
    (0.90, 60.0, 0.75),        # 0.90 * 50/60
])
def test_hard_mnasnet_numbers(acc: float, lat: float, expected: float) -> None:
    assert make_reward("hard", TAR)(acc, lat) == pytest.approx(expected, abs=1e-12)


@pytest.mark.parametrize(("acc", "lat", "expected"), [
    (0.80, 50.0, 0.80),
    (0.80, 60.0, 0.78),        # 0.80 - 0.10 * |1.2 - 1|
    (0.80, 40.0, 0.78),        # symmetric: 0.80 - 0.10 * |0.8 - 1|
    (0.70, 100.0, 0.60),       # 0.70 - 0.10 * 1
])
def test_abs_tunas_numbers(acc: float, lat: float, expected: float) -> None:
    assert make_reward("abs", TAR)(acc, lat) == pytest.approx(expected, abs=1e-12)


def test_pareto_returns_both_objectives() -> None:
    r = make_reward("pareto", TAR)
    assert r.multi_objective
    assert r(0.8, 42.0) == (0.8, 42.0)
    assert r.directions == ("maximize", "minimize")


# ----------------------------------------------------- presets, overrides ---
def test_presets_carry_the_published_constants() -> None:
    soft, hard, ab = (make_reward(n, TAR) for n in ("soft", "hard", "abs"))
    assert isinstance(soft, MnasReward) and (soft.alpha, soft.beta) == (-0.07, -0.07)
    assert MNAS_SOFT_W == -0.07
    assert isinstance(hard, MnasReward) and (hard.alpha, hard.beta) == (0.0, -1.0)
    assert MNAS_HARD_BETA == -1.0
    assert isinstance(ab, AbsReward) and ab.beta == TUNAS_BETA == -0.10
    for name in ("soft", "hard", "abs"):
        assert make_reward(name, TAR).name == name
        assert not make_reward(name, TAR).multi_objective


def test_w_overrides_each_reward() -> None:
    soft = make_reward("soft", TAR, w=-0.15)
    assert (soft.alpha, soft.beta) == (-0.15, -0.15)
    assert soft(0.75, 100.0) == pytest.approx(0.75 * 2 ** -0.15)
    hard = make_reward("hard", TAR, w=-2.0)
    assert (hard.alpha, hard.beta) == (0.0, -2.0)
    assert hard(0.8, 100.0) == pytest.approx(0.2)          # 0.8 * 2^-2
    ab = make_reward("abs", TAR, w=-0.5)
    assert ab(0.8, 60.0) == pytest.approx(0.7)             # 0.8 - 0.5 * 0.2
    assert make_reward("soft", TAR, w=0.0)(0.6, 500.0) == 0.6   # w = 0: accuracy only


def test_rewards_rank_as_the_papers_intend() -> None:
    """Same accuracy: the soft and hard rewards prefer the faster net; the
    absolute reward prefers the net closest to the target."""
    for name in ("soft", "hard"):
        r = make_reward(name, TAR)
        assert r(0.7, 80.0) < r(0.7, 60.0)
    ab = make_reward("abs", TAR)
    assert ab(0.7, 50.0) > ab(0.7, 45.0) > ab(0.7, 30.0)


def test_describe_shows_constants() -> None:
    assert "-0.07" in make_reward("soft", TAR).describe()
    assert "TuNAS" in make_reward("abs", TAR).describe()


def test_nan_accuracy_gives_nan_reward() -> None:
    assert math.isnan(make_reward("soft", TAR)(math.nan, 40.0))


# -------------------------------------------------------------- bad input ---
@pytest.mark.parametrize(("args", "match"), [
    (("tunas", TAR), "unknown reward 'tunas': known are soft, hard, abs, pareto"),
    (("soft", 0.0), "latency target 0.0 ms"),
    (("soft", -3.0), "latency target -3.0 ms"),
    (("soft", TAR, 0.07), "w=0.07 for reward soft: need w <= 0"),
    (("abs", TAR, 0.0), "w=0.0 for reward abs: need w < 0"),
    (("pareto", TAR, -0.07), "reward pareto has no exponent"),
])
def test_bad_reward_arguments(args: tuple, match: str) -> None:
    with pytest.raises(ValueError, match=match.replace("(", r"\(")) as e:
        make_reward(*args)
    assert "\n" not in str(e.value)


@pytest.mark.parametrize("name", REWARD_NAMES)
@pytest.mark.parametrize("lat", [0.0, -1.0, math.inf, math.nan])
def test_bad_latency(name: str, lat: float) -> None:
    with pytest.raises(ValueError, match="must be a positive finite number"):
        make_reward(name, TAR)(0.5, lat)

"""Samplers: a shared suite over every ``make_sampler`` name, then the RL controller."""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import optuna
import pytest
from optuna.distributions import CategoricalDistribution
from optuna.study import StudyDirection
from optuna.trial import TrialState, create_trial

from hwnas.common.errors import HwnasError
from hwnas.search.config import SearchConfig, parse_config
from hwnas.search.samplers import (
    BEHAVIOUR_PROBS_ATTR,
    FAILED_REWARD,
    INTERRUPTED_ATTR,
    MULTI_OBJECTIVE_SAMPLERS,
    SAMPLER_NAMES,
    SAMPLER_REGISTRY,
    CategoricalPolicy,
    RewardBaseline,
    RLSampler,
    make_sampler,
    nsga2_population,
)

optuna.logging.set_verbosity(optuna.logging.WARNING)

OPS = ("conv", "skip", "pool")
KERNELS = (3, 5, 7)
EXPANSIONS = (1, 3, 6)
SUITE_TRIALS = 24  # past TPE's 10 start-up trials, so its model is exercised too

# Toy problem for the controller: 6 decisions of 4 choices, reward = number of
# decisions equal to a hidden target, plus Gaussian noise.
TOY_CHOICES = ("a", "b", "c", "d")
TOY_TARGET = ("a", "d", "b", "c", "d", "a")
TOY_NOISE = 0.5
TOY_TRIALS = 150
TOY_TAIL = 30
TOY_SEEDS = (0, 1, 2)
# Random sampling averages 6/4 = 1.5; the controller reaches ~5.5 (see DEFAULT_LEARNING_RATE).
TOY_MARGIN = 2.0


def block(trial: optuna.trial.BaseTrial) -> float:
    """A define-by-run space with a conditional decision: ``kernel`` only for ``conv``."""
    op = trial.suggest_categorical("op", OPS)
    expand = trial.suggest_categorical("expand", EXPANSIONS)
    score = {"conv": 1.0, "skip": 0.2, "pool": 0.5}[op] + expand / 10
    if op == "conv":
        score -= abs(trial.suggest_categorical("kernel", KERNELS) - 5) / 10
    return score


def run(name: str, seed: int, n_trials: int = SUITE_TRIALS, storage: str | None = None,
        objective: Callable[[optuna.trial.Trial], float] = block) -> optuna.Study:
    study = optuna.create_study(direction="maximize", sampler=make_sampler(name, seed=seed),
                                storage=storage)
    study.optimize(objective, n_trials=n_trials)
    return study


def toy_objective(seed: int, sign: float = 1.0) -> Callable[[optuna.trial.Trial], float]:
    noise = np.random.default_rng(seed + 1000)

    def objective(trial: optuna.trial.Trial) -> float:
        picks = [trial.suggest_categorical(f"d{i}", TOY_CHOICES) for i in range(len(TOY_TARGET))]
        hits = sum(p == t for p, t in zip(picks, TOY_TARGET, strict=True))
        return sign * (hits + noise.normal(0.0, TOY_NOISE))

    return objective


def toy_hits(policy: CategoricalPolicy) -> int:
    return sum(policy.best(f"d{i}", TOY_CHOICES) == t for i, t in enumerate(TOY_TARGET))


# ------------------------------------------------------------ shared suite ---
@pytest.mark.parametrize("name", SAMPLER_NAMES)
def test_same_seed_gives_same_params(name: str) -> None:
    first = [t.params for t in run(name, seed=3).trials]
    assert [t.params for t in run(name, seed=3).trials] == first
    assert [t.params for t in run(name, seed=4).trials] != first


@pytest.mark.parametrize("name", SAMPLER_NAMES)
def test_reseed_rng_changes_the_draws(name: str) -> None:
    def draws(reseed: bool) -> list[dict]:
        sampler = make_sampler(name, seed=0)
        if reseed:
            sampler.reseed_rng()
        study = optuna.create_study(sampler=sampler, direction="maximize")
        study.optimize(toy_objective(0), n_trials=8)
        return [t.params for t in study.trials]

    assert draws(reseed=True) != draws(reseed=False)


@pytest.mark.parametrize("name", SAMPLER_NAMES)
def test_params_within_choices_and_conditional(name: str) -> None:
    trials = run(name, seed=0).trials
    for t in trials:
        assert t.state == TrialState.COMPLETE
        assert t.params["op"] in OPS and t.params["expand"] in EXPANSIONS
        assert ("kernel" in t.params) == (t.params["op"] == "conv"), t.params
        if "kernel" in t.params:
            assert t.params["kernel"] in KERNELS
    assert {t.params["op"] for t in trials} >= {"conv", "skip"}


@pytest.mark.parametrize("name", SAMPLER_NAMES)
def test_non_categorical_params_stay_in_bounds(name: str) -> None:
    def objective(trial: optuna.trial.Trial) -> float:
        x = trial.suggest_float("x", -2.0, 3.0)
        n = trial.suggest_int("n", 1, 4)
        width = trial.suggest_categorical("width", (16, 24))
        return -(x**2) + n + width / 10

    for t in run(name, seed=1, n_trials=15, objective=objective).trials:
        assert -2.0 <= t.params["x"] <= 3.0 and 1 <= t.params["n"] <= 4
        assert t.params["width"] in (16, 24)


@pytest.mark.parametrize("name", SAMPLER_NAMES)
@pytest.mark.parametrize("backend", ["memory", "sqlite"])
def test_storages_and_resume(name: str, backend: str, tmp_path) -> None:  # noqa: ANN001
    url = None if backend == "memory" else f"sqlite:///{tmp_path / 'study.db'}"
    storage = optuna.storages.InMemoryStorage() if url is None else url
    study = optuna.create_study(study_name="s", direction="maximize", storage=storage,
                                sampler=make_sampler(name, seed=0))
    study.optimize(block, n_trials=8)
    again = optuna.load_study(study_name="s", storage=storage, sampler=make_sampler(name, seed=1))
    again.optimize(block, n_trials=6)
    trials = again.get_trials(states=(TrialState.COMPLETE,))
    assert [t.number for t in trials] == list(range(14))
    assert all(t.params["op"] in OPS for t in trials)


def test_threads_share_one_rl_sampler() -> None:
    sampler = make_sampler("rl", seed=0)
    study = optuna.create_study(direction="maximize", sampler=sampler)
    study.optimize(block, n_trials=12, n_jobs=2)
    assert len(study.get_trials(states=(TrialState.COMPLETE,))) == 12
    # two threads updating the cached policy leave it as a replay of the history in order
    assert sampler.policy(study).as_dict() == RLSampler(seed=0).policy(study).as_dict()
    assert sampler.policy(study).as_dict() != CategoricalPolicy().as_dict()


@pytest.mark.parametrize("name", SAMPLER_NAMES)
def test_the_registry_says_which_samplers_serve_several_objectives(name: str) -> None:
    kind = SAMPLER_REGISTRY[name]
    assert (name in MULTI_OBJECTIVE_SAMPLERS) == kind.multi_objective
    if kind.multi_objective:
        make_sampler(name, seed=0, multi_objective=True)
        SearchConfig(target="pixel", latency="50ms", reward="pareto", sampler=name)
    else:
        with pytest.raises(HwnasError, match="single objective"):
            make_sampler(name, seed=0, multi_objective=True)
        with pytest.raises(HwnasError, match="optimises one objective"):
            parse_config({"target": "pixel", "latency": "50ms", "reward": "pareto",
                          "sampler": name})


def test_rl_refuses_multi_objective() -> None:
    with pytest.raises(ValueError, match="single objective.*tpe, nsga2, random"):
        make_sampler("rl", seed=0, multi_objective=True)
    study = optuna.create_study(directions=["maximize", "minimize"], sampler=RLSampler(seed=0))
    with pytest.raises(ValueError, match="multi-objective"):
        study.optimize(lambda t: (block(t), 1.0), n_trials=1)


def test_unknown_sampler_lists_known_ones() -> None:
    with pytest.raises(ValueError, match="'cmaes'.*tpe, nsga2, random, rl"):
        make_sampler("cmaes", seed=0)


def test_default_sampler_by_objectives() -> None:
    assert isinstance(make_sampler(None, seed=0), optuna.samplers.TPESampler)
    assert isinstance(make_sampler(None, seed=0, multi_objective=True),
                      optuna.samplers.NSGAIISampler)
    assert isinstance(make_sampler(seed=0), optuna.samplers.TPESampler)


# --------------------------------------------------------- policy maths ---
def test_reinforce_step_exact() -> None:
    policy = CategoricalPolicy()
    policy.step({"k": (TOY_CHOICES, 2)}, advantage=1.0, learning_rate=1.0)
    # grad = onehot - p with p uniform = 1/4
    assert policy.logits("k", TOY_CHOICES).tolist() == [-0.25, -0.25, 0.75, -0.25]
    policy.step({"k": (TOY_CHOICES, 2)}, advantage=-4.0, learning_rate=1.0)
    assert policy.best("k", TOY_CHOICES) != "c"


def test_choices_are_keyed_by_repr() -> None:
    policy = CategoricalPolicy()
    policy.step({"k": ((1, "1", 1.0), 0)}, advantage=1.0, learning_rate=1.0)
    assert policy.as_dict() == {"k": pytest.approx({"1": 2 / 3, "'1'": -1 / 3, "1.0": -1 / 3})}


@pytest.mark.parametrize(("behaviour", "advantage", "moves"), [
    (0.25, 1.0, True),    # on-policy: ratio 1
    (0.10, 1.0, False),   # ratio 2.5 > 1.2 and A > 0: clipped
    (0.10, -1.0, True),   # ratio 2.5 but A < 0: not clipped
    (0.50, -1.0, False),  # ratio 0.5 < 0.8 and A < 0: clipped
    (0.50, 1.0, True),    # ratio 0.5 and A > 0: not clipped
])
def test_ppo_clipping(behaviour: float, advantage: float, moves: bool) -> None:
    policy = CategoricalPolicy()
    policy.step({"k": (TOY_CHOICES, 1)}, advantage, learning_rate=1.0, clip_ratio=0.2,
                behaviour_probs={"k": behaviour})
    logits = policy.logits("k", TOY_CHOICES)
    assert bool(np.any(logits != 0.0)) == moves
    if moves:
        ratio = 0.25 / behaviour
        assert logits[1] == pytest.approx(ratio * advantage * 0.75)


def test_entropy_bonus_flattens_the_policy() -> None:
    policy = CategoricalPolicy({"k": {"'a'": 2.0, "'b'": 0.0, "'c'": 0.0, "'d'": -1.0}})

    def entropy() -> float:
        p = policy.probabilities("k", TOY_CHOICES)
        return -float(np.dot(p, np.log(p)))

    before = entropy()
    policy.step({"k": (TOY_CHOICES, 0)}, advantage=0.0, learning_rate=0.5)
    assert entropy() == before
    policy.step({"k": (TOY_CHOICES, 0)}, advantage=0.0, learning_rate=0.5, entropy_weight=1.0)
    assert entropy() > before


def test_baseline_ema_and_normalisation() -> None:
    plain = RewardBaseline(decay=0.95, normalize=False)
    assert [plain.advantage(r) for r in (1.0, 3.0)] == [0.0, 2.0]
    assert plain.value == pytest.approx(0.95 * 1.0 + 0.05 * 3.0)
    scaled = RewardBaseline(decay=0.95)
    assert [scaled.advantage(r) for r in (1.0, 3.0)] == [0.0, pytest.approx(2.0 / math.sqrt(2))]
    same = RewardBaseline(decay=0.95)
    assert [same.advantage(0.7) for _ in range(3)] == [0.0, 0.0, 0.0]


# ------------------------------------------------------- the controller ---
def tail_mean(study: optuna.Study, sign: float = 1.0) -> float:
    return sign * float(np.mean([t.value for t in study.trials[-TOY_TAIL:]]))


@pytest.mark.parametrize("seed", TOY_SEEDS)
@pytest.mark.parametrize(("direction", "sign"), [("maximize", 1.0), ("minimize", -1.0)])
def test_rl_learns_the_toy_problem(seed: int, direction: str, sign: float) -> None:
    studies = {}
    for name in ("rl", "random"):
        studies[name] = optuna.create_study(direction=direction,
                                            sampler=make_sampler(name, seed=seed))
        studies[name].optimize(toy_objective(seed, sign), n_trials=TOY_TRIALS)
    assert tail_mean(studies["rl"], sign) > tail_mean(studies["random"], sign) + TOY_MARGIN
    policy = studies["rl"].sampler.policy(studies["rl"])
    assert toy_hits(policy) >= len(TOY_TARGET) - 1


def test_policy_is_a_function_of_the_history() -> None:
    sampler = RLSampler(seed=0)
    study = optuna.create_study(direction="maximize", sampler=sampler)
    study.optimize(toy_objective(0), n_trials=40)
    learned = sampler.policy(study).as_dict()
    assert learned  # it did learn something
    assert RLSampler(seed=123).policy(study).as_dict() == learned
    shuffled = list(reversed(study.trials))
    state = RLSampler().replay(shuffled, StudyDirection.MAXIMIZE)
    assert state.policy.as_dict() == learned
    assert state.numbers == tuple(range(40))


def test_resumed_study_rebuilds_the_policy(tmp_path) -> None:  # noqa: ANN001
    url = f"sqlite:///{tmp_path / 'rl.db'}"
    first = RLSampler(seed=0)
    study = optuna.create_study(study_name="rl", storage=url, direction="maximize", sampler=first)
    study.optimize(toy_objective(0), n_trials=20)
    resumed = optuna.load_study(study_name="rl", storage=url, sampler=RLSampler(seed=0))
    assert resumed.sampler.policy(resumed).as_dict() == first.policy(study).as_dict()
    resumed.optimize(toy_objective(1), n_trials=5)
    assert len(resumed.trials) == 25


def test_late_finishing_trial_triggers_full_replay() -> None:
    sampler = RLSampler(seed=0)
    study = optuna.create_study(direction="maximize", sampler=sampler)
    study.optimize(toy_objective(0), n_trials=5)
    early, late = study.ask(), study.ask()
    toy = toy_objective(1)
    late_value, early_value = toy(late), toy(early)
    study.tell(late, late_value)
    sampler.policy(study)  # caches trials 0..4 and 6
    study.tell(early, early_value)
    fresh = RLSampler().replay(study.trials, StudyDirection.MAXIMIZE)
    assert sampler.policy(study).as_dict() == fresh.policy.as_dict()
    assert fresh.numbers == tuple(range(7))


def reporting(objective: Callable[[optuna.trial.Trial], float]) -> Callable:
    """``objective`` that reports its value for 3 steps and obeys the pruner."""

    def wrapped(trial: optuna.trial.Trial) -> float:
        value = objective(trial)
        for step in range(3):
            trial.report(value, step)
            if trial.should_prune():
                raise optuna.TrialPruned
        return value

    return wrapped


# Hyperband hands samplers a per-bracket view of the study; the controller must
# still learn from every trial.
@pytest.mark.parametrize("pruner", [optuna.pruners.NopPruner(),
                                    optuna.pruners.HyperbandPruner(min_resource=1, max_resource=3)])
def test_trials_are_sampled_from_the_replayed_policy(pruner: optuna.pruners.BasePruner) -> None:
    study = optuna.create_study(direction="maximize", sampler=RLSampler(seed=0), pruner=pruner)
    study.optimize(reporting(toy_objective(0)), n_trials=25)
    if isinstance(pruner, optuna.pruners.HyperbandPruner):  # the views really differ
        assert len({pruner._get_bracket_id(study, t) for t in study.trials}) > 1
    first = study.trials[0].system_attrs[BEHAVIOUR_PROBS_ATTR]
    assert first == {f"d{i}": 0.25 for i in range(len(TOY_TARGET))}
    for t in study.trials[1:]:
        policy = RLSampler().replay(study.trials[: t.number], StudyDirection.MAXIMIZE).policy
        expected = {name: pytest.approx(float(policy.probabilities(name, TOY_CHOICES)[
            TOY_CHOICES.index(value)])) for name, value in t.params.items()}
        assert t.system_attrs[BEHAVIOUR_PROBS_ATTR] == expected


def _trial(number: int, choice: str, state: TrialState, value: float | None = None):  # noqa: ANN202
    trial = create_trial(state=state, value=value, params={"k": choice},
                         distributions={"k": CategoricalDistribution(TOY_CHOICES)})
    trial.number = number
    return trial


def _pruned(number: int, choice: str, reported: list[float]):  # noqa: ANN202
    trial = _trial(number, choice, TrialState.PRUNED)
    trial.intermediate_values = dict(enumerate(reported))
    return trial


def test_pruned_trials_give_their_last_reward_and_failed_ones_the_floor() -> None:
    history = [_trial(i, "a", TrialState.COMPLETE, 0.5) for i in range(3)]
    # b was pruned after reporting 0.2 then 0.9: it is learnt from with 0.9 (the last),
    # above the baseline; c failed: FAILED_REWARD, below it.
    history += [_pruned(3, "b", [0.2, 0.9]), _trial(4, "c", TrialState.FAIL)]
    logits = RLSampler().replay(history, StudyDirection.MAXIMIZE).policy.logits("k", TOY_CHOICES)
    assert logits[1] > 0 > logits[2]
    assert FAILED_REWARD < 0.5
    # A pruned trial that reported nothing (the prefilter) and an interrupted one teach nothing.
    silent = _trial(3, "b", TrialState.PRUNED)
    interrupted = _trial(4, "c", TrialState.FAIL)
    interrupted.user_attrs = {INTERRUPTED_ATTR: True}
    quiet = RLSampler().replay([*history[:3], silent, interrupted], StudyDirection.MAXIMIZE)
    assert quiet.policy.as_dict() == RLSampler().replay(history[:3], "maximize").policy.as_dict()
    penalised = RLSampler(penalty_value=-10.0).replay(history, StudyDirection.MAXIMIZE)
    logits = penalised.policy.logits("k", TOY_CHOICES)
    assert logits[1] < 0 and logits[2] < 0 and logits[0] > 0 and logits[3] > 0


def test_rl_learns_from_pruned_trials_of_a_study() -> None:
    """In a real study with a pruner, RL's replay includes the pruned trials."""
    study = optuna.create_study(direction="maximize", sampler=RLSampler(seed=0),
                                pruner=optuna.pruners.MedianPruner(n_startup_trials=2))

    def objective(trial: optuna.Trial) -> float:
        v = {"a": 0.1, "b": 0.2, "c": 0.3, "d": 0.9}[trial.suggest_categorical("k", TOY_CHOICES)]
        trial.report(v, 0)
        if trial.should_prune():
            raise optuna.TrialPruned()
        return v

    study.optimize(objective, n_trials=20)
    pruned = study.get_trials(states=(TrialState.PRUNED,))
    assert pruned
    replayed = RLSampler().replay(study.trials, StudyDirection.MAXIMIZE)
    assert set(replayed.numbers) == {t.number for t in study.trials}
    complete_only = RLSampler().replay(
        study.get_trials(states=(TrialState.COMPLETE,)), StudyDirection.MAXIMIZE)
    assert replayed.policy.as_dict() != complete_only.policy.as_dict()


def test_nsga2_population_scales_with_the_budget() -> None:
    assert [nsga2_population(n) for n in (1, 16, 60, 200, 10_000)] == [4, 4, 15, 50, 50]
    sampler = make_sampler("nsga2", seed=0, multi_objective=True, trials=60)
    assert sampler._population_size == 15


@pytest.mark.parametrize("kwargs", [
    {"learning_rate": 0.0}, {"baseline_decay": 1.0}, {"entropy_weight": -0.1},
    {"clip_ratio": 0.0}, {"ppo_window": 0}, {"ppo_window": 3, "clip_ratio": None},
    {"penalty_value": math.inf},
])
def test_rl_sampler_rejects_bad_settings(kwargs: dict) -> None:
    with pytest.raises(ValueError, match=next(iter(kwargs))):
        RLSampler(**kwargs)


def test_ppo_window_and_entropy_still_learn() -> None:
    sampler = RLSampler(seed=0, ppo_window=3, entropy_weight=0.05)
    study = optuna.create_study(direction="maximize", sampler=sampler)
    study.optimize(toy_objective(0), n_trials=TOY_TRIALS)
    assert tail_mean(study) > len(TOY_TARGET) / len(TOY_CHOICES) + TOY_MARGIN


def test_ppo_window_reapplies_recent_trials() -> None:
    history = [_trial(i, c, TrialState.COMPLETE, v)
               for i, (c, v) in enumerate([("a", 0.0), ("b", 1.0), ("c", 3.0), ("d", 0.5)])]
    one = RLSampler().replay(history, StudyDirection.MAXIMIZE)
    two = RLSampler(ppo_window=2).replay(history, StudyDirection.MAXIMIZE)
    assert len(one.window) == 1 and len(two.window) == 2
    assert two.policy.as_dict() != one.policy.as_dict()
    # the reward-3 trial is re-applied once more, so "c" gains more under window 2
    assert two.policy.logits("k", TOY_CHOICES)[2] > one.policy.logits("k", TOY_CHOICES)[2]


@pytest.mark.parametrize("name", SAMPLER_NAMES)
def test_every_sampler_pickles_after_use(name: str) -> None:
    """Ray Tune pickles the searcher holding the sampler (Optuna 5.1's NSGA-II holds a lock)."""
    import pickle

    multi = name in MULTI_OBJECTIVE_SAMPLERS
    sampler = make_sampler(name, seed=0, multi_objective=multi, trials=8)
    study = optuna.create_study(directions=["maximize", "minimize"] if multi else ["maximize"],
                                sampler=sampler)
    study.optimize(lambda t: (t.suggest_float("x", 0, 1),) * (2 if multi else 1), n_trials=3)
    copy = pickle.loads(pickle.dumps(sampler))
    assert type(copy) is type(sampler)
    study.sampler = copy
    study.optimize(lambda t: (t.suggest_float("x", 0, 1),) * (2 if multi else 1), n_trials=1)
    assert len(study.trials) == 4

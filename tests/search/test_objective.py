"""One trial's signal: the pruner sees rewards, the prefilter ranks within a latency band."""

from __future__ import annotations

import itertools
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState
from searchkit import fake_train, tiny_config

from hwnas.search.objective import (
    PREFILTER_ATTR,
    PREFILTER_LATENCY_BAND,
    Components,
    make_objective,
)
from hwnas.search.study import make_pruner

optuna.logging.set_verbosity(optuna.logging.WARNING)


def _comp(tmp_path: Path, **kw) -> Components:
    return Components.build(tiny_config(tmp_path / "run", **kw), tmp_path / "run", with_data=False)


def test_the_pruner_sees_the_reward_not_the_accuracy(tmp_path: Path, monkeypatch) -> None:
    # Every trial reports accuracy 0.6 after its first epoch; the 5th then reports 0.1.
    monkeypatch.setattr("hwnas.search.estimators.train",
                        fake_train(lambda arch, i: 0.1 if i == 4 else 0.6))
    comp = _comp(tmp_path, epochs=2, sampler="random")
    study = optuna.create_study(direction="maximize", pruner=make_pruner("median"),
                                sampler=optuna.samplers.RandomSampler(seed=0))
    study.optimize(make_objective(comp), n_trials=5)
    for t in study.trials:
        acc, lat = t.user_attrs["accuracy"], t.user_attrs["latency_ms"]
        reward = comp.reward(acc, lat)
        assert reward != pytest.approx(acc)  # soft reward: latency counts
        assert t.intermediate_values == {0: pytest.approx(reward)}
    last = study.trials[-1]
    assert last.state == TrialState.PRUNED
    # the pruned trial keeps its last reward for the controllers (RL learns from it)
    assert last.user_attrs["reward"] == pytest.approx(last.intermediate_values[0])


def test_a_fast_net_below_the_median_accuracy_survives_on_its_reward(tmp_path: Path,
                                                                      monkeypatch) -> None:
    """Raw accuracy would prune the last trial (0.58 < 0.6); its reward (2x faster) wins."""
    lats = iter([40.0, 40.0, 40.0, 40.0, 20.0])
    lat_of: dict[str, float] = {}

    def predict(self, arch):  # noqa: ANN001, ANN202
        return lat_of.setdefault(arch.to_str(), next(lats))

    monkeypatch.setattr(Components, "predict_ms", predict)
    monkeypatch.setattr("hwnas.search.estimators.train",
                        fake_train(lambda arch, i: 0.58 if i == 4 else 0.6))
    comp = _comp(tmp_path, epochs=2, latency="30ms")  # soft: 0.58*(20/30)^-0.07 > 0.6*(40/30)^-0.07
    study = optuna.create_study(direction="maximize", pruner=make_pruner("median"),
                                sampler=optuna.samplers.RandomSampler(seed=0))
    study.optimize(make_objective(comp), n_trials=5)
    assert study.trials[-1].state == TrialState.COMPLETE


def test_prefilter_ranks_only_against_similar_latency(tmp_path: Path, monkeypatch) -> None:
    # Slow nets (100 ms) score high, fast ones (10 ms) low, as NASWOT/SynFlow grow with
    # size. Globally every fast net would fall below the median; within its band
    # (PREFILTER_LATENCY_BAND) a fast net is compared with fast nets only.
    lat = itertools.cycle([100.0, 10.0])
    lat_of: dict[str, float] = {}

    def predict(self, arch):  # noqa: ANN001, ANN202
        return lat_of.setdefault(arch.to_str(), next(lat))

    monkeypatch.setattr(Components, "predict_ms", predict)
    scores = iter([50.0, 5.0, 51.0, 5.1, 52.0, 5.2, 53.0, 5.3, 54.0, 5.4, 40.0, 5.5])
    monkeypatch.setattr("hwnas.search.objective.zero_cost_score",
                        lambda arch, data, method, seed=0: next(scores))
    monkeypatch.setattr("hwnas.search.estimators.train", fake_train())
    comp = _comp(tmp_path, prefilter="naswot", prefilter_keep=0.5, reward="hard",
                 latency="200ms")
    study = optuna.create_study(direction="maximize")
    study.optimize(make_objective(comp), n_trials=12)
    assert PREFILTER_LATENCY_BAND < 10  # 10 ms and 100 ms are in different bands
    states = [t.state.name for t in study.trials]
    # the rising fast scores all pass within their band; the slow 40.0 falls below
    # the median of the slow ones (52.0) and is discarded
    assert states == ["COMPLETE"] * 10 + ["PRUNED", "COMPLETE"]
    assert "within 1.25x" in study.trials[10].user_attrs["skipped"]
    assert study.trials[10].user_attrs[PREFILTER_ATTR] == 40.0

"""The run's Optuna study: storage URL and name, pruner registry, seeds,
re-queueing interrupted trials, and the counts that stop a run."""

from __future__ import annotations

from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState
from searchkit import tiny_config

from hwnas.search.cli import build_parser
from hwnas.search.config import SearchConfig
from hwnas.search.study import (
    INTERRUPTED_ATTR,
    PRUNER_NAMES,
    PRUNER_REGISTRY,
    best_value,
    finished_count,
    make_pruner,
    open_study,
    requeue_interrupted,
    sampler_seed,
    started_count,
    storage_url,
    study_name,
)


def _choices(flag: str) -> tuple[str, ...]:
    action = next(a for a in build_parser()._actions if flag in a.option_strings)
    return tuple(action.choices)


def test_pruner_choices_come_from_the_registry() -> None:
    assert PRUNER_NAMES == tuple(PRUNER_REGISTRY) == _choices("--pruner")
    assert isinstance(make_pruner("none"), optuna.pruners.NopPruner)
    assert isinstance(make_pruner("median"), optuna.pruners.MedianPruner)
    for name in PRUNER_NAMES:
        SearchConfig(target="pixel", latency="50ms", pruner=name)  # every one is accepted


def test_storage_url_and_study_name(tmp_path: Path) -> None:
    c = tiny_config(tmp_path / "run")
    assert storage_url(c, tmp_path / "run") == f"sqlite:///{(tmp_path / 'run').resolve()}/study.db"
    assert study_name(c, tmp_path / "run") == "run"
    pg = c.model_copy(update={"storage": "postgresql://u@h/db", "study": "kept"})
    assert storage_url(pg, tmp_path / "moved") == "postgresql+psycopg://u@h/db"
    assert study_name(pg, tmp_path / "moved") == "kept"  # the saved name wins over the folder


def _trial(study: optuna.Study, state: TrialState, value: float | None = None,
           **attrs: object) -> None:
    study.add_trial(optuna.trial.create_trial(
        state=state, value=value, user_attrs=attrs, params={"x": 1},
        distributions={"x": optuna.distributions.CategoricalDistribution([1, 2])}))


def test_requeue_counts_and_best(tmp_path: Path) -> None:
    run = tmp_path / "run"
    run.mkdir()
    c = tiny_config(run)
    study = open_study(c, run, create=True)
    assert sampler_seed(c, run, create=False) == c.seed and best_value(study) is None
    _trial(study, TrialState.COMPLETE, 0.7, accuracy=0.7)
    _trial(study, TrialState.COMPLETE, 0.9)  # a value without an accuracy (skipped): not best
    _trial(study, TrialState.PRUNED)
    _trial(study, TrialState.RUNNING)  # left by a killed process
    assert (finished_count(study), started_count(study)) == (3, 4)
    assert sampler_seed(c, run, create=False, seed_offset=1000) == c.seed + 1000 + 4
    assert requeue_interrupted(c, run) == 1
    trials = study.get_trials()
    assert trials[3].state == TrialState.FAIL and trials[3].user_attrs[INTERRUPTED_ATTR]
    assert trials[4].state == TrialState.WAITING
    assert trials[4].system_attrs["fixed_params"] == {"x": 1}  # drawn again when asked
    assert trials[4].user_attrs["requeued_from"] == 3
    assert (finished_count(study), started_count(study)) == (3, 3)  # interrupted: not counted
    assert best_value(study) == pytest.approx(0.7)

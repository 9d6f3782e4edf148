"""Run folders: what write_results leaves and what load_run reads back."""

from __future__ import annotations

import math
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState
from searchkit import tiny_config

from hwnas.common.atomic import atomic_write_text
from hwnas.common.errors import HwnasError
from hwnas.search import load_run
from hwnas.search.results import TRIAL_COLUMNS, write_results

# (reward, latency ms, accuracy) per trial; trial 2 is the best, 1 is dominated.
ROWS = [(0.60, 10.0, 0.60), (0.55, 20.0, 0.55), (0.80, 30.0, 0.80), (0.0, 99.0, None)]


def _run(tmp_path: Path) -> Path:
    run = tmp_path / "run"
    run.mkdir()
    config = tiny_config(run)
    atomic_write_text(run / "config.yaml", config.to_yaml())
    study = optuna.create_study(direction="maximize")
    for i, (reward, lat, acc) in enumerate(ROWS):
        attrs = {"arch": f"arch{i}", "latency_ms": lat, "reward": reward}
        if acc is not None:
            attrs["accuracy"] = acc
        else:
            attrs["skipped"] = "over budget"
        study.add_trial(optuna.trial.create_trial(state=TrialState.COMPLETE, value=reward,
                                                  user_attrs=attrs))
    write_results(config, run, study)
    return run


def test_load_run_reads_what_write_results_wrote(tmp_path: Path) -> None:
    run = load_run(_run(tmp_path))
    assert run.config["target"] == "pixel" and run.config["latency_ms"] == 50.0
    assert list(run.trials.columns[:len(TRIAL_COLUMNS)]) == TRIAL_COLUMNS
    assert list(run.trials["arch"]) == ["arch0", "arch1", "arch2", "arch3"]
    assert math.isnan(run.trials["accuracy"][3]) and run.trials["skipped"][3] == "over budget"
    assert run.best["number"] == 2 and run.best["arch"] == "arch2"
    assert run.best["accuracy"] == pytest.approx(0.8) and run.best["reward_fn"] == "soft"
    assert list(run.pareto["number"]) == [0, 2]  # trial 1 is slower and less accurate than 0


def test_load_run_of_a_run_that_has_not_finished_a_trial(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    atomic_write_text(run_dir / "config.yaml", tiny_config(run_dir).to_yaml())
    run = load_run(run_dir)
    assert run.best is None and run.trials.empty and run.pareto.empty


def test_load_run_refuses_what_is_not_a_run(tmp_path: Path) -> None:
    with pytest.raises(HwnasError, match="not a run folder: no config.yaml"):
        load_run(tmp_path)
    (tmp_path / "config.yaml").write_text("- a list\n")
    with pytest.raises(HwnasError, match="expected a mapping, got list"):
        load_run(tmp_path)

"""The budget in the space: the warm start's nets within the budget, and runs using it."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from searchkit import fake_train, tiny_config

from hwnas.latency import load_target
from hwnas.search import load_run
from hwnas.search.budget import default_warm_start, feasible_indices
from hwnas.search.run import run_search
from hwnas.search.samplers import TPE_STARTUP_TRIALS, nsga2_population
from hwnas.space.searchspace import get_space


def _linear(weights: np.ndarray):  # noqa: ANN202
    """A latency with a known answer: base + sum of weights[decision, choice]."""
    def predict(idx: np.ndarray) -> np.ndarray:
        return 1.0 + np.take_along_axis(weights[None, :, :].repeat(len(idx), 0),
                                        idx[:, :, None], axis=2)[:, :, 0].sum(axis=1)
    return predict


def test_feasible_rows_are_distinct_within_budget_and_seeded() -> None:
    high = np.array([3, 2, 4, 3, 2, 3])
    weights = np.where(np.arange(4)[None, :] < high[:, None], np.arange(4)[None, :] * 1.0, 0.0)
    predict = _linear(weights)  # 1 ms (all choices 0) .. 1 + 2+1+3+2+1+2 = 12 ms
    rows = feasible_indices(predict, high, 4.0, 8, np.random.default_rng(3))
    assert len(rows) == 8
    assert (predict(rows) <= 4.0).all()
    assert len({tuple(r) for r in rows}) == 8
    assert ((rows >= 0) & (rows < high)).all()
    again = feasible_indices(predict, high, 4.0, 8, np.random.default_rng(3))
    assert (rows == again).all()
    # the walk stops at the first net within the budget, so nets lie near it, not at the floor
    assert predict(rows).mean() > 2.5


def test_feasible_rows_when_the_budget_allows_few_or_none() -> None:
    high = np.array([3, 3])
    predict = _linear(np.array([[0.0, 1.0, 2.0], [0.0, 1.0, 2.0]]))
    only = feasible_indices(predict, high, 1.0, 5, np.random.default_rng(0))
    assert only.tolist() == [[0, 0]]  # the one net at the floor
    assert feasible_indices(predict, high, 0.5, 5, np.random.default_rng(0)).shape == (0, 2)
    assert feasible_indices(predict, high, 9.0, 0, np.random.default_rng(0)).shape == (0, 2)


def test_feasible_rows_on_pixel_match_the_searchs_own_prediction() -> None:
    space, target = get_space("mobilenetv3"), load_target("pixel")
    high = np.array([len(d.choices) for d in space.decisions])
    random = target.predict_many(space.sample_indices(np.random.default_rng(0), 2000), space=space)
    assert (random <= 20.0).mean() < 0.01  # 20 ms is below nearly all of the space
    rows = feasible_indices(lambda idx: target.predict_many(idx, space=space), high, 20.0, 10,
                            np.random.default_rng(0))
    assert len(rows) == 10
    ms = [target.predict(space.decode(space.from_indices(r))) for r in rows]
    assert max(ms) <= 20.0
    assert np.median(ms) > 15.0  # near the budget, not the space's fastest (7.4 ms)


def test_default_warm_start_is_the_samplers_start_up() -> None:
    assert default_warm_start("tpe", False, 100) == TPE_STARTUP_TRIALS == 10
    assert default_warm_start("tpe", False, 4) == 4
    assert default_warm_start("nsga2", False, 60) == nsga2_population(60)
    assert default_warm_start("random", False, 100) == 0
    assert default_warm_start("rl", False, 100) == 0
    assert default_warm_start("nsga2", True, 100) == 0  # pareto: the front spans latencies
    assert default_warm_start(None, False, 16) == 10


def test_a_tight_budget_search_starts_within_it(tmp_path: Path, monkeypatch) -> None:
    train = fake_train()
    monkeypatch.setattr("hwnas.search.estimators.train", train)
    notes: list[str] = []
    run_dir = run_search(tiny_config(tmp_path / "run", trials=4, reward="hard", latency="20ms",
                                     sampler="tpe", warm_start=3), notify=notes.append)
    df = load_run(run_dir).trials
    assert df["warm_start"].tolist() == [True, True, True, False]
    assert (df.loc[df["warm_start"], "latency_ms"] <= 20.0).all()
    assert df.loc[df["warm_start"], "accuracy"].notna().all()  # trained, none skipped
    assert any("first 3 trials are nets predicted within 20ms" in n for n in notes)
    off = run_search(tiny_config(tmp_path / "off", trials=2, reward="hard", latency="20ms",
                                 sampler="tpe", warm_start=0), notify=notes.append)
    assert not load_run(off).trials["warm_start"].any()


def test_warm_start_needs_a_built_table(tmp_path: Path, monkeypatch) -> None:
    """A measured target whose table lacks the space's layers measures nothing for it."""
    from hwnas.search import budget

    monkeypatch.setattr(budget, "space_priced", lambda comp: False)
    monkeypatch.setattr("hwnas.search.estimators.train", fake_train())
    notes: list[str] = []
    run_dir = run_search(tiny_config(tmp_path / "run", trials=1, latency="45ms", warm_start=2),
                         notify=notes.append)
    assert not load_run(run_dir).trials["warm_start"].any()
    assert any(n.startswith("warm start: none (target 'pixel' lacks") for n in notes)


@pytest.mark.parametrize("bad", [-1, "two"])
def test_bad_warm_start_is_one_line(tmp_path: Path, bad) -> None:  # noqa: ANN001
    from hwnas.common.errors import HwnasError

    with pytest.raises(HwnasError, match="warm_start"):
        tiny_config(tmp_path / "run", warm_start=bad)
    assert not (tmp_path / "run").exists()


def test_nsga2_breeds_from_the_warm_start(tmp_path: Path, monkeypatch) -> None:
    """Queued trials belong to NSGA-II's first generation (before, they had none, so
    with 3 of 4 queued the next generation was bred from nothing: random draws)."""
    import optuna

    monkeypatch.setattr("hwnas.search.estimators.train", fake_train(lambda a, i: 0.3 + 0.01 * i))
    run_dir = run_search(tiny_config(tmp_path / "run", trials=8, reward="hard", latency="20ms",
                                     sampler="nsga2", warm_start=3))
    study = optuna.load_study(study_name="run", storage=f"sqlite:///{run_dir / 'study.db'}")
    gens = [t.system_attrs.get("NSGAIISampler:generation") for t in study.trials]  # Optuna's key
    assert gens == [0, 0, 0, 0, 1, 1, 1, 1]  # population max(4, 8 // 4) = 4
    # children of three parents within 20 ms and one at ~120 ms: mostly near the budget
    lat = load_run(run_dir).trials["latency_ms"].to_numpy()
    assert np.median(lat[4:]) < 2 * 20.0

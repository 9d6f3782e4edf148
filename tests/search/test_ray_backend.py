"""Searches against real servers: a local Ray (trials as Ray Tune trials, a
killed worker retried) and a throwaway PostgreSQL as shared Optuna storage.

The local Ray is started once for the module. Each Ray test's run has a name of
its own (the run's weight-sink actor is named after it), so one test's failure
cannot leave an actor behind that fails the next.

On a developer machine without them these tests skip with the reason; with
``CI=true`` they fail instead (see tests/servers.py).
"""

from __future__ import annotations

import os
from pathlib import Path

import optuna
import pytest
from searchkit import RUN_FILES, TINY_FLAGS, study_trials, tiny_config
from servers import postgres_server, skip_or_fail

from hwnas.search import load_run
from hwnas.search.cli import main
from hwnas.search.ray_backend import KILL_ONCE_ENV
from hwnas.search.run import run_search


@pytest.fixture(scope="module")
def local_ray(tmp_path_factory: pytest.TempPathFactory):  # noqa: ANN201
    """A local Ray with 2 CPUs; yields the kill-once marker path its workers watch."""
    try:
        import ray
    except ImportError:
        skip_or_fail("ray is not installed (pip install 'ray[tune]')")
    marker = tmp_path_factory.mktemp("ray") / "killed-once"
    marker.write_text("disarmed\n")  # present: no worker is killed until a test removes it
    old = os.environ.get(KILL_ONCE_ENV)
    os.environ[KILL_ONCE_ENV] = str(marker)  # workers inherit the driver's environment
    os.environ.setdefault("RAY_DEDUP_LOGS", "0")
    try:
        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False,
                 configure_logging=False)
    except Exception as e:  # noqa: BLE001 - any start failure is a missing server here
        skip_or_fail(f"cannot start a local Ray: {type(e).__name__}: {e}")
    yield marker
    ray.shutdown()
    if old is None:
        os.environ.pop(KILL_ONCE_ENV, None)
    else:
        os.environ[KILL_ONCE_ENV] = old


def test_ray_backend_completes(local_ray: Path, tmp_path: Path) -> None:
    """Two concurrent Ray trials of a multi-objective (pareto) search."""
    seen: list[tuple[int, int]] = []
    run_dir = run_search(tiny_config(tmp_path / "pareto", trials=2, backend="ray", workers=2,
                                     reward="pareto"),
                         progress=lambda done, total, best: seen.append((done, total)))
    assert seen and seen[-1] == (2, 2)  # a progress bar (not picklable) was fed
    for name in RUN_FILES:
        assert (run_dir / name).is_file(), name
    run = load_run(run_dir)
    assert list(run.trials["state"]) == ["COMPLETE", "COMPLETE"]
    assert run.trials["accuracy"].between(0, 1).all() and run.best is not None
    study = optuna.load_study(study_name="pareto", storage=f"sqlite:///{run_dir / 'study.db'}")
    for t in study.trials:  # Ray reported (accuracy, latency) for the two objectives
        assert t.values == [t.user_attrs["accuracy"], t.user_attrs["latency_ms"]]
    assert (run_dir / "ray").is_dir()  # Ray Tune's own records sit beside the study


def test_postgresql_storage(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys) -> None:
    # The CLI in this process (its exit codes and one-line errors from a real process
    # are checked in test_cli.py): a plain postgresql:// URL, as a user types it.
    monkeypatch.chdir(tmp_path)
    with postgres_server() as url:
        plain = url.replace("postgresql+psycopg://", "postgresql://")
        assert main([*TINY_FLAGS, "--trials", "2", "--storage", plain, "--out", "pgrun",
                     "--sampler", "random", "--quiet"]) == 0, capsys.readouterr().err[-3000:]
        capsys.readouterr()
        run_dir = tmp_path / "pgrun"
        assert not (run_dir / "study.db").exists()  # the study lives in PostgreSQL
        study = optuna.load_study(study_name="pgrun", storage=url)
        assert [t.state.name for t in study.trials] == ["COMPLETE", "COMPLETE"]
        run = load_run(run_dir)
        assert list(run.trials["arch"]) == [t.user_attrs["arch"] for t in study.trials]
        # a second run with the same name in the same database is refused, nothing written
        code = main([*TINY_FLAGS, "--storage", plain, "--out", "other/pgrun", "--quiet"])
        assert code == 2 and "already holds a study 'pgrun'" in capsys.readouterr().err
        assert not (tmp_path / "other").exists()
        # resuming adds trials to the same study
        assert main(["--resume", "--out", "pgrun", "--trials", "3", "--quiet"]) == 0
        assert len(optuna.load_study(study_name="pgrun", storage=url).trials) == 3
        assert len(load_run(run_dir).trials) == 3


def test_ray_timeout_lets_running_trials_finish(local_ray: Path, tmp_path: Path) -> None:
    """--timeout under Ray stops starting trials; the running ones finish COMPLETE,
    their per-epoch rewards reached the study (the pruner saw them), and their
    weights reached the driver's run folder through the weight sink. (The same run
    checks that the warm start's queued trials come first under Ray.)"""
    run_dir = run_search(tiny_config(tmp_path / "timeout", trials=6, backend="ray", workers=2,
                                     sampler="random", epochs=2, timeout_s=3.0, warm_start=2))
    study = optuna.load_study(study_name="timeout", storage=f"sqlite:///{run_dir / 'study.db'}")
    states = [t.state.name for t in study.trials]
    assert 1 <= len(states) < 6 and set(states) == {"COMPLETE"}, states
    # the warm start's queued nets are the first trials Ray Tune's searcher asks for
    first = [t for t in study.trials if t.number < 2]
    assert first and all(t.user_attrs.get("warm_start") for t in first)
    assert all(t.user_attrs["latency_ms"] <= 50.0 for t in first)
    for t in study.trials:
        assert sorted(t.intermediate_values) == [0, 1]
    best = load_run(run_dir).best
    assert (run_dir / "weights" / f"{best['number']}.pt").is_file()
    assert (run_dir / "best.pt").is_file() and (run_dir / "best.onnx").is_file()


def test_ray_timeout_kill_requeues_running_trials_and_resume_finishes_them(
        local_ray: Path, tmp_path: Path) -> None:
    """--timeout-kill under Ray ends the running trials at the timeout: they stay
    RUNNING in the study (not PRUNED); --resume marks them interrupted, trains
    their nets once more to COMPLETE, and loses or repeats nothing finished.

    During the resume a Ray worker is killed (SIGKILL) as its trial starts: Ray
    Tune retries that trial (``max_failures``) and the run still finishes. (One
    Ray run serves both checks: each run pays for starting its trial actors.)"""
    # No pruner: which trials finish first varies with the machine's load, and a median
    # pruner could then prune a resumed one; pruning is not what this test is about.
    config = tiny_config(tmp_path / "killed", trials=4, backend="ray", workers=2,
                         sampler="random", epochs=2, timeout_s=3.0, timeout_kill=True,
                         pruner="none", max_failures=2)
    run_dir = run_search(config)
    before = study_trials(run_dir)
    killed = before[before["state"] == "RUNNING"]
    done_before = before[before["state"] == "COMPLETE"].set_index("number")
    assert len(killed) >= 1 and len(done_before) < 4, list(before["state"])
    assert set(before["state"]) <= {"RUNNING", "COMPLETE"}, list(before["state"])
    assert local_ray.read_text() == "disarmed\n"
    errors_before = set((run_dir / "ray").rglob("error.txt"))

    local_ray.unlink()  # arm: the next trial to start kills its own worker (SIGKILL)
    run_search(config.model_copy(update={"timeout_s": None, "timeout_kill": False}), resume=True)
    assert local_ray.read_text() == "killed\n", "no worker was killed"
    assert set((run_dir / "ray").rglob("error.txt")) - errors_before, \
        "Ray Tune recorded no failure, so nothing was retried"
    after = study_trials(run_dir).set_index("number")
    for n, r in done_before.iterrows():  # nothing finished is lost or changed
        assert after.loc[n, "state"] == "COMPLETE"
        assert after.loc[n, "values"] == r["values"] and after.loc[n, "complete"] == r["complete"]
    for n, r in killed.set_index("number").iterrows():  # each killed net trained once more
        assert after.loc[n, "state"] == "FAIL" and after.loc[n, "interrupted"]
        retry = after[after["requeued_from"] == n]
        assert len(retry) == 1 and retry["arch"].iloc[0] == r["arch"]
        assert retry["state"].iloc[0] == "COMPLETE"
    counted = after[after["state"].isin(["COMPLETE", "FAIL", "PRUNED"]) & ~after["interrupted"]]
    assert len(counted) == 4 and set(counted["state"]) == {"COMPLETE"}
    assert counted["accuracy"].notna().all()  # the retried trial trained
    assert load_run(run_dir).best is not None

"""Search runs end to end on tiny budgets: the CLI's run folder, the notebook,
kill -9 and --resume, failing trials, pareto, prefilter and duplicates."""

from __future__ import annotations

import json
import math
import os
import signal
import sqlite3
import subprocess
import time
from contextlib import closing
from pathlib import Path

import numpy as np
import optuna
import pandas as pd
import pytest
import torch
from searchkit import (
    RUN_FILES,
    TINY_FLAGS,
    fake_train,
    nas_search,
    nas_search_cmd,
    one_thread_env,
    study_trials,
    tiny_config,
)

from hwnas.search import load_run
from hwnas.search.config import parse_config
from hwnas.search.objective import PREFILTER_ATTR, Components, make_objective
from hwnas.search.run import prefilter_warning, run_search, visibility_warning
from hwnas.space import Arch

NOTEBOOK = Path(__file__).resolve().parents[2] / "docs" / "notebooks" / "inspect_run.ipynb"
KILL_WAIT_S = 240


@pytest.fixture(autouse=True)
def _one_thread():
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    yield
    torch.set_num_threads(n)


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, subprocess.CompletedProcess]:
    """One real 3-trial CLI run (2 worker processes, synflow prefilter), shared below."""
    cwd = tmp_path_factory.mktemp("cli")
    p = nas_search(*TINY_FLAGS, "--trials", "3", "--workers", "2", "--prefilter", "synflow",
                   "--out", "run", cwd=cwd)
    assert p.returncode == 0, p.stderr[-3000:]
    return cwd / "run", p


# -------------------------------------------------------------- end to end ---
def test_cli_run_leaves_a_complete_run_folder(tiny_run) -> None:
    run_dir, p = tiny_run
    for name in RUN_FILES:
        assert (run_dir / name).is_file(), name
    from hwnas.proxy import load_split_manifest

    assert load_split_manifest(run_dir)  # the data split, recorded at run start
    run = load_run(run_dir)
    df = run.trials
    assert len(df) == 3 and list(df["number"]) == [0, 1, 2]
    for col in ("arch", "params", "madds", "latency_ms", "accuracy", "reward", "state",
                "duration_s", "train_s", "zero_cost"):
        assert col in df.columns, col
    done = df[df["state"] == "COMPLETE"]
    assert len(done) == 3
    assert done["accuracy"].between(0, 1).all() and (done["latency_ms"] > 0).all()
    assert done["zero_cost"].notna().all()  # the prefilter scored every candidate
    for _, r in done.iterrows():  # the recorded numbers are the arch's own
        arch = Arch.from_str(r["arch"])
        assert r["params"] == arch.params(num_classes=1000)
        assert r["madds"] == arch.madds(resolution=224, num_classes=1000)
        assert r["reward"] == pytest.approx(r["accuracy"] * (r["latency_ms"] / 50.0) ** -0.07)
    csv = pd.read_csv(run_dir / "trials.csv")
    assert list(csv["number"]) == [0, 1, 2]
    # best.json is the top reward; best.pt / best.onnx hold that net
    best = run.best
    top = done.sort_values("reward", ascending=False).iloc[0]
    assert best["number"] == top["number"] and best["arch"] == top["arch"]
    assert best["reward_fn"] == "soft" and best["latency_budget_ms"] == 50.0
    state = torch.load(run_dir / "best.pt", weights_only=True)
    assert state["head.classifier.weight"].shape[0] == 10
    import onnx

    onnx.checker.check_model(onnx.load(str(run_dir / "best.onnx")))
    # Pareto front: no member dominated by another finished trial
    assert len(run.pareto) >= 1
    for _, r in run.pareto.iterrows():
        assert not ((done["latency_ms"] < r["latency_ms"]) & (done["accuracy"] > r["accuracy"])).any()
    # reference nets are stored with their predicted latencies for the plot
    assert run.config["reference_latency_ms"]["mobilenetv3_large"] == pytest.approx(51, abs=2)
    # the end of the run prints the best nets and where the results are
    assert "Best networks" in p.stdout and "Results:" in p.stdout and "run" in p.stdout
    ax = run.plot_accuracy_vs_latency()
    ref = run.config["reference_latency_ms"]["mobilenetv3_large"]
    legend = [t.get_text() for t in ax.get_legend().get_texts()]
    assert f"mobilenetv3_large {ref:.1f} ms" in legend
    run.plot_rewards()


def test_rerun_into_the_same_folder_is_refused(tiny_run, monkeypatch, capsys) -> None:
    from hwnas.search.cli import main

    run_dir, _ = tiny_run
    monkeypatch.chdir(run_dir.parent)
    before = sorted(p.name for p in run_dir.iterdir())
    assert main([*TINY_FLAGS, "--out", "run", "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "already holds a run: pass --resume" in err and len(err.splitlines()) == 1
    assert sorted(p.name for p in run_dir.iterdir()) == before


def test_notebook_executes_on_a_run(tiny_run, monkeypatch: pytest.MonkeyPatch) -> None:
    import nbformat
    from nbclient import NotebookClient

    run_dir, _ = tiny_run
    monkeypatch.setenv("HWNAS_RUN", str(run_dir))
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    nb = nbformat.read(NOTEBOOK, as_version=4)
    NotebookClient(nb, timeout=120, kernel_name="python3", resources={
        "metadata": {"path": str(run_dir.parent)}}).execute()
    outputs = [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])]
    assert not [o for o in outputs if o.get("output_type") == "error"]
    text = json.dumps([o.get("data", {}).get("text/plain", o.get("text", "")) for o in outputs])
    assert load_run(run_dir).best["arch"][:20] in text
    assert any("image/png" in o.get("data", {}) for o in outputs)


# ------------------------------------------------------ kill -9 and resume ---
def _wait_for_running_trial(proc: subprocess.Popen, run_dir: Path) -> None:
    """Return once a trial has finished and another is training (its arch is set).

    Polls the SQLite file read-only with plain SQL: milliseconds per look, so
    the few seconds a tiny trial trains are not missed.
    """
    db = run_dir / "study.db"
    deadline = time.monotonic() + KILL_WAIT_S
    while time.monotonic() < deadline:
        assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
        if db.exists():
            try:
                with closing(sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=0.5)) as con:
                    complete = con.execute(
                        "SELECT COUNT(*) FROM trials WHERE state = 'COMPLETE'").fetchone()[0]
                    training = con.execute(
                        "SELECT COUNT(*) FROM trials t JOIN trial_user_attributes a "
                        "ON a.trial_id = t.trial_id WHERE t.state = 'RUNNING' "
                        "AND a.key = 'arch'").fetchone()[0]
            except sqlite3.Error:  # tables not created yet, or locked for a moment
                complete = training = 0
            if complete >= 1 and training >= 1:
                return
        time.sleep(0.05)
    raise AssertionError("no trial was running after a finished one")


def test_kill_9_then_resume_loses_and_repeats_nothing(tmp_path: Path, monkeypatch,
                                                      capsys) -> None:
    from hwnas.search.cli import main

    run_dir = tmp_path / "run"
    trials = 3  # one finished and one killed before the resume, which trains the rest

    def command(lat: str = "50ms") -> list[str]:
        flags = [lat if f == "50ms" else f for f in TINY_FLAGS]
        return [*flags, "--trials", str(trials), "--sampler", "random", "--out", str(run_dir),
                "--quiet"]

    proc = subprocess.Popen(nas_search_cmd(*command()),
                            cwd=tmp_path, env=one_thread_env(), stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True)
    try:
        _wait_for_running_trial(proc, run_dir)
    finally:
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
    before = study_trials(run_dir)
    done_before = before[before["state"] == "COMPLETE"].set_index("number")
    killed = before[before["state"] == "RUNNING"]
    assert len(done_before) >= 1 and len(killed) >= 1

    # Resumed in this process (the killed run above is the real process; the CLI's exit
    # codes and one-line errors from a real process are checked in test_cli.py).
    monkeypatch.chdir(tmp_path)
    capsys.readouterr()
    # the same command with a changed --lat: one line naming both values, nothing touched
    assert main([*command(lat="40ms"), "--resume"]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1, err[-3000:]
    assert "--lat cannot change" in err and "'50ms'" in err and "'40ms'" in err
    assert study_trials(run_dir).equals(before)
    # the same command as typed, plus --resume: accepted
    assert main([*command(), "--resume"]) == 0, capsys.readouterr().err[-3000:]
    after = study_trials(run_dir).set_index("number")
    # nothing finished is lost or changed
    for n, r in done_before.iterrows():
        assert after.loc[n, "state"] == "COMPLETE"
        assert after.loc[n, "values"] == r["values"] and after.loc[n, "complete"] == r["complete"]
    # the killed trial is marked, not counted, and its net is trained once on resume
    for n, r in killed.set_index("number").iterrows():
        assert after.loc[n, "state"] == "FAIL" and after.loc[n, "interrupted"]
        retry = after[after["requeued_from"] == n]
        assert len(retry) == 1 and retry["arch"].iloc[0] == r["arch"]
        assert retry["state"].iloc[0] == "COMPLETE"
    counted = after[after["state"].isin(["COMPLETE", "FAIL", "PRUNED"]) & ~after["interrupted"]]
    assert len(counted) == trials
    trained = after[(after["state"] == "COMPLETE") & after["duplicate_of"].isna()]
    assert trained["arch"].is_unique, "a finished net was trained twice"
    run = load_run(run_dir)
    assert len(run.trials) == len(after) and run.best is not None


# ------------------------------------------------------- failing trials ---
def test_failing_trials_are_recorded_and_the_search_goes_on(tmp_path: Path, monkeypatch) -> None:
    from hwnas.proxy.train import NonFiniteLoss

    def acc_of(arch: Arch, i: int) -> float:
        if i == 1:
            raise RuntimeError("boom in trial 1")
        if i == 2:
            raise NonFiniteLoss("training loss became nan by step 2")
        return 0.3 + 0.1 * i

    train = fake_train(acc_of)
    monkeypatch.setattr("hwnas.search.estimators.train", train)
    run_dir = run_search(tiny_config(tmp_path / "run", trials=4, sampler="random"))
    df = load_run(run_dir).trials
    assert list(df["state"]) == ["COMPLETE", "FAIL", "FAIL", "COMPLETE"]
    assert df.loc[1, "error"] == "RuntimeError: boom in trial 1"
    assert df.loc[2, "error"].startswith("NonFiniteLoss: training loss became nan")
    assert load_run(run_dir).best["number"] == 3 and len(train.calls) == 4


def test_nan_loss_of_the_real_trainer_fails_the_trial(tmp_path: Path) -> None:
    run_dir = run_search(tiny_config(tmp_path / "run", trials=2, lr=1e30, sampler="random"))
    run = load_run(run_dir)
    assert list(run.trials["state"]) == ["FAIL", "FAIL"]
    assert run.trials["error"].str.contains("NonFiniteLoss").all()
    assert run.best is None and not (run_dir / "best.json").exists()
    assert (run_dir / "trials.parquet").is_file() and (run_dir / "reward.png").is_file()


# ----------------------------------------------------------- other modes ---
def test_pareto_keeps_the_front_and_best_is_within_budget(tmp_path: Path, monkeypatch) -> None:
    train = fake_train(lambda arch, i: [0.5, 0.7, 0.6, 0.8, 0.4][i])
    monkeypatch.setattr("hwnas.search.estimators.train", train)
    run_dir = run_search(tiny_config(tmp_path / "run", trials=5, reward="pareto",
                                     latency="45ms"))
    run = load_run(run_dir)
    done = run.trials[run.trials["state"] == "COMPLETE"]
    assert len(done) == 5 and done["reward"].isna().all()
    front = run.pareto
    for _, r in done.iterrows():
        dominated = ((done["latency_ms"] <= r["latency_ms"]) & (done["accuracy"] >= r["accuracy"])
                     & ((done["latency_ms"] < r["latency_ms"]) | (done["accuracy"] > r["accuracy"])))
        assert (r["number"] in set(front["number"])) == (not dominated.any())
    within = done[done["latency_ms"] <= 45.0]
    if len(within):
        assert run.best["accuracy"] == within["accuracy"].max()
    study = optuna.load_study(study_name="run", storage=f"sqlite:///{run_dir / 'study.db'}")
    assert [d.name for d in study.directions] == ["MAXIMIZE", "MINIMIZE"]
    assert all(len(t.values) == 2 for t in study.trials)


def test_hard_reward_skips_far_over_budget_nets(tmp_path: Path, monkeypatch) -> None:
    train = fake_train()
    monkeypatch.setattr("hwnas.search.estimators.train", train)
    run_dir = run_search(tiny_config(tmp_path / "run", trials=8, reward="hard", latency="45ms",
                                     sampler="random"))
    df = load_run(run_dir).trials
    over = df["latency_ms"] > 1.25 * 45.0
    assert over.any(), "expected some random nets over 56 ms"
    assert df.loc[over, "skipped"].str.contains("x budget").all()
    assert df.loc[over, "accuracy"].isna().all()
    assert len(train.calls) == int((~over).sum())
    # skipped: a small reward that grows towards the budget, below every trained net's
    skipped = df.loc[over].sort_values("latency_ms")
    assert skipped["reward"].is_monotonic_decreasing and (skipped["reward"] > 0).all()
    assert skipped["reward"].to_numpy() == pytest.approx(0.01 * 45.0 / skipped["latency_ms"].to_numpy())
    trained = df.loc[~over & df["accuracy"].notna(), "reward"]
    assert len(trained), "expected some random nets within 56 ms"
    assert trained.min() > skipped["reward"].max()


def test_hard_reward_gives_tpe_the_budget_as_a_constraint(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr("hwnas.search.estimators.train", fake_train())
    run_dir = run_search(tiny_config(tmp_path / "run", trials=3, reward="hard", latency="45ms",
                                     sampler="tpe"))
    study = optuna.load_study(study_name="run", storage=f"sqlite:///{run_dir / 'study.db'}")
    for t in study.trials:  # what TPE/NSGA-II read: feasible when <= 0
        assert t.constraints == pytest.approx({"latency": t.user_attrs["latency_ms"] / 45.0 - 1})
    soft = run_search(tiny_config(tmp_path / "soft", trials=2, reward="soft", latency="45ms",
                                  sampler="tpe"))
    study = optuna.load_study(study_name="soft", storage=f"sqlite:///{soft / 'study.db'}")
    assert all(t.constraints == {} for t in study.trials)


def _in_memory(tmp_path: Path, **kw) -> tuple[Components, optuna.Study]:
    comp = Components.build(tiny_config(tmp_path / "run", **kw), tmp_path / "run",
                            with_data=False)
    return comp, optuna.create_study(direction="maximize")


def test_an_architecture_is_never_trained_twice(tmp_path: Path, monkeypatch) -> None:
    train = fake_train(lambda arch, i: 0.42)
    monkeypatch.setattr("hwnas.search.estimators.train", train)
    comp, study = _in_memory(tmp_path)
    params = comp.space.sample_params(np.random.default_rng(1))
    study.enqueue_trial(params)
    study.enqueue_trial(params)
    study.optimize(make_objective(comp), n_trials=2)
    assert len(train.calls) == 1
    t0, t1 = study.trials
    assert t1.user_attrs["duplicate_of"] == 0 and t1.values == t0.values
    assert t1.user_attrs["accuracy"] == 0.42


def test_prefilter_discards_below_the_running_quantile(tmp_path: Path, monkeypatch) -> None:
    scores = iter([5.0, 4.0, 3.0, 2.0, 1.0, 10.0, 0.5, math.nan])
    monkeypatch.setattr("hwnas.search.objective.zero_cost_score",
                        lambda arch, data, method, seed=0: next(scores))
    # one predicted latency for all: every candidate is in every other's latency band
    monkeypatch.setattr(Components, "predict_ms", lambda self, arch: 40.0)
    train = fake_train()
    monkeypatch.setattr("hwnas.search.estimators.train", train)
    comp, study = _in_memory(tmp_path, prefilter="naswot", prefilter_keep=0.5)
    study.optimize(make_objective(comp), n_trials=8)
    states = [t.state.name for t in study.trials]
    # 4 scores before any discard; then below the median of those seen so far is cut:
    # 1.0 < median(5,4,3,2) = 3.5; 10 kept; 0.5 < median(5,4,3,2,1,10) = 3.5; NaN kept.
    assert states == ["COMPLETE"] * 4 + ["PRUNED", "COMPLETE", "PRUNED", "COMPLETE"]
    assert [t.user_attrs.get(PREFILTER_ATTR) for t in study.trials[:7]] == [
        5.0, 4.0, 3.0, 2.0, 1.0, 10.0, 0.5]
    assert "below the running 50% quantile 3.5" in study.trials[4].user_attrs["skipped"]
    assert len(train.calls) == 6


def _write_idx(path: Path, array: np.ndarray) -> None:
    code = {np.dtype(np.uint8): 0x08}[array.dtype]
    head = bytes([0, 0, code, array.ndim]) + b"".join(d.to_bytes(4, "big") for d in array.shape)
    path.write_bytes(head + array.tobytes())


def test_default_subset_falls_back_to_all_of_a_small_data_set(tmp_path: Path) -> None:
    from hwnas.search.config import DEFAULT_TRAIN_SUBSET

    rng = np.random.default_rng(0)
    folder = tmp_path / "idx"
    folder.mkdir()
    _write_idx(folder / "train-images-idx3-ubyte", rng.integers(0, 256, (300, 28, 28), np.uint8))
    _write_idx(folder / "train-labels-idx1-ubyte", rng.integers(0, 3, 300).astype(np.uint8))
    cfg = dict(data=str(folder), val_size=100, train_subset=None)
    comp = Components.build(tiny_config(tmp_path / "r", **cfg), tmp_path / "r")
    assert DEFAULT_TRAIN_SUBSET > 200 and len(comp.data.train_y) == 200
    comp = Components.build(tiny_config(tmp_path / "r", **{**cfg, "train_subset": 150}),
                            tmp_path / "r")
    assert len(comp.data.train_y) == 150
    with pytest.raises(ValueError, match="train_subset"):
        Components.build(tiny_config(tmp_path / "r", **{**cfg, "train_subset": 500}),
                         tmp_path / "r")


def test_a_moved_run_folder_resumes(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr("hwnas.search.estimators.train", fake_train())
    first = run_search(tiny_config(tmp_path / "run", trials=1, sampler="random"))
    moved = tmp_path / "elsewhere" / "renamed"
    moved.parent.mkdir()
    first.rename(moved)
    from hwnas.search.cli import main

    assert main(["--resume", "--out", str(moved), "--trials", "2", "--quiet"]) == 0
    run = load_run(moved)
    assert list(run.trials["number"]) == [0, 1] and run.config["study"] == "run"


# ------------------------------------------------ invisible decisions ---
def test_visibility_warning_fires_at_32_px_and_names_the_blocks() -> None:
    line = visibility_warning(parse_config({"target": "pixel", "latency": "50ms"}))
    assert line is not None and "\n" not in line
    assert "--proxy-resolution 32" in line and "blocks b4, b5 are invisible" in line
    assert "--proxy-resolution 64 makes every decision visible" in line


def test_visibility_warning_is_silent_where_every_decision_is_visible() -> None:
    assert visibility_warning(parse_config({"target": "pixel", "latency": "50ms",
                                            "proxy_resolution": 64})) is None


def test_prefilter_warning_only_when_a_prefilter_is_on() -> None:
    base = {"target": "pixel", "latency": "50ms"}
    assert prefilter_warning(parse_config(base)) is None
    line = prefilter_warning(parse_config({**base, "prefilter": "naswot"}))
    assert line is not None and "\n" not in line and line.startswith("--prefilter naswot:")

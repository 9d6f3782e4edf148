"""Shared helpers for the search tests: tiny budgets, subprocess runs, fakes.

Every run here trains on 256 Fashion-MNIST images at 16 x 16 for one epoch,
so a trial takes seconds on one core.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pandas as pd

from hwnas.search.config import SearchConfig, parse_config

# Budget flags of every tiny CLI run (target pixel, 50 ms).
TINY_FLAGS = ["--target", "pixel", "--lat", "50ms", "--train-subset", "256", "--val-size", "256",
              "--proxy-resolution", "16", "--epochs", "1", "--seed", "0"]
TINY = dict(target="pixel", latency="50ms", train_subset=256, val_size=256, proxy_resolution=16,
            epochs=1, seed=0, timeout_s=None)
RUN_FILES = ("config.yaml", "study.db", "trials.parquet", "trials.csv", "best.json", "best.pt",
             "best.onnx", "best.tflite", "pareto.csv", "reward.png", "acc_vs_latency.png")
SUBPROCESS_TIMEOUT_S = 300


def one_thread_env(**extra: str) -> dict[str, str]:
    """The environment for a child: one BLAS/OpenMP thread (the tests share 2 cores)."""
    env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", PYTHONUNBUFFERED="1")
    env.update(extra)
    return env


def nas_search_cmd(*args: str) -> list[str]:
    return [sys.executable, "-m", "hwnas.search.cli", *args]


def nas_search(*args: str, cwd: Path, timeout: float = SUBPROCESS_TIMEOUT_S,
               **env: str) -> subprocess.CompletedProcess:
    """Run ``nas-search ARGS`` in ``cwd``; returns the finished process (text output)."""
    return subprocess.run(nas_search_cmd(*args), cwd=cwd, env=one_thread_env(**env),
                          capture_output=True, text=True, timeout=timeout, check=False)


def tiny_config(out: Path, **kw: Any) -> SearchConfig:
    return parse_config({**TINY, "out": str(out), **kw})


def study_trials(run_dir: Path) -> pd.DataFrame:
    """The run's trials straight from its study (not from trials.parquet)."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    url = f"sqlite:///{(run_dir / 'study.db').resolve()}"
    study = optuna.load_study(study_name=run_dir.resolve().name, storage=url)
    rows = [{"number": t.number, "state": t.state.name, "values": t.values,
             "arch": t.user_attrs.get("arch"), "accuracy": t.user_attrs.get("accuracy"),
             "interrupted": bool(t.user_attrs.get("interrupted")),
             "requeued_from": t.user_attrs.get("requeued_from"),
             "duplicate_of": t.user_attrs.get("duplicate_of"),
             "error": t.user_attrs.get("error"),
             "start": t.datetime_start, "complete": t.datetime_complete}
            for t in study.get_trials(deepcopy=False)]
    return pd.DataFrame(rows)


def fake_train(accuracy_of: Any = None):  # noqa: ANN201
    """A stand-in for ``hwnas.proxy.train.train``: builds the net untrained and
    returns ``accuracy_of(arch, call_index)`` (or raises what it raises)."""
    from hwnas.proxy.train import TrainResult
    from hwnas.space import build

    calls: list[str] = []

    def train(net, data, config, report=None):  # noqa: ANN001, ANN202
        calls.append(net.to_str())
        acc = 0.5 if accuracy_of is None else accuracy_of(net, len(calls) - 1)
        model = build(net, num_classes=10 if data is None else data.num_classes).eval()
        if report is not None:
            report(0, acc)
        return TrainResult(model=model, val_accuracy=acc, val_history=[acc], train_loss=[1.0],
                           seconds=0.0)

    train.calls = calls
    return train

"""One search trial: sample an architecture, predict its latency, train it,
score it. Shared by the local and the Ray backends.

Latency is predicted from the target before any training. With the hard
reward, a candidate predicted more than ``skip_factor`` x over budget is
recorded with its latency and skipped without training (its accuracy is
unknown and its reward is 0, the hard reward's floor).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import optuna
import torch

from hwnas.space.searchspace import get_space
from hwnas.space.spec import Arch

from .config import SearchConfig
from .rewards import make_reward

WEIGHTS_DIR = "weights"


@dataclass
class Components:
    """Everything a trial needs, built once per process."""

    config: SearchConfig
    run_dir: Path
    space: Any
    target: Any
    reward: Any
    data: Any = None
    train_config: Any = None
    prefilter_scores: list[float] = field(default_factory=list)

    @classmethod
    def build(cls, config: SearchConfig, run_dir: Path, with_data: bool = True) -> Components:
        from hwnas.latency import load_target

        comp = cls(config=config, run_dir=run_dir, space=get_space(config.space),
                   target=load_target(config.target),
                   reward=make_reward(config.reward, config.latency_ms, w=config.w))
        if with_data:
            comp.load_data()
        return comp

    def load_data(self) -> None:
        from .data import load_dataset
        from .train import TrainConfig

        c = self.config
        self.data = load_dataset(c.data, resolution=c.proxy_resolution, val_size=c.val_size,
                                 train_subset=c.train_subset, seed=c.seed)
        kw = dict(epochs=c.epochs, batch_size=c.batch_size, resolution=c.proxy_resolution, seed=c.seed)
        if c.lr is not None:
            kw["lr"] = c.lr
        self.train_config = TrainConfig(**kw)


def describe_arch(trial: optuna.trial.BaseTrial, comp: Components, arch: Arch) -> float:
    """Record the arch and its predicted latency on the trial; return the latency (ms)."""
    c = comp.config
    lat = comp.target.predict(arch, resolution=c.resolution)
    num_classes = comp.data.num_classes if comp.data is not None else 10
    trial.set_user_attr("arch", arch.to_str())
    trial.set_user_attr("params", arch.params(num_classes=num_classes))
    trial.set_user_attr("madds", arch.madds(resolution=c.resolution, num_classes=num_classes))
    trial.set_user_attr("latency_ms", lat)
    return lat


def evaluate_arch(trial: optuna.trial.BaseTrial, comp: Components, arch: Arch, lat: float,
                  report: Any = None) -> tuple[float, ...] | float:
    """Train ``arch`` on the proxy task and return the objective value(s)."""
    from .train import train

    c = comp.config
    if comp.reward.name == "hard" and lat > c.skip_factor * c.latency_ms:
        trial.set_user_attr("skipped", f"predicted {lat:.2f} ms > {c.skip_factor:g} x budget")
        trial.set_user_attr("reward", 0.0)
        return 0.0
    t0 = time.perf_counter()
    result = train(arch, comp.data, comp.train_config, report=report)
    acc = float(result.val_accuracy)
    trial.set_user_attr("accuracy", acc)
    trial.set_user_attr("epochs", len(result.val_history))
    trial.set_user_attr("train_s", time.perf_counter() - t0)
    _save_weights(comp.run_dir, trial.number, result.model)
    if comp.reward.multi_objective:
        return comp.reward(acc, lat)
    value = float(comp.reward(acc, lat))
    trial.set_user_attr("reward", value)
    return value


def _save_weights(run_dir: Path, number: int, model: torch.nn.Module) -> None:
    d = run_dir / WEIGHTS_DIR
    d.mkdir(parents=True, exist_ok=True)
    tmp = d / f".{number}.pt.tmp"
    torch.save({k: v.detach().cpu() for k, v in model.state_dict().items()}, tmp)
    tmp.replace(d / f"{number}.pt")


def make_objective(comp: Components):  # noqa: ANN201 - optuna objective
    """The define-by-run objective for ``study.optimize``."""

    def objective(trial: optuna.Trial):  # noqa: ANN202
        arch = comp.space.sample(trial)
        lat = describe_arch(trial, comp, arch)

        def report(epoch: int, val_acc: float) -> None:
            if comp.reward.multi_objective:
                return  # Optuna cannot prune multi-objective studies
            trial.report(val_acc, epoch)
            if trial.should_prune():
                trial.set_user_attr("accuracy", val_acc)
                raise optuna.TrialPruned(f"pruned at epoch {epoch} with accuracy {val_acc:.4f}")

        try:
            value = evaluate_arch(trial, comp, arch, lat, report=report)
        except optuna.TrialPruned:
            raise
        except Exception as e:  # recorded as a failed trial; the search goes on
            trial.set_user_attr("error", f"{type(e).__name__}: {e}"[:500])
            raise
        if isinstance(value, float) and math.isnan(value):
            trial.set_user_attr("error", "NaN objective")
        return value

    return objective

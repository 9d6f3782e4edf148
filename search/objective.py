"""One search trial: sample an architecture, predict its latency, train it,
score it. Shared by the local and the Ray backends.

Latency is predicted from the target before any training, so a candidate is
never trained just to learn it is too slow:

* hard reward: a candidate predicted more than ``skip_factor`` x over budget
  is recorded with its latency and skipped, untrained. Its reward is
  ``SKIP_REWARD x budget / latency``: below any trained candidate's (with the
  default exponent -1, a trained net within ``skip_factor`` scores at least
  0.8 x its accuracy; a much steeper ``--w`` can score lower),
  and larger the closer it is to the budget, so a sampler is steered towards the
  budget even when every candidate so far was skipped (with a flat 0, TPE had
  nothing to go on for budgets below nearly all of the space). Every trial of a
  hard-budget search also carries the Optuna constraint ``latency`` =
  ``latency / budget - 1`` (feasible when <= 0; ``Trial.set_constraint``): TPE
  then draws from the feasible trials' model and ranks infeasible ones by how
  far over they are (constrained TPE), NSGA-II prefers feasible solutions;
  ``random`` and ``rl`` ignore it;
* ``--prefilter synflow|naswot``: a zero-cost score at initialisation is
  computed and stored on the trial (user attr ``zero_cost``); once
  :data:`PREFILTER_WARMUP` scores are in the study, a candidate scoring below
  the ``1 - prefilter_keep`` quantile of the scores seen so far is discarded
  (state PRUNED). The scores live in the study, so this works across workers
  and resumed runs;
* an architecture already trained in this study (same string, same seed) is
  not trained again: its accuracy is copied (user attr ``duplicate_of``).

A trial that raises (a bug, a non-finite loss) is recorded as failed with its
error; the search goes on.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import optuna
import torch
from optuna.trial import TrialState

from hwnas.latency import load_target
from hwnas.proxy.data import load_dataset
from hwnas.proxy.train import TrainConfig
from hwnas.space.searchspace import get_space
from hwnas.space.spec import Arch

from .config import DEFAULT_TRAIN_SUBSET, SearchConfig
from .estimators import make_estimator, save_weights
from .estimators import train_accuracy as train_accuracy  # re-exported: its old home
from .prefilter import zero_cost_score
from .rewards import make_reward

# Latency, params and MAdds describe the deployed net, as the target's
# latency table does: an ImageNet-style 1000-way classifier at ``resolution``
# (MnasNet Sec. 4 searches for ImageNet and measures that net on the phone).
DEPLOY_NUM_CLASSES = 1000
# Scores needed in the study before the prefilter discards anything (with
# fewer, the running quantile is noise).
PREFILTER_WARMUP = 4
PREFILTER_ATTR = "zero_cost"
# The prefilter ranks a candidate only against candidates of similar predicted
# latency: those within this factor of its own (1.25: a 25 % band either way,
# about one of the ~10 latency steps between the space's fastest and slowest
# nets on pixel). Zero-cost scores grow with size (NASWOT correlates +0.68 with
# pixel latency over 80 random nets, SynFlow +0.34; docs/benchmarks.md), so a
# global cut discards the fast nets the budget asks for; within a band, the
# score compares nets of one cost.
PREFILTER_LATENCY_BAND = 1.25


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
    estimator: Any = None

    @classmethod
    def build(cls, config: SearchConfig, run_dir: Path, with_data: bool = True) -> Components:
        comp = cls(config=config, run_dir=run_dir, space=get_space(config.space),
                   target=load_target(config.target),
                   reward=make_reward(config.reward, config.latency_ms, w=config.w),
                   estimator=make_estimator(config.estimator))
        if with_data:
            comp.load_data()
        return comp

    def load_data(self) -> None:
        c = self.config
        kw: dict[str, Any] = dict(resolution=c.proxy_resolution, val_size=c.val_size, seed=c.seed)
        if c.train_subset is not None:
            self.data = load_dataset(c.data, train_subset=c.train_subset, **kw)
        else:  # the default subset, or all images of a smaller data set
            try:
                self.data = load_dataset(c.data, train_subset=DEFAULT_TRAIN_SUBSET, **kw)
            except ValueError as e:
                if "train_subset" not in str(e):
                    raise
                self.data = load_dataset(c.data, train_subset=None, **kw)
        tkw: dict[str, Any] = dict(epochs=c.epochs, batch_size=c.batch_size,
                                   resolution=c.proxy_resolution, seed=c.seed, device=c.device)
        if c.lr is not None:
            tkw["lr"] = c.lr
        self.train_config = TrainConfig(**tkw)

    def predict_ms(self, arch: Arch) -> float:
        return float(self.target.predict(arch, resolution=self.config.resolution,
                                         num_classes=DEPLOY_NUM_CLASSES))


def describe_arch(trial: Any, comp: Components, arch: Arch) -> float:
    """Record the arch and its predicted latency on the trial; return the latency (ms)."""
    c = comp.config
    lat = comp.predict_ms(arch)
    trial.set_user_attr("arch", arch.to_str())
    trial.set_user_attr("params", arch.params(num_classes=DEPLOY_NUM_CLASSES))
    trial.set_user_attr("madds", arch.madds(resolution=c.resolution,
                                            num_classes=DEPLOY_NUM_CLASSES))
    trial.set_user_attr("latency_ms", lat)
    if _hard_budget(comp):
        trial.set_constraint(LATENCY_CONSTRAINT, lat / c.latency_ms - 1.0)
    return lat


def _hard_budget(comp: Components) -> bool:
    """The reward makes the budget a hard constraint (MnasNet's ``hard``)."""
    return comp.reward.name == "hard"


def _other_trials(trial: Any) -> list[optuna.trial.FrozenTrial]:
    study = getattr(trial, "study", None)
    if study is None:
        return []
    return [t for t in study.get_trials(deepcopy=False) if t.number != trial.number]


def prefilter_verdict(trial: Any, comp: Components, arch: Arch,
                      lat: float | None = None) -> str | None:
    """Score ``arch`` at initialisation; a reason to discard it, or None to train it.

    The score is ranked against the scores of the other candidates whose
    predicted latency is within :data:`PREFILTER_LATENCY_BAND` of ``lat``
    (latency-binned quantiles); with fewer than :data:`PREFILTER_WARMUP` of
    them the candidate is kept.
    """
    c = comp.config
    if lat is None:
        lat = comp.predict_ms(arch)
    if c.prefilter == "none":
        return None
    score = float(zero_cost_score(arch, comp.data, c.prefilter, seed=c.seed))
    if not math.isfinite(score):
        trial.set_user_attr(PREFILTER_ATTR + "_error", f"non-finite score {score}")
        return None
    trial.set_user_attr(PREFILTER_ATTR, score)
    seen = [float(t.user_attrs[PREFILTER_ATTR]) for t in _other_trials(trial)
            if PREFILTER_ATTR in t.user_attrs
            and _similar_latency(t.user_attrs.get("latency_ms"), lat)]
    if len(seen) < PREFILTER_WARMUP:
        return None
    q = 1.0 - c.prefilter_keep
    cut = float(np.quantile(seen, q))
    if score < cut:
        return (f"{c.prefilter} score {score:.4g} below the running {q:.0%} quantile "
                f"{cut:.4g} of {len(seen)} candidates within {PREFILTER_LATENCY_BAND:g}x of its "
                f"predicted {lat:.2f} ms")
    return None


def _similar_latency(other_ms: Any, ms: float) -> bool:
    """``other_ms`` within :data:`PREFILTER_LATENCY_BAND` of ``ms`` (either way)."""
    if other_ms is None or not ms > 0 or not float(other_ms) > 0:
        return False
    return 1.0 / PREFILTER_LATENCY_BAND <= float(other_ms) / ms <= PREFILTER_LATENCY_BAND


def _trained_before(trial: Any, arch_str: str) -> optuna.trial.FrozenTrial | None:
    for t in _other_trials(trial):
        if (t.state == TrialState.COMPLETE and t.user_attrs.get("arch") == arch_str
                and "accuracy" in t.user_attrs and "duplicate_of" not in t.user_attrs):
            return t
    return None


def _score(trial: Any, comp: Components, acc: float, lat: float) -> tuple[float, ...] | float:
    if comp.reward.multi_objective:
        return comp.reward(acc, lat)
    value = float(comp.reward(acc, lat))
    trial.set_user_attr("reward", value)
    return value


# Scale of a skipped candidate's reward (module docstring): far below any trained net's.
SKIP_REWARD = 0.01
# Optuna constraint set on every trial of a hard-budget search (module docstring).
LATENCY_CONSTRAINT = "latency"


def evaluate_arch(trial: Any, comp: Components, arch: Arch, lat: float,
                  report: Any = None) -> tuple[float, ...] | float:
    """Estimate ``arch``'s accuracy and return the objective value(s).

    Candidates the hard reward skips are scored ``SKIP_REWARD x budget / latency`` untrained; one trained
    before in this study gets its accuracy copied; the rest pass the
    prefilter and are estimated by the run's estimator (``--estimator``: trained, or
    scored on the supernet).

    Raises:
        optuna.TrialPruned: The prefilter discarded the candidate, or ``report``
            pruned it.
    """
    c = comp.config
    if _hard_budget(comp) and lat > c.skip_factor * c.latency_ms:
        trial.set_user_attr("skipped", f"predicted {lat:.2f} ms > {c.skip_factor:g} x budget")
        reward = SKIP_REWARD * c.latency_ms / lat
        trial.set_user_attr("reward", reward)
        return reward
    before = _trained_before(trial, arch.to_str())
    if before is not None:
        acc = float(before.user_attrs["accuracy"])
        trial.set_user_attr("duplicate_of", before.number)
        trial.set_user_attr("accuracy", acc)
        return _score(trial, comp, acc, lat)
    why = prefilter_verdict(trial, comp, arch, lat)
    if why is not None:
        trial.set_user_attr("skipped", why)
        raise optuna.TrialPruned(why)
    acc = comp.estimator.accuracy(trial, comp, arch, report)
    trial.set_user_attr("accuracy", acc)
    return _score(trial, comp, acc, lat)


def _save_weights(run_dir: Path, number: int, model: torch.nn.Module) -> None:
    save_weights(run_dir, number, model.state_dict())


def record_error(trial: Any, e: BaseException) -> None:
    trial.set_user_attr("error", f"{type(e).__name__}: {e}"[:500])


def pruning_report(trial: Any, comp: Components, lat: float):  # noqa: ANN201
    """``report(epoch, val_acc)`` for the trainer: tells the trial its per-epoch
    reward and raises ``optuna.TrialPruned`` when the study's pruner says so.
    ``trial`` needs ``report``, ``should_prune`` and ``set_user_attr`` (an Optuna
    trial, or a Ray worker's storage trial)."""

    def report(epoch: int, val_acc: float) -> None:
        if comp.reward.multi_objective:
            return  # Optuna cannot prune multi-objective studies
        # The pruner compares what the search maximises: the accuracy so far
        # combined with the known latency through the run's reward, so a fast
        # net a little below the median accuracy is not stopped when its
        # reward would win. A pruned trial's last report is its reward for RL.
        value = float(comp.reward(val_acc, lat))
        trial.report(value, epoch)
        if epoch + 1 >= comp.config.epochs:
            return  # the last epoch: this accuracy is the result, not a forecast
        if trial.should_prune():
            trial.set_user_attr("accuracy", val_acc)
            trial.set_user_attr("reward", value)
            raise optuna.TrialPruned(f"pruned at epoch {epoch} with accuracy {val_acc:.4f} "
                                     f"(reward {value:.4f})")

    return report


def make_objective(comp: Components):  # noqa: ANN201 - optuna objective
    """The define-by-run objective for ``study.optimize``."""

    def objective(trial: optuna.Trial):  # noqa: ANN202
        arch = comp.space.sample(trial)
        lat = describe_arch(trial, comp, arch)
        try:
            return evaluate_arch(trial, comp, arch, lat, report=pruning_report(trial, comp, lat))
        except optuna.TrialPruned:
            raise
        except Exception as e:  # recorded as a failed trial; the search goes on
            record_error(trial, e)
            raise

    return objective

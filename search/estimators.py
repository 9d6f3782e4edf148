"""Accuracy estimators: how a trial learns what a candidate is worth.

``--estimator`` picks one from :data:`ESTIMATOR_REGISTRY`:

* ``train`` (default): train the candidate on the proxy task
  (``hwnas.proxy.train``: ``--epochs`` over ``--train-subset`` images at
  ``--proxy-resolution``) and score it on the held-out split; about 35 s per
  candidate on 2 cores.
* ``supernet``: score the candidate's path of a trained weight-sharing
  supernet (``hwnas.supernet``): inherited weights, BatchNorm recalibrated on a
  fixed batch set, top-1 on a fixed held-out subset (SPOS, Guo et al. ECCV 2020,
  Sec. 3.3; OFA/BigNAS); a fraction of a second per candidate. The supernet is
  found in (or trained into) ``$HWNAS_HOME/supernets`` before the trials start
  (:func:`plan_supernet`) and loaded read-only by id in every process.

Contract of an :class:`Estimator`: ``accuracy(trial, comp, arch, report)``
returns an accuracy in [0, 1], may call ``report(step, accuracy)`` between
steps (the pruner's chance to stop it: it raises ``optuna.TrialPruned``), and
records what it measured on the trial. ``weights(config, arch)`` gives the
state_dict of a kept trial whose weights were not saved while it ran (the
supernet's inherited ones), or None.

To add an estimator: subclass :class:`Estimator` and add an entry to the registry;
the config's allowed values and ``--estimator``'s choices are read from it.
"""

from __future__ import annotations

import math
import time
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from hwnas.common.atomic import atomic_save_state_dict
from hwnas.common.errors import HwnasError
from hwnas.proxy.train import train
from hwnas.space.spec import Arch

if TYPE_CHECKING:
    from hwnas.supernet import Supernet, SupernetConfig

    from .config import SearchConfig
    from .objective import Components

WEIGHTS_DIR = "weights"  # also results.WEIGHTS_DIR (results imports it from here)


class Estimator(ABC):
    """How a trial estimates accuracy (see the module docstring for the contract)."""

    name: str = ""
    # Whether weights(config, arch) gives weights the trial did not save (results asks it).
    provides_weights: bool = False

    @abstractmethod
    def accuracy(self, trial: Any, comp: Components, arch: Arch, report: Any = None) -> float:
        """The estimated accuracy of ``arch`` in [0, 1]."""

    def weights(self, config: SearchConfig, arch: Arch) -> dict[str, torch.Tensor] | None:
        """Weights of ``arch`` for the run folder when the trial saved none (default: none)."""
        return None


def save_weights(run_dir: Path, number: int, state: dict[str, torch.Tensor]) -> None:
    """``run_dir/weights/<number>.pt`` (atomically)."""
    d = run_dir / WEIGHTS_DIR
    d.mkdir(parents=True, exist_ok=True)
    atomic_save_state_dict({k: v.detach().cpu() for k, v in state.items()}, d / f"{number}.pt")


def train_accuracy(trial: Any, comp: Components, arch: Arch, report: Any = None) -> float:
    """The proxy accuracy of ``arch``: trained on the proxy task, scored on the
    held-out split; records epochs and time, and saves the weights.

    Raises:
        FloatingPointError: The accuracy is not finite (the trial fails).
    """
    t0 = time.perf_counter()
    result = train(arch, comp.data, comp.train_config, report=report)
    acc = float(result.val_accuracy)
    if not math.isfinite(acc):
        raise FloatingPointError(f"validation accuracy is {acc}")
    trial.set_user_attr("epochs", len(result.val_history))
    trial.set_user_attr("train_s", time.perf_counter() - t0)
    save_weights(comp.run_dir, trial.number, result.model.state_dict())
    return acc


class TrainEstimator(Estimator):
    """Proxy training of each candidate (:func:`train_accuracy`)."""

    name = "train"

    def accuracy(self, trial: Any, comp: Components, arch: Arch, report: Any = None) -> float:
        return train_accuracy(trial, comp, arch, report)


class SupernetEstimator(Estimator):
    """A path of the run's supernet (``config.supernet``), loaded once per process."""

    name = "supernet"
    provides_weights = True

    def __init__(self) -> None:
        self._supernet: Supernet | None = None

    def supernet(self, config: SearchConfig) -> Supernet:
        from hwnas.supernet import load_supernet

        if self._supernet is None:
            if not config.supernet:
                raise HwnasError("estimator 'supernet' needs a supernet id (plan_supernet sets it)")
            self._supernet = load_supernet(config.supernet, device=config.device,
                                           finetune_steps=config.supernet_finetune)
        return self._supernet

    def accuracy(self, trial: Any, comp: Components, arch: Arch, report: Any = None) -> float:
        t0 = time.perf_counter()
        acc = float(self.supernet(comp.config).estimate(arch))
        if not math.isfinite(acc):
            raise FloatingPointError(f"estimated accuracy is {acc}")
        trial.set_user_attr("train_s", time.perf_counter() - t0)  # time spent estimating
        return acc

    def weights(self, config: SearchConfig, arch: Arch) -> dict[str, torch.Tensor]:
        """The weights :meth:`accuracy` scored: inherited, BN recalibrated (and fine-tuned
        ``supernet_finetune`` steps when asked)."""
        model = self.supernet(config).scored_model(arch)
        return {k: v.detach().cpu() for k, v in model.state_dict().items()}


@dataclass(frozen=True)
class EstimatorKind:
    """A registered estimator: its class, whether it needs a supernet, a help line."""

    make: Callable[[], Estimator]
    needs_supernet: bool
    help: str


# The estimators by name, in --help order. To add one: an Estimator subclass and
# an entry here; SearchConfig.estimator and --estimator read this table.
ESTIMATOR_REGISTRY: dict[str, EstimatorKind] = {
    "train": EstimatorKind(TrainEstimator, False,
                           "train each candidate on the proxy task (~35 s each on 2 cores)"),
    "supernet": EstimatorKind(SupernetEstimator, True,
                              "score each candidate with inherited weights of a trained supernet "
                              "(found or trained before the trials)"),
}
ESTIMATOR_NAMES = tuple(ESTIMATOR_REGISTRY)


def make_estimator(name: str) -> Estimator:
    """A fresh estimator by name (one of :data:`ESTIMATOR_NAMES`)."""
    if name not in ESTIMATOR_REGISTRY:
        raise HwnasError(f"unknown estimator {name!r}; known: {', '.join(ESTIMATOR_NAMES)}")
    return ESTIMATOR_REGISTRY[name].make()


# ----------------------------------------------------------- the supernet ---
def _supernet_settings(config: SearchConfig, train_images: int) -> SupernetConfig:
    """The settings of the supernet a run trains when none is cached: the run's
    space, data, proxy resolution, split and seed, ``supernet_epochs`` epochs."""
    from hwnas.supernet import SupernetConfig
    from hwnas.supernet.train import DEFAULT_EPOCHS

    from .config import DEFAULT_TRAIN_SUBSET

    subset = config.train_subset
    if subset is None:  # as Components.load_data: the default subset, or all there are
        subset = DEFAULT_TRAIN_SUBSET if train_images >= DEFAULT_TRAIN_SUBSET else None
    return SupernetConfig(space=config.space, data=str(config.data),
                          proxy_resolution=config.proxy_resolution, seed=config.seed,
                          epochs=config.supernet_epochs or DEFAULT_EPOCHS, train_subset=subset,
                          val_size=config.val_size, batch_size=max(2, config.batch_size))


def plan_supernet(config: SearchConfig, train_images: int) -> tuple[str, SupernetConfig | None]:
    """The supernet a run uses: ``(id, settings to train it with, or None if complete)``.

    The one named by ``config.supernet`` (it must exist, be complete and be of
    the run's space); else the cached one matching the run's space, data, proxy
    resolution and seed (:func:`hwnas.supernet.find_supernet`); else a new one
    with ``supernet_epochs``. Nothing is trained or written here.

    Raises:
        HwnasError: the named supernet does not exist, is incomplete, or is of another space.
    """
    from hwnas.supernet import find_supernet, list_supernets, supernet_id, supernets_root

    if config.supernet:
        known = {p.get("id"): p for p in list_supernets()}
        prov = known.get(config.supernet)
        if prov is None:
            # names the id and what is accepted; the cache's own message lists the known ids
            ids = ", ".join(sorted(k for k in known if k)) or "none (nas-supernet train makes one)"
            raise HwnasError(f"no supernet {config.supernet!r} under {supernets_root()}; known: {ids}")
        if prov.get("status") != "complete":
            settings = prov.get("settings") or {}
            if settings.get("space") == config.space and supernet_id_matches(prov):
                from hwnas.supernet import SupernetConfig

                return config.supernet, SupernetConfig(**settings)  # resume its training
            raise HwnasError(f"supernet {config.supernet!r} is not complete "
                             f"(status {prov.get('status')!r}); finish it with nas-supernet train")
        space = (prov.get("settings") or {}).get("space")
        if space != config.space:
            raise HwnasError(f"supernet {config.supernet!r} is of space {space!r}, the run searches "
                             f"{config.space!r}; name a supernet of that space or drop --supernet")
        return config.supernet, None
    found = find_supernet(config.space, str(config.data), config.proxy_resolution, config.seed)
    if found is not None:
        return found, None
    settings = _supernet_settings(config, train_images)
    return supernet_id(settings), settings


def supernet_id_matches(prov: dict) -> bool:
    """Whether an incomplete supernet's provenance carries settings that give its id."""
    from hwnas.supernet import SupernetConfig, supernet_id

    try:
        return supernet_id(SupernetConfig(**prov["settings"])) == prov.get("id")
    except (KeyError, TypeError, HwnasError):
        return False


__all__ = [
    "ESTIMATOR_NAMES", "ESTIMATOR_REGISTRY", "Estimator", "EstimatorKind", "SupernetEstimator",
    "TrainEstimator", "make_estimator", "plan_supernet", "save_weights", "train_accuracy",
]

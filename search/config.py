"""The resolved configuration of a search run (validated with pydantic).

What the user typed (CLI flags or YAML) becomes one :class:`SearchConfig`,
saved as ``config.yaml`` in the run folder so the run can be resumed and read
back exactly.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from hwnas.common.errors import ConfigError, HwnasError
from hwnas.common.units import parse_latency
from hwnas.common.yamlio import load_yaml, validation_message
from hwnas.proxy.train import DEVICES as TRAIN_DEVICES

from .budget import default_warm_start
from .estimators import ESTIMATOR_NAMES, ESTIMATOR_REGISTRY
from .prefilter import PREFILTER_CHOICES
from .rewards import REWARD_NAMES, REWARD_REGISTRY
from .samplers import MULTI_OBJECTIVE_SAMPLERS, SAMPLER_NAMES, default_sampler
from .study import PRUNER_NAMES

# --device: the proxy trainer's device names (hwnas.proxy.train.DEVICES); also "cuda:N".
DEVICES = TRAIN_DEVICES

CONFIG_FORMAT_VERSION = 1

# The allowed values of each choice field, as their owners define them (the
# registries in rewards.py, samplers/, study.py, prefilter.py); earlier names kept.
REWARDS = REWARD_NAMES
SAMPLERS = SAMPLER_NAMES
PRUNERS = PRUNER_NAMES
PREFILTERS = PREFILTER_CHOICES
ESTIMATORS = ESTIMATOR_NAMES
# Where trials run: local processes (run.py) or Ray Tune (ray_backend.py).
BACKENDS = ("local", "ray")
# Fields a resumed run may change (its budget and where it runs); the rest is fixed.
# retrain_epochs acts after the search, so it may change too; estimator and supernet may not.
# device, per-trial resources and timeout_kill say where and how trials run, not what they find.
RESUMABLE_FIELDS = ("trials", "timeout_s", "workers", "backend", "ray_address", "max_failures",
                    "retrain_epochs", "device", "gpus_per_trial", "cpus_per_trial", "timeout_kill")

# Default budget: "with only --target and --lat, something sensible in about
# 10 minutes on 2 cores". A default trial trains on DEFAULT_TRAIN_SUBSET images
# for DEFAULT_EPOCHS epochs at 32 px and scores on 5000 held-out ones:
# MobileNetV3-Large took 34 s and reached 0.837 validation accuracy on the
# development machine (bench/trial_time.py, docs/benchmarks.md); 20000 images x
# 1 epoch cost as much (38.5 s) for the same accuracy (0.835), but two epochs
# give the pruner a report to stop a weak trial at. 16 trials fit in ~10 minutes;
# the timeout stops starting new trials after 10 minutes on slower machines.
DEFAULT_TRIALS = 16
DEFAULT_TIMEOUT_S = 600.0
DEFAULT_EPOCHS = 2
# Training images per trial when --train-subset is not given (all there are if fewer).
DEFAULT_TRAIN_SUBSET = 10000
# Hard reward: a candidate predicted this much over budget is not trained.
DEFAULT_SKIP_FACTOR = 1.25


class SearchConfig(BaseModel):
    """Everything a search run needs; see ``nas-search --help`` for each field."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)

    format_version: int = CONFIG_FORMAT_VERSION
    target: str
    latency: str = Field(description="latency budget with unit, e.g. 50ms")
    latency_ms: float = 0.0
    space: str = "mobilenetv3"
    data: str = "fashion-mnist"
    trials: int = Field(DEFAULT_TRIALS, ge=1)
    timeout_s: float | None = Field(DEFAULT_TIMEOUT_S, gt=0)
    sampler: Literal[SAMPLERS] | None = None
    reward: Literal[REWARDS] = "soft"
    w: float | None = None
    epochs: int = Field(DEFAULT_EPOCHS, ge=1)
    proxy_resolution: int = Field(32, ge=16, le=512)
    resolution: int = Field(224, ge=32, le=1024, description="deployment resolution for latency")
    train_subset: int | None = Field(None, ge=64, description="None: DEFAULT_TRAIN_SUBSET or all")
    val_size: int = Field(5000, ge=64)
    batch_size: int = Field(128, ge=1)
    lr: float | None = Field(None, gt=0)
    pruner: Literal[PRUNERS] = "median"
    prefilter: Literal[PREFILTERS] = "none"
    prefilter_keep: float = Field(0.5, gt=0, le=1, description="fraction of candidates kept")
    estimator: Literal[ESTIMATORS] = "train"
    supernet: str | None = Field(None, description="supernet id (estimator supernet); set on start")
    supernet_epochs: int | None = Field(None, ge=1, description="epochs of a supernet trained "
                                        "for the run (None: hwnas.supernet's default)")
    supernet_finetune: int = Field(0, ge=0, description="estimator supernet: fine-tune each "
                                   "candidate's inherited weights this many steps before scoring")
    retrain_epochs: int = Field(0, ge=0, description="train the winner from scratch this long")
    skip_factor: float = Field(DEFAULT_SKIP_FACTOR, gt=1)
    warm_start: int | None = Field(None, ge=0, description="start-up trials queued among nets "
                                   "predicted within the budget (None: the sampler's start-up)")
    workers: int = Field(1, ge=1)
    backend: Literal[BACKENDS] = "local"
    ray_address: str | None = None
    max_failures: int = Field(2, ge=0)
    device: str = Field("auto", description="torch device of the trials: auto, cpu, cuda[:N]")
    gpus_per_trial: float | None = Field(None, ge=0, description="Ray: GPUs per trial "
                                         "(None: one when the cluster has GPUs, else 0)")
    cpus_per_trial: float | None = Field(None, gt=0, description="Ray: CPUs per trial "
                                         "(None: the cluster's CPUs / workers)")
    timeout_kill: bool = Field(False, description="at --timeout, end running trials too "
                                                  "(they are re-queued on --resume)")
    storage: str | None = None
    study: str | None = Field(None, description="Optuna study name (default: the run folder's)")
    out: str | None = None
    seed: int = Field(0, ge=0)
    num_classes: int | None = None
    reference_latency_ms: dict[str, float] = Field(default_factory=dict)

    @field_validator("latency")
    @classmethod
    def _lat(cls, v: str) -> str:
        parse_latency(v)
        return v.strip()

    @field_validator("device")
    @classmethod
    def _device(cls, v: str) -> str:
        v = v.strip()
        if v not in DEVICES and not (v.startswith("cuda:") and v[5:].isdigit()):
            raise ValueError(f"expected one of {', '.join(DEVICES)} or cuda:N, got {v[:80]!r}")
        return v

    @model_validator(mode="after")
    def _resolve(self) -> SearchConfig:
        ms = parse_latency(self.latency)
        if self.latency_ms != ms:
            object.__setattr__(self, "latency_ms", ms)
        if self.sampler is None:
            object.__setattr__(self, "sampler", default_sampler(self.multi_objective))
        if self.multi_objective and self.sampler not in MULTI_OBJECTIVE_SAMPLERS:
            raise HwnasError(f"sampler {self.sampler!r} optimises one objective; reward "
                             f"{self.reward} needs one of {', '.join(MULTI_OBJECTIVE_SAMPLERS)}")
        if self.supernet is not None and not ESTIMATOR_REGISTRY[self.estimator].needs_supernet:
            raise HwnasError(f"supernet {self.supernet!r} given with estimator {self.estimator!r}; "
                             "a supernet is used with estimator: supernet")
        if self.warm_start is None:
            object.__setattr__(self, "warm_start", default_warm_start(
                self.sampler, self.multi_objective, self.trials))
        if self.ray_address and self.backend != "ray":
            object.__setattr__(self, "backend", "ray")
        return self

    @property
    def multi_objective(self) -> bool:
        return REWARD_REGISTRY[self.reward].multi_objective

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.model_dump(mode="json"), sort_keys=False)

    @classmethod
    def from_yaml(cls, path: Path) -> SearchConfig:
        raw, lines = load_yaml(path)
        if not isinstance(raw, dict):
            raise ConfigError(f"{path}: expected a mapping of settings (a run's config.yaml); "
                              "start a new --out if it is damaged")
        version = raw.get("format_version", CONFIG_FORMAT_VERSION)
        if isinstance(version, int) and version > CONFIG_FORMAT_VERSION:
            raise ConfigError(f"{path}: config format_version {version} is newer than this hwnas "
                              f"reads ({CONFIG_FORMAT_VERSION})")
        return parse_config(raw, source=str(path), lines=lines)


def parse_config(raw: dict[str, Any], source: str = "config",
                 lines: dict[tuple, int] | None = None) -> SearchConfig:
    """Validate ``raw`` into a config; one-line ConfigError naming field and value."""
    try:
        return SearchConfig(**raw)
    except ValidationError as e:
        raise ConfigError(validation_message(e, SearchConfig, source, lines)) from None

"""``run.yaml`` of a NetAdapt refine, validated with pydantic.

Every error is one line naming the file, the line, the field and what is
accepted, e.g. ``run.yaml line 7: mode: Input should be 'filters' or
'mobilenetv3' (got 'fast')``. See docs/netadapt.md for every field.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from hwnas.common.errors import ConfigError, HwnasError
from hwnas.common.units import parse_latency
from hwnas.common.yamlio import load_yaml, validation_message

from .prunable import DEFAULT_CHANNEL_STEP, MODES

# How a proposal is chosen: highest accuracy (NetAdapt, Yang et al. 2018, Sec. 3) or the
# accuracy lost per millisecond removed (MobileNetV3, Howard et al. 2019, Sec. 4.2).
SELECTIONS = ("accuracy", "per_latency")

CONFIG_FORMAT_VERSION = 1

# MobileNetV3 (Howard et al. 2019, Sec. 4.2) runs NetAdapt with a latency
# reduction of delta = 0.01|L| per iteration (L: the seed model's latency).
DEFAULT_DR = "0.01x"
# NetAdapt (Yang et al. 2018, Sec. 3.1) lets the reduction decay over the
# iterations ("resource reduction schedule"); MobileNetV3 keeps it constant.
# 1.0 (constant) is that default; a value below 1 shrinks dR geometrically.
DEFAULT_DR_DECAY = 1.0
# Short-term fine-tune per proposal: MobileNetV3 used T = 10000 steps on
# ImageNet; on the proxy task a few hundred steps recover most accuracy
# (docs/benchmarks.md, NetAdapt section). Our choice.
DEFAULT_SHORT_STEPS = 200
# Fine-tuning learning rates: a tenth of the training rate
# (hwnas.proxy.train.DEFAULT_LR = 0.2) so inherited weights are kept, with
# the same cosine decay to 0. Our choice, not from a paper.
DEFAULT_SHORT_LR = 0.02
DEFAULT_LONG_LR = 0.02

_RELATIVE = re.compile(r"^\s*([0-9]*\.?[0-9]+(?:[eE][-+]?[0-9]+)?)\s*x\s*$")


def parse_amount(text: str | float | int, what: str) -> tuple[float, str]:
    """``(value, "ms")`` for ``40ms``/``0.04s``, ``(value, "x")`` for ``0.75x``.

    >>> parse_amount("40ms", "goal"), parse_amount("0.75x", "goal")
    ((40.0, 'ms'), (0.75, 'x'))
    """
    m = _RELATIVE.match(str(text))
    if m:
        v = float(m.group(1))
        if v <= 0:
            raise HwnasError(f"{what} {text!r} must be positive")
        return v, "x"
    try:
        return parse_latency(text), "ms"
    except ValueError:
        raise HwnasError(f"bad {what} {text!r}: expected a latency like 40ms (also s, us) or a "
                         f"fraction of the input's latency like 0.75x") from None


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class InputSpec(_Strict):
    """The network to refine: exactly one of ``run``, ``reference``, ``arch``."""

    run: str | None = Field(None, description="a nas-search run folder (best.json + best.pt)")
    reference: str | None = Field(None, description="a published network, e.g. mobilenetv3_large")
    width: float = Field(1.0, gt=0, le=4, description="width multiplier of a reference")
    arch: str | None = Field(None, description="an architecture string")
    weights: str | None = Field(None, description="state_dict (.pt) of reference/arch; none: train first")

    @model_validator(mode="after")
    def _one(self) -> InputSpec:
        given = [k for k in ("run", "reference", "arch") if getattr(self, k) is not None]
        if len(given) != 1:
            raise HwnasError("give exactly one of run, reference, arch"
                             + (f" (got {', '.join(given)})" if given else ""))
        if self.run is not None and self.weights is not None:
            raise HwnasError("weights come from the run folder (best.pt); drop weights or use arch")
        return self


class DatasetSpec(_Strict):
    name: str = Field("fashion-mnist", description="fashion-mnist, a folder of IDX files, or an ImageFolder")
    resolution: int = Field(32, ge=8, le=512, description="proxy training resolution")
    val_size: int = Field(5000, ge=16, description="held-out images carved from the train split")
    train_subset: int | None = Field(None, ge=16, description="train on this many images")


class DrSpec(_Strict):
    initial: str = Field(DEFAULT_DR, description="latency reduction of the first iteration")
    decay: float = Field(DEFAULT_DR_DECAY, gt=0, le=1, description="dR multiplier per iteration")

    @field_validator("initial")
    @classmethod
    def _amount(cls, v: str) -> str:
        parse_amount(v, "dR")
        return str(v).strip()


class ShortTermSpec(_Strict):
    steps: int = Field(DEFAULT_SHORT_STEPS, ge=1, description="optimizer steps per proposal")
    lr: float = Field(DEFAULT_SHORT_LR, gt=0)


class LongTermSpec(_Strict):
    epochs: int = Field(1, ge=0, description="epochs of the final fine-tune (0: none)")
    lr: float = Field(DEFAULT_LONG_LR, gt=0)


class RefineConfig(_Strict):
    """Everything a refine needs (the resolved form is saved as config.yaml)."""

    format_version: int = CONFIG_FORMAT_VERSION
    input: InputSpec
    target: str
    goal: str
    resolution: int = Field(224, ge=32, le=1024, description="deployment resolution for latency")
    dr: DrSpec = Field(default_factory=DrSpec)
    mode: Literal[MODES] = "mobilenetv3"  # type: ignore[valid-type]
    selection: Literal[SELECTIONS] = "accuracy"  # type: ignore[valid-type]
    channel_step: int = Field(DEFAULT_CHANNEL_STEP, ge=1, le=64)
    short_term: ShortTermSpec = Field(default_factory=ShortTermSpec)
    long_term: LongTermSpec = Field(default_factory=LongTermSpec)
    pretrain_epochs: int = Field(1, ge=1, description="epochs to train an input without weights")
    batch_size: int = Field(128, ge=1)
    dataset: DatasetSpec = Field(default_factory=DatasetSpec)
    seed: int = 0
    max_iterations: int = Field(1000, ge=1)
    out: str
    resume: bool = True

    @field_validator("goal")
    @classmethod
    def _goal(cls, v: str) -> str:
        value, unit = parse_amount(v, "goal")
        if unit == "x" and value >= 1:
            raise HwnasError(f"relative goal {v!r} must be below 1x (a fraction of the input's latency)")
        return str(v).strip()

    @property
    def goal_amount(self) -> tuple[float, str]:
        return parse_amount(self.goal, "goal")

    @property
    def dr_amount(self) -> tuple[float, str]:
        return parse_amount(self.dr.initial, "dR")

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.model_dump(mode="json"), sort_keys=False)

    def fingerprint(self) -> dict:
        """The fields a resumed refine must share with the one it continues."""
        d = self.model_dump(mode="json")
        for k in ("resume", "out", "max_iterations", "long_term"):
            d.pop(k, None)
        return d


# ------------------------------------------------------------------ loading ---
def parse_config(raw: Any, source: str = "run.yaml", lines: dict[tuple, int] | None = None
                 ) -> RefineConfig:
    """Validate ``raw`` into a :class:`RefineConfig`; one-line ConfigError otherwise."""
    if not isinstance(raw, dict):
        raise ConfigError(f"{source}: expected a mapping of settings, got {type(raw).__name__}")
    version = raw.get("format_version", CONFIG_FORMAT_VERSION)
    if isinstance(version, int) and version > CONFIG_FORMAT_VERSION:
        raise ConfigError(f"{source}: format_version {version} is newer than this hwnas reads "
                          f"({CONFIG_FORMAT_VERSION})")
    try:
        return RefineConfig(**raw)
    except ValidationError as e:
        raise ConfigError(validation_message(e, RefineConfig, source, lines)) from None


def load_config(path: str | Path) -> RefineConfig:
    """Read and validate a run.yaml (safe YAML, no aliases or duplicate keys); one-line error."""
    raw, lines = load_yaml(path)
    return parse_config(raw, source=str(path), lines=lines)

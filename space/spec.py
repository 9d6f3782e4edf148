"""Frozen architecture specs: stem, blocks, head and the whole network.

A network (:class:`Arch`) is a stem, a tuple of stages (each a tuple of one
:class:`BlockSpec` per layer) and a head. Channel counts are absolute: width
multipliers are applied when a reference network is made, so a spec says
exactly what is built. The canonical text form lives in ``notation.py``.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field, replace

from hwnas.common.errors import HwnasError
from hwnas.common.units import shorten

BLOCK_TYPES = ("conv", "ds", "ir")
ACTIVATIONS = ("relu", "relu6", "hswish", "swish")
KERNELS = (1, 3, 5, 7)
STRIDES = (1, 2)
SE_GATES = ("hsigmoid", "sigmoid")
SE_FROM = ("mid", "in")
HEAD_KINDS = ("v2", "v3")

# timm / torchvision round channel counts to multiples of 8 (the MobileNet
# papers' hardware-friendly choice) and never drop more than 10%.
CHANNEL_DIVISOR = 8
ROUND_LIMIT = 0.9


def make_divisible(value: float, divisor: int = CHANNEL_DIVISOR, round_limit: float = ROUND_LIMIT) -> int:
    """Round ``value`` to a multiple of ``divisor``, never dropping more than 10%.

    >>> make_divisible(18)  # 16 would lose 11%, so go up
    24
    >>> make_divisible(88.08)
    88
    >>> make_divisible(4)  # at least one divisor
    8
    """
    new = max(divisor, int(value + divisor / 2) // divisor * divisor)
    if new < round_limit * value:
        new += divisor
    return int(new)


# Limits on what hwnas builds, measures or predicts, stated once and enforced by the
# specs themselves (so every CLI and the Python API refuse the same inputs before
# allocating anything): a 4x-wide MobileNetV3-Large head has 5,120 channels and the
# deepest published mobile nets ~60 layers; an input of 1024 px is 4.7x ImageNet's.
MAX_CHANNELS = 8192
MAX_LAYERS = 256
MAX_RESOLUTION = 1024
MAX_EXPANSION = 16.0  # MnasNet/MobileNetV3 use at most 6


def _check(ok: bool, what: str, value: object, accepted: object) -> None:
    if not ok:
        raise HwnasError(f"{what} must be {accepted}, got {shorten(value)}")


def _channels(value: object) -> bool:
    return isinstance(value, int) and 0 < value <= MAX_CHANNELS


def check_resolution(resolution: object) -> int:
    """``resolution`` if it is an int in [1, MAX_RESOLUTION]; HwnasError otherwise."""
    _check(isinstance(resolution, int) and 0 < resolution <= MAX_RESOLUTION, "resolution",
           resolution, f"an integer in 1..{MAX_RESOLUTION}")
    return resolution  # type: ignore[return-value]


@dataclass(frozen=True, slots=True)
class StemSpec:
    """The first conv: ``kernel`` x ``kernel`` stride ``stride`` conv + BN + act."""

    out_chs: int
    kernel: int = 3
    stride: int = 2
    act: str = "relu"

    def __post_init__(self) -> None:
        _check(_channels(self.out_chs), "stem channels", self.out_chs, f"an int in 1..{MAX_CHANNELS}")
        _check(self.kernel in KERNELS, "stem kernel", self.kernel, f"one of {KERNELS}")
        _check(self.stride in STRIDES, "stem stride", self.stride, f"one of {STRIDES}")
        _check(self.act in ACTIVATIONS, "stem activation", self.act, f"one of {ACTIVATIONS}")


@dataclass(frozen=True, slots=True)
class BlockSpec:
    """One layer of a stage.

    Attributes:
        type: ``conv`` (KxK conv-BN-act), ``ds`` (depthwise-separable:
            dw conv-BN-act, SE, 1x1 conv-BN) or ``ir`` (inverted residual /
            MBConv: 1x1 expand-BN-act, dw-BN-act, SE, 1x1 project-BN).
        kernel: depthwise (or regular, for ``conv``) kernel size.
        stride: 1 or 2, applied by the depthwise (or regular) conv.
        out_chs: output channels (any positive int).
        exp_ratio: expansion of ``ir``; the expanded count is
            ``make_divisible(in_chs * exp_ratio)`` as in timm.
        mid_chs: explicit expanded count (NetAdapt prunes it); overrides
            ``exp_ratio`` when set.
        se_ratio: squeeze-excitation ratio, 0 for none.
        se_gate: ``hsigmoid`` (MobileNetV3) or ``sigmoid`` (MnasNet-A1).
        se_from: reduce from the block's expanded (``mid``, MobileNetV3,
            rounded to a multiple of 8) or input (``in``, MnasNet/EfficientNet,
            rounded to nearest) channels.
        act: activation of the block.
        skip: identity residual when shapes allow (stride 1, in == out).
    """

    type: str
    kernel: int
    stride: int
    out_chs: int
    exp_ratio: float = 1.0
    mid_chs: int | None = None
    se_ratio: float = 0.0
    se_gate: str = "hsigmoid"
    se_from: str = "mid"
    act: str = "relu"
    skip: bool = True

    def __post_init__(self) -> None:
        _check(self.type in BLOCK_TYPES, "block type", self.type, f"one of {BLOCK_TYPES}")
        _check(self.kernel in KERNELS, "kernel", self.kernel, f"one of {KERNELS}")
        _check(self.stride in STRIDES, "stride", self.stride, f"one of {STRIDES}")
        _check(_channels(self.out_chs), "channels", self.out_chs, f"an int in 1..{MAX_CHANNELS}")
        _check(0 < self.exp_ratio <= MAX_EXPANSION, "expansion", self.exp_ratio, f"a number in (0, {MAX_EXPANSION}]")
        _check(self.mid_chs is None or _channels(self.mid_chs),
               "expanded channels", self.mid_chs, f"an int in 1..{MAX_CHANNELS}")
        _check(0 <= self.se_ratio < 1, "SE ratio", self.se_ratio, "in [0, 1)")
        _check(self.se_gate in SE_GATES, "SE gate", self.se_gate, f"one of {SE_GATES}")
        _check(self.se_from in SE_FROM, "SE reduction base", self.se_from, f"one of {SE_FROM}")
        _check(self.act in ACTIVATIONS, "activation", self.act, f"one of {ACTIVATIONS}")
        if self.type != "ir":
            _check(self.exp_ratio == 1.0 and self.mid_chs is None, f"expansion of a {self.type} block",
                   self.exp_ratio if self.mid_chs is None else self.mid_chs, "1 (only ir blocks expand)")
        if self.type == "conv":
            _check(self.se_ratio == 0, "SE ratio of a conv block", self.se_ratio, "0 (conv blocks have no SE)")
        if self.se_ratio == 0:  # SE style means nothing without SE: one canonical value
            object.__setattr__(self, "se_gate", "hsigmoid")
            object.__setattr__(self, "se_from", "mid")

    # --- derived shapes -------------------------------------------------
    def mid(self, in_chs: int) -> int:
        """Channels the depthwise conv works on for input ``in_chs``."""
        if self.type == "ir":
            return self.mid_chs if self.mid_chs is not None else make_divisible(in_chs * self.exp_ratio)
        return in_chs

    def se_chs(self, in_chs: int) -> int:
        """Reduced channels of the SE module (0 when there is none)."""
        if self.se_ratio == 0:
            return 0
        mid = self.mid(in_chs)
        if self.se_from == "mid":
            return make_divisible(mid * self.se_ratio)
        # timm divides the ratio by the expansion and applies it to mid.
        ratio = self.se_ratio / (self.exp_ratio if self.type == "ir" else 1.0)
        return max(1, round(mid * ratio))

    def has_skip(self, in_chs: int) -> bool:
        return self.skip and self.stride == 1 and in_chs == self.out_chs


@dataclass(frozen=True, slots=True)
class HeadSpec:
    """Classifier head.

    ``v2``: 1x1 conv to ``chs`` + BN + act, global pool, FC (MobileNetV2).
    ``v3``: 1x1 conv to ``chs`` + BN + act, global pool, 1x1 conv to
    ``features`` with bias and no BN + act, FC (MobileNetV3 efficient last
    stage).
    """

    kind: str
    chs: int
    features: int = 0
    act: str = "relu"

    def __post_init__(self) -> None:
        _check(self.kind in HEAD_KINDS, "head kind", self.kind, f"one of {HEAD_KINDS}")
        _check(_channels(self.chs), "head channels", self.chs, f"an int in 1..{MAX_CHANNELS}")
        _check(self.act in ACTIVATIONS, "head activation", self.act, f"one of {ACTIVATIONS}")
        if self.kind == "v3":
            _check(_channels(self.features), "v3 head features", self.features, f"an int in 1..{MAX_CHANNELS}")
        else:
            _check(self.features == 0, "v2 head features", self.features, "0 (v2 heads have no hidden FC)")

    @property
    def out_features(self) -> int:
        return self.features if self.kind == "v3" else self.chs


@dataclass(frozen=True, slots=True)
class Layer:
    """A block placed in a network: its spec and the input it sees."""

    stage: int
    index: int  # position within the stage
    spec: BlockSpec
    in_chs: int
    in_res: int

    @property
    def out_res(self) -> int:
        return _out_res(self.in_res, self.spec.stride)


def _out_res(res: int, stride: int) -> int:
    # "same" padding (k // 2): out = ceil(res / stride)
    return (res + stride - 1) // stride


@dataclass(frozen=True, slots=True)
class Arch:
    """A whole network: stem, stages of layers, head. Immutable and hashable."""

    stem: StemSpec
    stages: tuple[tuple[BlockSpec, ...], ...]
    head: HeadSpec
    name: str | None = field(default=None, compare=False)

    def __post_init__(self) -> None:
        stages = tuple(tuple(s) for s in self.stages)
        object.__setattr__(self, "stages", stages)
        if not stages or any(len(s) == 0 for s in stages):
            raise HwnasError("an architecture needs at least one stage and no empty stage")
        n = sum(len(s) for s in stages)
        _check(n <= MAX_LAYERS, "number of layers", n, f"at most {MAX_LAYERS}")

    # --- iteration ------------------------------------------------------
    def blocks(self) -> tuple[BlockSpec, ...]:
        return tuple(b for s in self.stages for b in s)

    def layers(self, resolution: int = 224) -> Iterator[Layer]:
        """Yield every block with the channels and resolution it receives."""
        check_resolution(resolution)
        chs = self.stem.out_chs
        res = _out_res(resolution, self.stem.stride)
        for si, stage in enumerate(self.stages):
            for bi, spec in enumerate(stage):
                yield Layer(si, bi, spec, chs, res)
                chs, res = spec.out_chs, _out_res(res, spec.stride)

    def final_shape(self, resolution: int = 224) -> tuple[int, int]:
        """(channels, resolution) entering the head."""
        check_resolution(resolution)
        chs, res = self.stem.out_chs, _out_res(resolution, self.stem.stride)
        for b in self.blocks():
            chs, res = b.out_chs, _out_res(res, b.stride)
        return chs, res

    @property
    def depth(self) -> int:
        return sum(len(s) for s in self.stages)

    # --- text form (see notation.py) -----------------------------------
    def to_str(self) -> str:
        from .notation import arch_to_str

        return arch_to_str(self)

    @classmethod
    def from_str(cls, text: str) -> Arch:
        from .notation import arch_from_str

        return arch_from_str(text)

    # --- analytic counts (see counts.py) -------------------------------
    def params(self, num_classes: int = 1000) -> int:
        from .counts import count_params

        return count_params(self, num_classes)

    def madds(self, resolution: int = 224, num_classes: int = 1000) -> int:
        from .counts import count_madds

        return count_madds(self, resolution, num_classes)

    def with_name(self, name: str | None) -> Arch:
        return replace(self, name=name)

    def __str__(self) -> str:
        return self.to_str()

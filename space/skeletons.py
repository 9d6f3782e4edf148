"""Skeletons of the search spaces: the fixed frame each space's choices vary.

A skeleton is what MnasNet (Tan et al., CVPR 2019, Sec. 4.1 and Fig. 4) calls
the network's blocks: a stem, a sequence of blocks, each with a number of
layers, output filters and the stride of its first layer, and the head(s).
The search space (``searchspace.py``) picks one op, kernel, SE ratio,
activation, skip, filter multiplier and layer-count change per block.

Sources:
- ``mobilenetv3``: MobileNetV3-Large, Howard et al., ICCV 2019, Table 1
  (stem 16 hard-swish; blocks 16x1 s1, 24x2 s2, 40x3 s2, 80x4 s2, 112x2 s1,
  160x3 s2; 960 -> pool -> 1280 efficient last stage). Its SE reduces from the
  expanded channels with a hard-sigmoid gate (Sec. 5.3).
- ``mnasnet``: MnasNet-A1 / MobileNetV2 frame, Tan et al., CVPR 2019, Fig. 7;
  Sandler et al., CVPR 2018, Table 2 (stem 32 ReLU; blocks 16x1 s1, 24x2 s2,
  40x3 s2, 80x4 s2, 112x2 s1, 160x3 s2, 320x1 s1; 1x1 conv to 1280 head). Its
  SE reduces from the block input with a sigmoid gate, as the released
  MnasNet-A1.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from .spec import Arch, HeadSpec, StemSpec

# Expansion ratios of the ``ir`` op choices (MnasNet Sec. 4.1: MBConv 1, 3, 6;
# 4 added because MobileNetV3-Large's second block expands by 4).
IR_EXPANSIONS = (1, 3, 4, 6)


@dataclass(frozen=True, slots=True)
class SkeletonBlock:
    """One block of a skeleton: output filters, layers and first-layer stride."""

    out_chs: int
    layers: int
    stride: int


@dataclass(frozen=True, slots=True)
class Skeleton:
    """The fixed frame of a search space.

    Attributes:
        name: the space's name.
        stem: the fixed stem.
        blocks: the blocks, in order.
        heads: head choices by kind (``v3``, ``v2``); one entry means a fixed head.
        se_gate: SE gate of every block with SE (``hsigmoid`` or ``sigmoid``).
        se_from: SE reduction base (``mid`` or ``in``), see ``BlockSpec``.
        source: where the skeleton comes from.
    """

    name: str
    stem: StemSpec
    blocks: tuple[SkeletonBlock, ...]
    heads: dict[str, HeadSpec]
    se_gate: str
    se_from: str
    source: str


def _blocks(*rows: tuple[int, int, int]) -> tuple[SkeletonBlock, ...]:
    return tuple(SkeletonBlock(c, n, s) for c, n, s in rows)


# (filters, layers, stride) per block; the comment is the input resolution at 224.
_V3_BLOCKS = _blocks(
    (16, 1, 1),  # 112x112
    (24, 2, 2),  # 112x112
    (40, 3, 2),  # 56x56
    (80, 4, 2),  # 28x28
    (112, 2, 1),  # 14x14
    (160, 3, 2),  # 14x14
)
_MNAS_BLOCKS = _blocks(
    (16, 1, 1),  # 112x112
    (24, 2, 2),  # 112x112
    (40, 3, 2),  # 56x56
    (80, 4, 2),  # 28x28
    (112, 2, 1),  # 14x14
    (160, 3, 2),  # 14x14
    (320, 1, 1),  # 7x7
)

SKELETONS: dict[str, Skeleton] = {
    "mobilenetv3": Skeleton(
        name="mobilenetv3",
        stem=StemSpec(16, kernel=3, stride=2, act="hswish"),
        blocks=_V3_BLOCKS,
        # v3: MobileNetV3's efficient last stage (Howard et al. Sec. 5.1);
        # v2: MobileNetV2's 1x1 conv to 1280 before pooling (Sandler et al. Table 2),
        # with the skeleton's hard-swish.
        heads={
            "v3": HeadSpec("v3", 960, features=1280, act="hswish"),
            "v2": HeadSpec("v2", 1280, act="hswish"),
        },
        se_gate="hsigmoid",
        se_from="mid",
        source="MobileNetV3-Large, Howard et al., ICCV 2019, Table 1",
    ),
    "mnasnet": Skeleton(
        name="mnasnet",
        stem=StemSpec(32, kernel=3, stride=2, act="relu"),
        blocks=_MNAS_BLOCKS,
        heads={"v2": HeadSpec("v2", 1280, act="relu")},
        se_gate="sigmoid",
        se_from="in",
        source="MnasNet-A1, Tan et al., CVPR 2019, Fig. 7 (MobileNetV2 frame)",
    ),
}


def nearest_expansion(ratio: float) -> int:
    """The ``ir`` expansion choice closest to ``ratio`` (the smaller one on a tie).

    >>> nearest_expansion(2.5), nearest_expansion(4.5), nearest_expansion(6)
    (3, 4, 6)
    """
    return min(IR_EXPANSIONS, key=lambda e: (abs(e - ratio), e))


def block_uniform(arch: Arch) -> Arch:
    """``arch`` with one expansion per stage: its first ``ir`` layer's, snapped to a choice.

    MobileNetV3-Large's uneven per-layer expansions (4, 3 and 6, 2.5, 2.3, 2.3)
    came from NetAdapt; MnasNet's factorized space shares one expansion per
    block, so this is the form of such a network the space can hold. Only
    expansions change (explicit ``mid_chs`` are dropped); non-``ir`` layers and
    everything else are kept.

    >>> from hwnas.space import reference
    >>> block_uniform(reference("mobilenetv3_large")).stages[3][1].exp_ratio
    6
    """
    stages = []
    for stage in arch.stages:
        irs = [b for b in stage if b.type == "ir"]
        if not irs:
            stages.append(stage)
            continue
        e = nearest_expansion(irs[0].exp_ratio)
        stages.append(tuple(replace(b, exp_ratio=e, mid_chs=None) if b.type == "ir" else b
                            for b in stage))
    name = f"{arch.name}_uniform" if arch.name else None
    return Arch(stem=arch.stem, stages=tuple(stages), head=arch.head, name=name)

"""Published mobile networks as exact points of the block notation.

Stage definitions follow the papers' tables, in the layout timm's
``_efficientnet_builder`` uses (a comment on each stage gives its input
resolution at 224x224). Width multipliers follow timm's semantics: every
stage's output channels are ``make_divisible(c * width)``; stems and heads
scale or stay fixed per network as noted below.

Sources:
- MobileNetV2: Sandler et al., CVPR 2018, Table 2.
- MnasNet-A1/B1/small: Tan et al., CVPR 2019, Fig. 7 and the released models.
- MobileNetV3-Large/Small: Howard et al., ICCV 2019, Tables 1 and 2.
- FBNet-C: Wu et al., CVPR 2019, Fig. 4.
- SPNASNet (Single-Path NAS): Stamoulis et al., 2019, Fig. 4.
- ProxylessNAS-Mobile: Cai et al., ICLR 2019, Fig. 4 (the released
  ``proxyless_mobile`` configuration; see docs/space.md).
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from hwnas.common.errors import HwnasError

from .notation import arch_from_str
from .spec import Arch, make_divisible


@dataclass(frozen=True)
class _Ref:
    text: str  # the network at width 1.0
    scale_stem: str = "always"  # "always" | "never" | "v3" (fixed below width 0.75, as timm)
    head_rule: str = "fixed"  # "fixed" | "max" (max(c, round(c * w)), MobileNetV2) | "v3"


_MNV3_SE = "se0.25"  # hard-sigmoid gate, reduced from expanded channels, rounded to 8
_MNAS_SE = "se0.25_sig_sein"  # sigmoid gate, reduced from block input

_REFS: dict[str, _Ref] = {
    "mobilenetv3_large": _Ref(":".join([
        "stem_k3_s2_c16_nhs",
        "ds_r1_k3_s1_e1_c16_nre",  # 112x112
        "ir_r1_k3_s2_e4_c24_nre,ir_r1_k3_s1_e3_c24_nre",  # 112x112
        f"ir_r3_k5_s2_e3_c40_{_MNV3_SE}_nre",  # 56x56
        "ir_r1_k3_s2_e6_c80_nhs,ir_r1_k3_s1_e2.5_c80_nhs,ir_r2_k3_s1_e2.3_c80_nhs",  # 28x28
        f"ir_r2_k3_s1_e6_c112_{_MNV3_SE}_nhs",  # 14x14
        f"ir_r3_k5_s2_e6_c160_{_MNV3_SE}_nhs",  # 14x14
        "head_v3_c960_f1280_nhs",  # 7x7
    ]), scale_stem="v3", head_rule="v3"),
    "mobilenetv3_small": _Ref(":".join([
        "stem_k3_s2_c16_nhs",
        f"ds_r1_k3_s2_e1_c16_{_MNV3_SE}_nre",  # 112x112
        "ir_r1_k3_s2_e4.5_c24_nre,ir_r1_k3_s1_e3.67_c24_nre",  # 56x56
        f"ir_r1_k5_s2_e4_c40_{_MNV3_SE}_nhs,ir_r2_k5_s1_e6_c40_{_MNV3_SE}_nhs",  # 28x28
        f"ir_r2_k5_s1_e3_c48_{_MNV3_SE}_nhs",  # 14x14
        f"ir_r3_k5_s2_e6_c96_{_MNV3_SE}_nhs",  # 14x14
        "head_v3_c576_f1024_nhs",  # 7x7
    ]), scale_stem="v3", head_rule="v3"),
    "mobilenetv2": _Ref(":".join([
        "stem_k3_s2_c32_nr6",
        "ds_r1_k3_s1_c16_nr6",  # 112x112
        "ir_r2_k3_s2_e6_c24_nr6",  # 112x112
        "ir_r3_k3_s2_e6_c32_nr6",  # 56x56
        "ir_r4_k3_s2_e6_c64_nr6",  # 28x28
        "ir_r3_k3_s1_e6_c96_nr6",  # 14x14
        "ir_r3_k3_s2_e6_c160_nr6",  # 14x14
        "ir_r1_k3_s1_e6_c320_nr6",  # 7x7
        "head_v2_c1280_nr6",
    ]), head_rule="max"),
    "mnasnet_b1": _Ref(":".join([
        "stem_k3_s2_c32_nre",
        "ds_r1_k3_s1_c16_nre_noskip",  # 112x112
        "ir_r3_k3_s2_e3_c24_nre",  # 112x112
        "ir_r3_k5_s2_e3_c40_nre",  # 56x56
        "ir_r3_k5_s2_e6_c80_nre",  # 28x28
        "ir_r2_k3_s1_e6_c96_nre",  # 14x14
        "ir_r4_k5_s2_e6_c192_nre",  # 14x14
        "ir_r1_k3_s1_e6_c320_nre_noskip",  # 7x7
        "head_v2_c1280_nre",
    ])),
    "mnasnet_a1": _Ref(":".join([
        "stem_k3_s2_c32_nre",
        "ds_r1_k3_s1_e1_c16_nre_noskip",  # 112x112
        "ir_r2_k3_s2_e6_c24_nre",  # 112x112
        f"ir_r3_k5_s2_e3_c40_{_MNAS_SE}_nre",  # 56x56
        "ir_r4_k3_s2_e6_c80_nre",  # 28x28
        f"ir_r2_k3_s1_e6_c112_{_MNAS_SE}_nre",  # 14x14
        f"ir_r3_k5_s2_e6_c160_{_MNAS_SE}_nre",  # 14x14
        "ir_r1_k3_s1_e6_c320_nre",  # 7x7
        "head_v2_c1280_nre",
    ])),
    "mnasnet_small": _Ref(":".join([
        "stem_k3_s2_c8_nre",
        "ds_r1_k3_s1_c8_nre",  # 112x112
        "ir_r1_k3_s2_e3_c16_nre",  # 112x112
        "ir_r2_k3_s2_e6_c16_nre",  # 56x56
        f"ir_r4_k5_s2_e6_c32_{_MNAS_SE}_nre",  # 28x28
        f"ir_r3_k3_s1_e6_c32_{_MNAS_SE}_nre",  # 14x14
        f"ir_r3_k5_s2_e6_c88_{_MNAS_SE}_nre",  # 14x14
        "ir_r1_k3_s1_e6_c144_nre",  # 7x7
        "head_v2_c1280_nre",
    ])),
    "fbnet_c": _Ref(":".join([
        "stem_k3_s2_c16_nre",
        "ir_r1_k3_s1_e1_c16_nre",  # 112x112
        "ir_r1_k3_s2_e6_c24_nre,ir_r2_k3_s1_e1_c24_nre",  # 112x112
        "ir_r1_k5_s2_e6_c32_nre,ir_r1_k5_s1_e3_c32_nre,ir_r1_k5_s1_e6_c32_nre,ir_r1_k3_s1_e6_c32_nre",  # 56x56
        "ir_r1_k5_s2_e6_c64_nre,ir_r1_k5_s1_e3_c64_nre,ir_r2_k5_s1_e6_c64_nre",  # 28x28
        "ir_r3_k5_s1_e6_c112_nre,ir_r1_k5_s1_e3_c112_nre",  # 14x14
        "ir_r4_k5_s2_e6_c184_nre",  # 14x14
        "ir_r1_k3_s1_e6_c352_nre",  # 7x7
        "head_v2_c1984_nre",
    ])),
    "spnasnet": _Ref(":".join([
        "stem_k3_s2_c32_nre",
        "ds_r1_k3_s1_c16_nre_noskip",  # 112x112
        "ir_r3_k3_s2_e3_c24_nre",  # 112x112
        "ir_r1_k5_s2_e6_c40_nre,ir_r3_k3_s1_e3_c40_nre",  # 56x56
        "ir_r1_k5_s2_e6_c80_nre,ir_r3_k3_s1_e3_c80_nre",  # 28x28
        "ir_r1_k5_s1_e6_c96_nre,ir_r3_k5_s1_e3_c96_nre",  # 14x14
        "ir_r4_k5_s2_e6_c192_nre",  # 14x14
        "ir_r1_k3_s1_e6_c320_nre_noskip",  # 7x7
        "head_v2_c1280_nre",
    ])),
    # ProxylessNAS-Mobile (searched for the Pixel 1): MobileNetV2-style blocks
    # with ReLU6, searched kernels and expansions (Cai et al. 2019, Fig. 4).
    "proxyless_mobile": _Ref(":".join([
        "stem_k3_s2_c32_nr6",
        "ir_r1_k3_s1_e1_c16_nr6",  # 112x112
        "ir_r1_k5_s2_e3_c24_nr6,ir_r1_k3_s1_e3_c24_nr6",  # 112x112
        "ir_r1_k7_s2_e3_c40_nr6,ir_r1_k3_s1_e3_c40_nr6,ir_r1_k5_s1_e3_c40_nr6,ir_r1_k5_s1_e3_c40_nr6",  # 56x56
        "ir_r1_k7_s2_e6_c80_nr6,ir_r1_k5_s1_e3_c80_nr6,ir_r1_k5_s1_e3_c80_nr6,ir_r1_k5_s1_e3_c80_nr6",  # 28x28
        "ir_r1_k5_s1_e6_c96_nr6,ir_r1_k5_s1_e3_c96_nr6,ir_r1_k5_s1_e3_c96_nr6,ir_r1_k5_s1_e3_c96_nr6",  # 14x14
        "ir_r1_k7_s2_e6_c192_nr6,ir_r1_k7_s1_e6_c192_nr6,ir_r1_k7_s1_e3_c192_nr6,ir_r1_k7_s1_e3_c192_nr6",  # 14x14
        "ir_r1_k7_s1_e6_c320_nr6",  # 7x7
        "head_v2_c1280_nr6",
    ]), head_rule="max"),
}

REFERENCE_NAMES: tuple[str, ...] = tuple(_REFS)


def reference(name: str, width: float = 1.0) -> Arch:
    """A published network at width multiplier ``width``.

    >>> reference("mobilenetv3_large").params()
    5483032
    """
    key = name.lower().replace("-", "_")
    if key not in _REFS:
        raise HwnasError(f"unknown network {name!r}: known are {', '.join(REFERENCE_NAMES)}")
    if not (0 < width <= 4):
        raise HwnasError(f"width multiplier must be in (0, 4], got {width!r}")
    ref = _REFS[key]
    arch = arch_from_str(ref.text)

    def sc(c: int) -> int:
        return make_divisible(c * width)

    stem = arch.stem
    if ref.scale_stem == "always" or (ref.scale_stem == "v3" and width >= 0.75):
        stem = replace(stem, out_chs=sc(stem.out_chs))
    stages = tuple(tuple(replace(b, out_chs=sc(b.out_chs)) for b in s) for s in arch.stages)
    head = arch.head
    if ref.head_rule == "v3":  # the 1x1 conv before pooling is a scaled stage in timm
        head = replace(head, chs=sc(head.chs))
    elif ref.head_rule == "max":
        head = replace(head, chs=max(head.chs, sc(head.chs)))
    label = key if width == 1.0 else f"{key}_{width:g}"
    return Arch(stem=stem, stages=stages, head=head, name=label)

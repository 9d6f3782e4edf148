"""Latency-table keys: one function turns (block spec, input shape) into a key.

A key names exactly the computation a layer does, with every count resolved
(expanded channels, SE channels, whether the identity skip is taken), so two
specs that build the same layer share a key. Both the measurer and the lookup
use :func:`layer_keys` / :func:`block_key`; :meth:`LayerKey.parse` reads a
key back, so a measurer can build the layer from the key alone.

Text form (``|`` separates the layer from its input shape C x H x W)::

    stem_k3_s2_c16_nhs|3x224x224
    ir_k5_s2_m72_c40_se24h_nre_noskip|24x56x56
    head_v3_c960_f1280_nhs_cls1000|160x7x7
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from hwnas.common.errors import HwnasError
from hwnas.space.spec import Arch, BlockSpec, HeadSpec, StemSpec

_ACT = {"relu": "re", "relu6": "r6", "hswish": "hs", "swish": "sw"}
_ACT_BACK = {v: k for k, v in _ACT.items()}
_GATE = {"hsigmoid": "h", "sigmoid": "s"}
_GATE_BACK = {v: k for k, v in _GATE.items()}


@dataclass(frozen=True, slots=True)
class LayerKey:
    """A resolved layer. ``part`` is ``stem``, ``block`` or ``head``.

    For blocks ``op`` is ``conv``/``ds``/``ir``; for heads ``v2``/``v3``; for
    the stem ``conv``. ``mid_chs`` is the depthwise width (0 for conv),
    ``se_chs`` the SE reduction (0 = none), ``features`` the v3 head's hidden
    width, ``num_classes`` the head's FC width.
    """

    part: str
    op: str
    in_chs: int
    res: int
    out_chs: int
    kernel: int = 1
    stride: int = 1
    mid_chs: int = 0
    se_chs: int = 0
    se_gate: str = "hsigmoid"
    act: str = "relu"
    skip: bool = False
    features: int = 0
    num_classes: int = 0

    @property
    def out_res(self) -> int:
        return (self.res + self.stride - 1) // self.stride

    def __str__(self) -> str:
        shape = f"{self.in_chs}x{self.res}x{self.res}"
        act = f"n{_ACT[self.act]}"
        if self.part == "stem":
            return f"stem_k{self.kernel}_s{self.stride}_c{self.out_chs}_{act}|{shape}"
        if self.part == "head":
            f = f"_f{self.features}" if self.op == "v3" else ""
            return f"head_{self.op}_c{self.out_chs}{f}_{act}_cls{self.num_classes}|{shape}"
        parts = [self.op, f"k{self.kernel}", f"s{self.stride}"]
        if self.op == "ir":
            parts.append(f"m{self.mid_chs}")
        parts.append(f"c{self.out_chs}")
        if self.se_chs:
            parts.append(f"se{self.se_chs}{_GATE[self.se_gate]}")
        parts += [act, "skip" if self.skip else "noskip"]
        return "_".join(parts) + f"|{shape}"

    @classmethod
    def parse(cls, text: str) -> LayerKey:
        try:
            layer, shape = text.split("|")
            cin, h, w = (int(v) for v in shape.split("x"))
            toks = layer.split("_")
            opts: dict[str, str] = {}
            flags: set[str] = set()
            for t in toks[1:]:
                m = re.fullmatch(r"([a-z]+?)(\d+)([hs]?)", t)
                if t.startswith("n") and t[1:] in _ACT_BACK:
                    opts["act"] = _ACT_BACK[t[1:]]
                elif m and t not in ("v2", "v3"):
                    opts[m.group(1)] = m.group(2)
                    if m.group(1) == "se":
                        opts["gate"] = _GATE_BACK[m.group(3)]
                else:
                    flags.add(t)
            act = opts["act"]
            if toks[0] == "stem":
                return cls(
                    "stem", "conv", cin, h, int(opts["c"]), int(opts["k"]), int(opts["s"]), act=act
                )
            if toks[0] == "head":
                kind = toks[1]
                return cls(
                    "head",
                    kind,
                    cin,
                    h,
                    int(opts["c"]),
                    act=act,
                    features=int(opts.get("f", 0)),
                    num_classes=int(opts["cls"]),
                )
            if toks[0] not in ("conv", "ds", "ir"):
                raise HwnasError(toks[0])
            return cls(
                "block",
                toks[0],
                cin,
                h,
                int(opts["c"]),
                int(opts["k"]),
                int(opts["s"]),
                mid_chs=int(opts.get("m", cin if toks[0] == "ds" else 0)),
                se_chs=int(opts.get("se", 0)),
                se_gate=opts.get("gate", "hsigmoid"),
                act=act,
                skip="skip" in flags,
            )
        except (ValueError, KeyError, IndexError) as e:
            raise HwnasError(f"malformed latency key {text!r} ({e})") from None


def stem_key(stem: StemSpec, resolution: int, in_chs: int = 3) -> LayerKey:
    return LayerKey(
        "stem", "conv", in_chs, resolution, stem.out_chs, stem.kernel, stem.stride, act=stem.act
    )


def block_key(spec: BlockSpec, in_chs: int, res: int) -> LayerKey:
    """The one function that keys a block by (spec, input shape)."""
    mid = spec.mid(in_chs) if spec.type != "conv" else 0
    return LayerKey(
        "block",
        spec.type,
        in_chs,
        res,
        spec.out_chs,
        spec.kernel,
        spec.stride,
        mid_chs=mid,
        se_chs=spec.se_chs(in_chs),
        se_gate=spec.se_gate if spec.se_ratio else "hsigmoid",
        act=spec.act,
        skip=spec.has_skip(in_chs),
    )


def head_key(head: HeadSpec, in_chs: int, res: int, num_classes: int = 1000) -> LayerKey:
    return LayerKey(
        "head",
        head.kind,
        in_chs,
        res,
        head.chs,
        act=head.act,
        features=head.features,
        num_classes=num_classes,
    )


def layer_keys(arch: Arch, resolution: int = 224, num_classes: int = 1000) -> list[LayerKey]:
    """Keys of every part of ``arch`` in order: stem, blocks, head."""
    keys = [stem_key(arch.stem, resolution)]
    keys += [block_key(ly.spec, ly.in_chs, ly.in_res) for ly in arch.layers(resolution)]
    chs, res = arch.final_shape(resolution)
    keys.append(head_key(arch.head, chs, res, num_classes))
    return keys

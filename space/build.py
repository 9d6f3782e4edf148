"""Build a torch module from an :class:`Arch`.

Sub-layers are named in paper order (as timm does): ``conv_pw, bn1, act1,
conv_dw, bn2, act2, se, conv_pwl, bn3``; absent parts are ``nn.Identity`` so
``forward`` has no branches on the spec. Padding is ``k // 2`` ("same" for
odd kernels), which is what the papers' reference implementations use.
"""

from __future__ import annotations

import torch
from torch import nn

from .spec import Arch, BlockSpec, HeadSpec, StemSpec

_ACTS = {"relu": nn.ReLU, "relu6": nn.ReLU6, "hswish": nn.Hardswish, "swish": nn.SiLU}
_GATES = {"hsigmoid": nn.Hardsigmoid, "sigmoid": nn.Sigmoid}


def make_act(name: str) -> nn.Module:
    return _ACTS[name](inplace=True)


def _conv(cin: int, cout: int, k: int, stride: int = 1, groups: int = 1, bias: bool = False) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, k, stride, padding=k // 2, groups=groups, bias=bias)


class SqueezeExcite(nn.Module):
    """Global pool, 1x1 reduce + ReLU, 1x1 expand + gate, rescale the input."""

    def __init__(self, chs: int, rd: int, gate: str) -> None:
        super().__init__()
        self.conv_reduce = nn.Conv2d(chs, rd, 1, bias=True)
        self.act = nn.ReLU(inplace=True)
        self.conv_expand = nn.Conv2d(rd, chs, 1, bias=True)
        self.gate = _GATES[gate]()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = x.mean((2, 3), keepdim=True)
        s = self.conv_expand(self.act(self.conv_reduce(s)))
        return x * self.gate(s)


class ConvBnAct(nn.Module):
    """KxK conv + BN + activation (stems, ``conv`` blocks)."""

    def __init__(self, cin: int, cout: int, k: int, stride: int, act: str, skip: bool = False) -> None:
        super().__init__()
        self.conv = _conv(cin, cout, k, stride)
        self.bn1 = nn.BatchNorm2d(cout)
        self.act1 = make_act(act)
        self.has_skip = skip

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.act1(self.bn1(self.conv(x)))
        return y + x if self.has_skip else y


class DepthwiseSeparable(nn.Module):
    """dw KxK + BN + act, SE, pw 1x1 + BN (linear), identity skip when allowed."""

    def __init__(self, spec: BlockSpec, cin: int) -> None:
        super().__init__()
        rd = spec.se_chs(cin)
        self.conv_dw = _conv(cin, cin, spec.kernel, spec.stride, groups=cin)
        self.bn1 = nn.BatchNorm2d(cin)
        self.act1 = make_act(spec.act)
        self.se = SqueezeExcite(cin, rd, spec.se_gate) if rd else nn.Identity()
        self.conv_pw = _conv(cin, spec.out_chs, 1)
        self.bn2 = nn.BatchNorm2d(spec.out_chs)
        self.has_skip = spec.has_skip(cin)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.se(self.act1(self.bn1(self.conv_dw(x))))
        y = self.bn2(self.conv_pw(y))
        return y + x if self.has_skip else y


class InvertedResidual(nn.Module):
    """MBConv: pw 1x1 expand + BN + act, dw KxK + BN + act, SE, pwl 1x1 + BN."""

    def __init__(self, spec: BlockSpec, cin: int) -> None:
        super().__init__()
        mid = spec.mid(cin)
        rd = spec.se_chs(cin)
        self.conv_pw = _conv(cin, mid, 1)
        self.bn1 = nn.BatchNorm2d(mid)
        self.act1 = make_act(spec.act)
        self.conv_dw = _conv(mid, mid, spec.kernel, spec.stride, groups=mid)
        self.bn2 = nn.BatchNorm2d(mid)
        self.act2 = make_act(spec.act)
        self.se = SqueezeExcite(mid, rd, spec.se_gate) if rd else nn.Identity()
        self.conv_pwl = _conv(mid, spec.out_chs, 1)
        self.bn3 = nn.BatchNorm2d(spec.out_chs)
        self.has_skip = spec.has_skip(cin)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.act1(self.bn1(self.conv_pw(x)))
        y = self.se(self.act2(self.bn2(self.conv_dw(y))))
        y = self.bn3(self.conv_pwl(y))
        return y + x if self.has_skip else y


def build_block(spec: BlockSpec, cin: int) -> nn.Module:
    if spec.type == "conv":
        return ConvBnAct(cin, spec.out_chs, spec.kernel, spec.stride, spec.act, skip=spec.has_skip(cin))
    if spec.type == "ds":
        return DepthwiseSeparable(spec, cin)
    return InvertedResidual(spec, cin)


def build_stem(stem: StemSpec, in_chs: int = 3) -> nn.Module:
    return ConvBnAct(in_chs, stem.out_chs, stem.kernel, stem.stride, stem.act)


class Head(nn.Module):
    """1x1 conv + BN + act, pool, [1x1 conv with bias + act (v3)], flatten, FC."""

    def __init__(self, head: HeadSpec, cin: int, num_classes: int, dropout: float = 0.0) -> None:
        super().__init__()
        self.conv_head = _conv(cin, head.chs, 1)
        self.bn = nn.BatchNorm2d(head.chs)
        self.act1 = make_act(head.act)
        self.pool = nn.AdaptiveAvgPool2d(1)
        if head.kind == "v3":
            self.conv_hidden: nn.Module = _conv(head.chs, head.features, 1, bias=True)
            self.act2: nn.Module = make_act(head.act)
        else:
            self.conv_hidden = nn.Identity()
            self.act2 = nn.Identity()
        self.flatten = nn.Flatten(1)
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.classifier = nn.Linear(head.out_features, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.pool(self.act1(self.bn(self.conv_head(x))))
        x = self.flatten(self.act2(self.conv_hidden(x)))
        return self.classifier(self.dropout(x))


class Net(nn.Module):
    """stem -> stages (``blocks[i][j]``) -> head."""

    def __init__(self, arch: Arch, num_classes: int = 1000, in_chs: int = 3, dropout: float = 0.0) -> None:
        super().__init__()
        self.arch = arch
        self.stem = build_stem(arch.stem, in_chs)
        stages = []
        chs = arch.stem.out_chs
        for stage in arch.stages:
            mods = []
            for spec in stage:
                mods.append(build_block(spec, chs))
                chs = spec.out_chs
            stages.append(nn.Sequential(*mods))
        self.blocks = nn.Sequential(*stages)
        self.head = Head(arch.head, chs, num_classes, dropout)
        init_weights(self)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.blocks(self.stem(x))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.forward_features(x))


def init_weights(model: nn.Module) -> None:
    """He (fan-out) convs, unit BN, small-normal linears, as MobileNetV2/V3 reference code does."""
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out")
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
        elif isinstance(m, nn.Linear):
            nn.init.normal_(m.weight, 0, 0.01)
            nn.init.zeros_(m.bias)


def build(arch: Arch, num_classes: int = 1000, in_chs: int = 3, dropout: float = 0.0) -> Net:
    """Return a new torch module for ``arch`` (fresh weights every call)."""
    return Net(arch, num_classes=num_classes, in_chs=in_chs, dropout=dropout)

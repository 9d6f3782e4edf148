"""Prunable units of an :class:`~hwnas.space.Arch` and the channel spaces they own.

A *channel space* is a set of feature-map channels that several tensors
index in the same order: the output of a conv, the BN after it, the
depthwise conv and SE that follow it, and the input of the next 1x1 conv.
Identity skips join spaces: a block whose residual is taken adds its output
to its input, so both live in one space, and every layer writing into that
space (the stem included when the first block has a skip) must keep the same
channels. NetAdapt prunes whole spaces:

- ``filters`` mode (NetAdapt, Yang et al., ECCV 2018): each layer's output
  filters — the stem, every block output and the head's convs — where no
  residual ties the layer to another, and the expanded size of ``ir`` blocks.
- ``mobilenetv3`` mode (Howard et al., ICCV 2019, Section 4.2): "reduce the
  size of any expansion layer" (every ``ir`` block's expanded size and the
  head's 1x1 conv, which is the expansion of MobileNetV3's efficient last
  stage) and "reduce bottleneck in all blocks that share the same bottleneck
  size" (each space of block outputs joined by residuals, pruned together).

SE reduce channels are not a unit: they follow from the space they reduce
(``BlockSpec.se_chs``). Before pruning, :func:`normalize` makes every count
explicit (``mid_chs``) and turns off skips that are not taken, so the module
structure cannot change as counts move.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from hwnas.common.errors import HwnasError
from hwnas.space.spec import Arch

MODES = ("filters", "mobilenetv3")

# MobileNet networks keep channel counts at multiples of 8 (timm/torchvision
# ``make_divisible``, hwnas.space.spec.CHANNEL_DIVISOR); proposals move in
# these steps and stop at one step.
DEFAULT_CHANNEL_STEP = 8

Site = tuple  # ("stem",) | ("out", s, i) | ("mid", s, i) | ("head",) | ("features",)


@dataclass(frozen=True, slots=True)
class Unit:
    """One prunable unit: a channel space and the Arch counts that set its size.

    Attributes:
        name: readable name, e.g. ``s1.b0.mid``, ``s2.b0..s2.b2.out``, ``head``.
        space: the channel space it sizes (see :class:`Layout`).
        sites: where the count lives in the Arch (all set together).
    """

    name: str
    space: str
    sites: tuple[Site, ...]


@dataclass(frozen=True)
class Layout:
    """Channel spaces of a network as ``hwnas.space.build`` makes it.

    Attributes:
        modules: module path -> (output space, input space); ``None`` for an
            input dimension that is not a channel space (depthwise convs, BN).
        sizes: channels of every space for this Arch.
        groups: output spaces (``g0``, ``g1``, ...) -> the sites writing them.
    """

    modules: dict[str, tuple[str, str | None]]
    sizes: dict[str, int]
    groups: dict[str, tuple[Site, ...]]


def layout(arch: Arch, num_classes: int = 1000) -> Layout:
    """Walk ``arch`` exactly as ``build`` does and name every channel space.

    >>> from hwnas.space import Arch
    >>> lay = layout(Arch.from_str("stem_k3_s2_c16_nre:ds_r1_k3_s1_c16_nre:head_v2_c64_nre"))
    >>> lay.groups["g0"]
    (('stem',), ('out', 0, 0))
    """
    mods: dict[str, tuple[str, str | None]] = {"stem.conv": ("g0", "rgb"), "stem.bn1": ("g0", None)}
    sizes = {"rgb": 3, "g0": arch.stem.out_chs, "cls": num_classes}
    groups: dict[str, list[Site]] = {"g0": [("stem",)]}
    cur = "g0"
    for layer in arch.layers():
        s, i, spec, cin = layer.stage, layer.index, layer.spec, layer.in_chs
        p = f"blocks.{s}.{i}"
        if spec.has_skip(cin):
            out = cur
        else:
            out = f"g{len(groups)}"
            groups[out] = []
            sizes[out] = spec.out_chs
        groups[out].append(("out", s, i))
        if spec.type == "conv":
            mods[f"{p}.conv"] = (out, cur)
            mods[f"{p}.bn1"] = (out, None)
            cur = out
            continue
        if spec.type == "ir":
            mid = f"m{s}.{i}"
            sizes[mid] = spec.mid(cin)
            mods[f"{p}.conv_pw"] = (mid, cur)
            mods[f"{p}.bn1"] = (mid, None)
            mods[f"{p}.conv_dw"] = (mid, None)
            mods[f"{p}.bn2"] = (mid, None)
            last, last_bn = f"{p}.conv_pwl", f"{p}.bn3"
        else:  # ds: the depthwise conv works on the input space
            mid = cur
            mods[f"{p}.conv_dw"] = (mid, None)
            mods[f"{p}.bn1"] = (mid, None)
            last, last_bn = f"{p}.conv_pw", f"{p}.bn2"
        rd = spec.se_chs(cin)
        if rd:
            sizes[f"r{s}.{i}"] = rd
            mods[f"{p}.se.conv_reduce"] = (f"r{s}.{i}", mid)
            mods[f"{p}.se.conv_expand"] = (mid, f"r{s}.{i}")
        mods[last] = (out, mid)
        mods[last_bn] = (out, None)
        cur = out
    sizes["head"] = arch.head.chs
    mods["head.conv_head"] = ("head", cur)
    mods["head.bn"] = ("head", None)
    feats = "head"
    if arch.head.kind == "v3":
        sizes["features"] = arch.head.features
        mods["head.conv_hidden"] = ("features", "head")
        feats = "features"
    mods["head.classifier"] = ("cls", feats)
    return Layout(mods, sizes, {g: tuple(v) for g, v in groups.items()})


def _site_name(site: Site) -> str:
    return "stem" if site[0] == "stem" else f"s{site[1]}.b{site[2]}"


def normalize(arch: Arch) -> Arch:
    """The same network with explicit expanded sizes and only the skips it takes.

    Builds modules with identical parameters and the same function as
    ``arch``; afterwards changing one count never changes another count or
    the set of residual additions.
    """
    stages = []
    it = iter(arch.layers())
    for stage in arch.stages:
        new = []
        for _ in stage:
            layer = next(it)
            spec, cin = layer.spec, layer.in_chs
            if spec.type == "ir" and spec.mid_chs is None:
                spec = replace(spec, mid_chs=spec.mid(cin))
            if spec.skip and not spec.has_skip(cin):
                spec = replace(spec, skip=False)
            new.append(spec)
        stages.append(tuple(new))
    return replace(arch, stages=tuple(stages))


def units(arch: Arch, mode: str = "mobilenetv3") -> list[Unit]:
    """The prunable units of ``arch`` (normalised first) in network order."""
    if mode not in MODES:
        raise HwnasError(f"unknown mode {mode!r}: expected one of {', '.join(MODES)}")
    lay = layout(normalize(arch))
    out: list[Unit] = []
    for g, sites in lay.groups.items():
        tied = len(sites) > 1
        if not (mode == "filters" and tied):
            name = _site_name(sites[0]) + (f"..{_site_name(sites[-1])}" if tied else "") + ".out"
            out.append(Unit(name, g, sites))
        for site in sites:
            if site[0] == "out" and f"m{site[1]}.{site[2]}" in lay.sizes:
                out.append(Unit(f"s{site[1]}.b{site[2]}.mid", f"m{site[1]}.{site[2]}",
                                (("mid", site[1], site[2]),)))
    out.append(Unit("head", "head", (("head",),)))
    if mode == "filters" and arch.head.kind == "v3":
        out.append(Unit("head.features", "features", (("features",),)))
    return out


def count(arch: Arch, unit: Unit) -> int:
    """Current channel count of ``unit`` in ``arch``."""
    return _get(arch, unit.sites[0])


def _get(arch: Arch, site: Site) -> int:
    kind = site[0]
    if kind == "stem":
        return arch.stem.out_chs
    if kind == "head":
        return arch.head.chs
    if kind == "features":
        return arch.head.features
    spec = arch.stages[site[1]][site[2]]
    if kind == "out":
        return spec.out_chs
    if spec.mid_chs is None:
        raise HwnasError("normalize the arch first: expanded sizes must be explicit")
    return spec.mid_chs


def with_count(arch: Arch, unit: Unit, n: int) -> Arch:
    """``arch`` with every site of ``unit`` set to ``n`` channels (``arch`` normalised)."""
    if n < 1:
        raise HwnasError(f"channel count must be >= 1, got {n}")
    stem, head = arch.stem, arch.head
    stages = [list(s) for s in arch.stages]
    for site in unit.sites:
        kind = site[0]
        if kind == "stem":
            stem = replace(stem, out_chs=n)
        elif kind == "head":
            head = replace(head, chs=n)
        elif kind == "features":
            head = replace(head, features=n)
        elif kind == "out":
            stages[site[1]][site[2]] = replace(stages[site[1]][site[2]], out_chs=n)
        else:
            stages[site[1]][site[2]] = replace(stages[site[1]][site[2]], mid_chs=n)
    return replace(arch, stem=stem, stages=tuple(tuple(s) for s in stages), head=head)


def candidates(current: int, step: int = DEFAULT_CHANNEL_STEP, minimum: int | None = None) -> list[int]:
    """Smaller counts to try, largest first: multiples of ``step`` below ``current``.

    >>> candidates(40), candidates(20), candidates(8)
    ([32, 24, 16, 8], [16, 8], [])
    """
    lo = step if minimum is None else minimum
    top = (current - 1) // step * step
    return [n for n in range(top, lo - 1, -step) if n >= 1]


def smallest(arch: Arch, mode: str, step: int = DEFAULT_CHANNEL_STEP, minimum: int | None = None) -> Arch:
    """``arch`` (normalised) with every unit pruned as far as proposals can go."""
    arch = normalize(arch)
    for unit in units(arch, mode):
        cands = candidates(count(arch, unit), step, minimum)
        if cands:
            arch = with_count(arch, unit, cands[-1])
    return arch

"""Analytic parameter and multiply-add counts.

Convention of the MobileNet/MnasNet papers and timm: multiply-adds of conv
and linear layers (SE's two 1x1 convs included; BN, activations, pooling and
additions are not counted). Parameters are everything trainable: conv and FC
weights and biases, BN scale and shift. Both equal what ``build`` makes.
"""

from __future__ import annotations

from dataclasses import dataclass

from .spec import Arch, BlockSpec, HeadSpec, StemSpec, _out_res

BN_PARAMS_PER_CHANNEL = 2  # gamma and beta; running stats are buffers


@dataclass(frozen=True, slots=True)
class Cost:
    params: int
    madds: int

    def __add__(self, other: Cost) -> Cost:
        return Cost(self.params + other.params, self.madds + other.madds)


def _conv(cin: int, cout: int, k: int, out_res: int, groups: int = 1, bn: bool = True, bias: bool = False) -> Cost:
    w = k * k * (cin // groups) * cout
    p = w + (BN_PARAMS_PER_CHANNEL * cout if bn else 0) + (cout if bias else 0)
    return Cost(p, w * out_res * out_res)


def se_cost(chs: int, rd: int) -> Cost:
    """Squeeze-excitation on ``chs`` channels reduced to ``rd``: two 1x1 convs with bias."""
    if rd == 0:
        return Cost(0, 0)
    return Cost(chs * rd + rd + rd * chs + chs, 2 * chs * rd)


def stem_cost(stem: StemSpec, resolution: int, in_chs: int = 3) -> Cost:
    return _conv(in_chs, stem.out_chs, stem.kernel, _out_res(resolution, stem.stride))


def block_cost(spec: BlockSpec, in_chs: int, in_res: int) -> Cost:
    out_res = _out_res(in_res, spec.stride)
    if spec.type == "conv":
        return _conv(in_chs, spec.out_chs, spec.kernel, out_res)
    mid = spec.mid(in_chs)
    cost = Cost(0, 0)
    if spec.type == "ir":
        cost += _conv(in_chs, mid, 1, in_res)
    cost += _conv(mid, mid, spec.kernel, out_res, groups=mid)
    cost += se_cost(mid, spec.se_chs(in_chs))
    cost += _conv(mid, spec.out_chs, 1, out_res)
    return cost


def head_cost(head: HeadSpec, in_chs: int, in_res: int, num_classes: int) -> Cost:
    cost = _conv(in_chs, head.chs, 1, in_res)
    if head.kind == "v3":
        cost += _conv(head.chs, head.features, 1, 1, bn=False, bias=True)
    feats = head.out_features
    return cost + Cost(feats * num_classes + num_classes, feats * num_classes)


def breakdown(arch: Arch, resolution: int = 224, num_classes: int = 1000) -> list[dict]:
    """Per-part rows: name, input shape (C, H, W), output channels, params, MAdds."""
    rows = [dict(part="stem", block=f"conv{arch.stem.kernel}x{arch.stem.kernel}",
                 in_shape=(3, resolution, resolution), out_chs=arch.stem.out_chs,
                 **_asdict(stem_cost(arch.stem, resolution)))]
    for layer in arch.layers(resolution):
        from .notation import block_to_str

        rows.append(dict(part=f"s{layer.stage}.b{layer.index}", block=block_to_str(layer.spec),
                         in_shape=(layer.in_chs, layer.in_res, layer.in_res), out_chs=layer.spec.out_chs,
                         **_asdict(block_cost(layer.spec, layer.in_chs, layer.in_res))))
    chs, res = arch.final_shape(resolution)
    from .notation import head_to_str

    rows.append(dict(part="head", block=head_to_str(arch.head), in_shape=(chs, res, res), out_chs=num_classes,
                     **_asdict(head_cost(arch.head, chs, res, num_classes))))
    return rows


def _asdict(c: Cost) -> dict:
    return {"params": c.params, "madds": c.madds}


def total_cost(arch: Arch, resolution: int = 224, num_classes: int = 1000) -> Cost:
    cost = stem_cost(arch.stem, resolution)
    for layer in arch.layers(resolution):
        cost += block_cost(layer.spec, layer.in_chs, layer.in_res)
    chs, res = arch.final_shape(resolution)
    return cost + head_cost(arch.head, chs, res, num_classes)


def count_params(arch: Arch, num_classes: int = 1000) -> int:
    return total_cost(arch, 224, num_classes).params


def count_madds(arch: Arch, resolution: int = 224, num_classes: int = 1000) -> int:
    return total_cost(arch, resolution, num_classes).madds

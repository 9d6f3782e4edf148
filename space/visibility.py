"""Decisions a proxy resolution cannot see: kernels larger than the feature map they slide on.

A KxK conv with "same" padding ``K // 2`` on an ``r x r`` input (stride 1 or 2)
only ever multiplies real pixels with taps at offsets ``|d| <= r - 1``; the
taps further out always land on zero padding. So the conv computes exactly
what its centre ``min(K, 2r - 1)`` crop computes, and two kernel choices are
the same function whenever both reach beyond the map: at 2x2 a 5x5 or 7x7
kernel is a 3x3 one, at 3x3 a 7x7 kernel is a 5x5 one, at 1x1 every kernel
is a 1x1. Latency, measured at the deployment resolution, still charges the
larger kernel, so a search at that proxy resolution is told what the choice
costs but not what it buys.

>>> from hwnas.space import get_space
>>> invisible_decisions(get_space("mobilenetv3"), 32)
['b4_kernel (input 2x2): kernels 3, 5, 7 compute the same as 3', 'b5_kernel (input 2x2): kernels 3, 5, 7 compute the same as 3']
>>> invisible_decisions(get_space("mobilenetv3"), 64)
[]
"""

from __future__ import annotations

from hwnas.common.errors import HwnasError

from .searchspace import SearchSpace
from .spec import Arch, _out_res


def effective_kernel(kernel: int, resolution: int) -> int:
    """The smallest centre crop of a ``kernel`` x ``kernel`` conv that computes the same on ``resolution``.

    >>> effective_kernel(7, 2), effective_kernel(7, 3), effective_kernel(5, 8), effective_kernel(3, 1)
    (3, 5, 5, 1)
    """
    return min(kernel, 2 * resolution - 1)


def invisible_decisions(space_or_arch: SearchSpace | Arch, proxy_resolution: int) -> list[str]:
    """Where a kernel choice is invisible at ``proxy_resolution``; one line per place, ``[]`` if none.

    For a search space: each block whose kernel choices collapse (two choices
    compute the same function on the block's largest input, its first layer's).
    For an architecture: each layer whose kernel computes the same as a smaller one.

    Raises:
        HwnasError: ``proxy_resolution`` is not an int >= 1, or the first argument
            is neither a SearchSpace nor an Arch.
    """
    if isinstance(proxy_resolution, bool) or not isinstance(proxy_resolution, int) or proxy_resolution < 1:
        raise HwnasError(f"proxy resolution must be an int >= 1, got {proxy_resolution!r}")
    if isinstance(space_or_arch, Arch):
        return _arch(space_or_arch, proxy_resolution)
    if isinstance(space_or_arch, SearchSpace):
        return _space(space_or_arch, proxy_resolution)
    raise HwnasError(f"expected a SearchSpace or an Arch, got {type(space_or_arch).__name__}")


def _space(space: SearchSpace, resolution: int) -> list[str]:
    out = []
    res = _out_res(resolution, space.stem.stride)
    for b, sk in enumerate(space.skeleton.blocks):
        choices = next(d.choices for d in space.block_decisions(b) if d.name == f"b{b}_kernel")
        eff = {k: effective_kernel(k, res) for k in choices}
        if len(set(eff.values())) < len(choices):
            same = [k for k in choices if eff[k] != k or list(eff.values()).count(eff[k]) > 1]
            out.append(f"b{b}_kernel (input {res}x{res}): kernels {', '.join(map(str, same))} "
                       f"compute the same as {min(eff[k] for k in same)}")
        res = _out_res(res, sk.stride)
    return out


def _arch(arch: Arch, resolution: int) -> list[str]:
    out = []
    for layer in arch.layers(resolution):
        k, r = layer.spec.kernel, layer.in_res
        if effective_kernel(k, r) < k:
            out.append(f"stage {layer.stage} layer {layer.index} (k{k}, input {r}x{r}): "
                       f"computes the same as k{effective_kernel(k, r)}")
    return out


__all__ = ["effective_kernel", "invisible_decisions"]

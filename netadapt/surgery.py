"""Weight surgery: prune channel spaces of a trained network and inherit its weights.

NetAdapt (Yang et al., ECCV 2018, Section 3.2) keeps, in the layer being
simplified, the filters with the largest L2 norm and removes the rest; the
layers consuming that feature map lose the matching input channels. Here a
whole channel space (:mod:`hwnas.netadapt.prunable`) is pruned at once: its
importance per channel is the L2 norm of each producing conv's filter,
summed over the producers that write into the space (several when residual
additions tie layers together). Everything indexed by the space follows
with the same kept indices: BN statistics, depthwise filters, SE convs and
the consumers' input channels. SE reduce channels that shrink with their
space keep their own largest-norm filters.

The result is ``hwnas.space.build(new_arch)`` with the sliced weights loaded
strictly, so a shape that does not match what the builder makes is an error.
"""

from __future__ import annotations

import torch
from torch import nn

from hwnas.common.errors import HwnasError
from hwnas.space.build import build
from hwnas.space.spec import Arch

from .prunable import Layout, layout, normalize


def importance(model: nn.Module, lay: Layout, space: str) -> torch.Tensor:
    """Per-channel importance of ``space``: summed L2 norms of its producers' filters.

    Producers are the regular and 1x1 convs (and SE reduce, FC) writing into
    ``space``; depthwise convs, BN and SE expand (a gate over the space) only
    follow.
    """
    named = dict(model.named_modules())
    total: torch.Tensor | None = None
    for path, (out, inp) in lay.modules.items():
        if out != space or inp is None or path.endswith("se.conv_expand"):
            continue
        w = named[path].weight.detach()
        norms = w.reshape(w.shape[0], -1).float().norm(dim=1)
        total = norms if total is None else total + norms
    if total is None:
        raise HwnasError(f"channel space {space!r} has no producing layer")
    return total


def keep_indices(model: nn.Module, lay: Layout, space: str, n: int) -> torch.Tensor:
    """The ``n`` most important channels of ``space``, in their original order."""
    imp = importance(model, lay, space)
    if n >= imp.numel():
        return torch.arange(imp.numel())
    top = torch.topk(imp, n, largest=True, sorted=False).indices
    return torch.sort(top).values


def _slice(t: torch.Tensor, dim: int, idx: torch.Tensor | None) -> torch.Tensor:
    return t if idx is None else t.index_select(dim, idx)


def prune_state(
    state: dict[str, torch.Tensor], lay: Layout, keep: dict[str, torch.Tensor]
) -> dict[str, torch.Tensor]:
    """Slice every tensor of ``state`` along the spaces listed in ``keep``."""
    out: dict[str, torch.Tensor] = {}
    for key, t in state.items():
        path, _, name = key.rpartition(".")
        if path not in lay.modules or name == "num_batches_tracked":
            out[key] = t.clone()
            continue
        o, i = lay.modules[path]
        if t.dim() == 1:  # BN vectors and conv/FC biases: output dim
            out[key] = _slice(t, 0, keep.get(o)).clone()
            continue
        t = _slice(t, 0, keep.get(o))
        if i is not None:
            t = _slice(t, 1, keep.get(i))
        out[key] = t.clone()
    return out


def prune(model: nn.Module, arch: Arch, new_arch: Arch, num_classes: int) -> nn.Module:
    """A new module for ``new_arch`` carrying ``model``'s weights on the kept channels.

    ``arch`` is the (normalised) architecture ``model`` was built from;
    ``new_arch`` may have fewer channels in any space but the same structure.
    Spaces whose size is unchanged keep all channels, so ``prune(m, a, a)``
    returns an exact copy.

    Raises:
        ValueError: if ``new_arch`` is not ``arch`` with some spaces shrunk.
    """
    old, new = layout(normalize(arch), num_classes), layout(normalize(new_arch), num_classes)
    if old.modules != new.modules:
        raise HwnasError("pruning cannot change the structure: the two architectures build "
                         "different modules")
    keep: dict[str, torch.Tensor] = {}
    for space, n in new.sizes.items():
        if n > old.sizes[space]:
            raise HwnasError(f"channel space {space} grows from {old.sizes[space]} to {n}")
        if n < old.sizes[space]:
            keep[space] = keep_indices(model, old, space, n)
    state = prune_state(model.state_dict(), old, keep)
    net = build(new_arch, num_classes=num_classes)
    net.load_state_dict(state, strict=True)
    return net.train(model.training)

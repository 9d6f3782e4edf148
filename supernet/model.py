"""The weight-sharing supernet of a search space: one set of weights, every architecture a path.

Each block of the space's skeleton becomes a *slot stage*: one *slot* per
possible layer (the skeleton's layers plus the space's largest ``+1``), and in
each slot one weight bank per op type whose shapes differ (``conv``: a KxK
conv; ``ds``: depthwise + pointwise; ``ir``: expand, depthwise, project), each
at the largest size the space asks for (widest filters, expansion 6, a 7x7
kernel, SE). The stem and one head per head kind are banks too.

An architecture is run on the supernet by slicing every bank to the shape that
``hwnas.space.build(arch)`` gives the same parameter:

- channels (filters, expansion, SE, head widths): the *first* ``n`` channels
  (the channel slices of Once-for-All, Cai et al., ICLR 2020, Sec. 3.2, without
  its importance re-sorting);
- kernels: the *centre* ``k x k`` of the 7x7 bank (OFA's elastic kernel without
  its learned kernel-transformation matrices);
- depth: a stage uses its first ``n`` slots (OFA's elastic depth);
- activation, SE gate and skip have no weights and come from the spec.

The sliced tensors are fed to a weightless (``meta``) instance of the
builder's own module with :func:`torch.func.functional_call`, so the supernet
runs exactly the computation of ``build(arch)``, and :meth:`SuperNet.extract`
copies the same slices into a standalone ``build(arch)``-compatible module.

Architectures outside the space fit when every part fits its bank: an
architecture's stage ``i`` goes to the next slot stage whose cumulative output
stride equals its own (so MobileNetV3-Small's five stages use slot stages
1-5 of the ``mobilenetv3`` supernet), and no tensor may exceed its bank.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass

import torch
from torch import nn
from torch.func import functional_call

from hwnas.common.errors import HwnasError
from hwnas.space.build import (
    ConvBnAct,
    DepthwiseSeparable,
    Head,
    InvertedResidual,
    Net,
    SqueezeExcite,
    init_weights,
)
from hwnas.space.notation import stage_to_str
from hwnas.space.searchspace import (
    FILTER_CHOICES,
    KERNEL_CHOICES,
    LAYER_CHOICES,
    SE_CHOICES,
    SearchSpace,
)
from hwnas.space.skeletons import IR_EXPANSIONS
from hwnas.space.spec import CHANNEL_DIVISOR, Arch, BlockSpec, HeadSpec, make_divisible

# Bank sizes: the largest value of each choice of the space (searchspace.py, MnasNet Sec. 4.1).
MAX_WIDTH = max(FILTER_CHOICES)  # 1.25 x the skeleton's filters (also the stem and head here)
MAX_EXPANSION = max(IR_EXPANSIONS)  # 6
MAX_KERNEL = max(KERNEL_CHOICES)  # 7
EXTRA_LAYERS = max(LAYER_CHOICES)  # +1 layer per block
MAX_SE = max(SE_CHOICES)  # 0.25
OPS = ("conv", "ds", "ir")
_TEMPLATE_CACHE = 512  # weightless modules kept per supernet (one per recently seen arch)


@dataclass(frozen=True, slots=True)
class SlotStage:
    """One block of the skeleton as the supernet holds it."""

    stride: int
    cum_stride: int  # total stride of its output, stem included
    max_layers: int
    max_in: int  # widest input its first slot accepts (any earlier stage may feed it)
    max_out: int


def _widen(chs: int) -> int:
    return make_divisible(chs * MAX_WIDTH)


def _banks(cin: int, cout: int, mid: int, stride: int) -> nn.ModuleDict:
    """The op banks of one slot: largest kernel, SE wide enough for any SE of the space."""
    conv = ConvBnAct(cin, cout, MAX_KERNEL, stride, "relu")
    ds = DepthwiseSeparable(BlockSpec("ds", MAX_KERNEL, stride, cout, se_ratio=MAX_SE), cin)
    ir = InvertedResidual(BlockSpec("ir", MAX_KERNEL, stride, cout, mid_chs=mid, se_ratio=MAX_SE), cin)
    # SE reduced from the block input (MnasNet, ``round(mid * R / E)``) can exceed the
    # multiple of 8 that ``make_divisible(mid * R)`` gives: one divisor of headroom.
    ds.se = SqueezeExcite(cin, make_divisible(cin * MAX_SE) + CHANNEL_DIVISOR, "hsigmoid")
    ir.se = SqueezeExcite(mid, make_divisible(mid * MAX_SE) + CHANNEL_DIVISOR, "hsigmoid")
    return nn.ModuleDict({"conv": conv, "ds": ds, "ir": ir})



class SuperNet(nn.Module):
    """All weights of one search space; ``forward(x, arch)`` runs one path.

    >>> from hwnas.space import get_space
    >>> net = SuperNet(get_space("mobilenetv3"), num_classes=10)
    >>> arch = get_space("mobilenetv3").sample_random(0)
    >>> net(torch.zeros(2, 3, 32, 32), arch).shape
    torch.Size([2, 10])
    """

    def __init__(self, space: SearchSpace, num_classes: int, in_chs: int = 3) -> None:
        super().__init__()
        self.space = space
        self.num_classes = num_classes
        self.in_chs = in_chs
        stem = space.stem
        self.stem = ConvBnAct(in_chs, _widen(stem.out_chs), stem.kernel, stem.stride, stem.act)
        widest, cum = self.stem.conv.out_channels, stem.stride
        plan: list[SlotStage] = []
        stages = []
        for sk in space.skeleton.blocks:
            cum *= sk.stride
            st = SlotStage(sk.stride, cum, sk.layers + EXTRA_LAYERS, widest, _widen(sk.out_chs))
            slots = []
            for j in range(st.max_layers):
                cin = st.max_in if j == 0 else st.max_out
                mid = make_divisible(cin * MAX_EXPANSION)
                slots.append(_banks(cin, st.max_out, mid, st.stride if j == 0 else 1))
            stages.append(nn.ModuleList(slots))
            plan.append(st)
            widest = max(widest, st.max_out)
        self.slot_stages: tuple[SlotStage, ...] = tuple(plan)
        self.stages = nn.ModuleList(stages)
        self.heads = nn.ModuleDict({
            kind: Head(HeadSpec(kind, _widen(h.chs), h.features, h.act), widest, num_classes)
            for kind, h in space.skeleton.heads.items()})
        init_weights(self)
        self._templates: OrderedDict[tuple[Arch, bool], Net] = OrderedDict()

    # --- architecture -> path ------------------------------------------------
    def stage_map(self, arch: Arch) -> tuple[int, ...]:
        """The slot stage each stage of ``arch`` runs on (matching cumulative strides, in order).

        Raises:
            HwnasError: ``arch`` has a stage no slot stage can take, naming it.
        """
        cum, nxt, out = arch.stem.stride, 0, []
        for i, stage in enumerate(arch.stages):
            for b in stage:
                cum *= b.stride
            while nxt < len(self.slot_stages) and self.slot_stages[nxt].cum_stride != cum:
                nxt += 1
            if nxt == len(self.slot_stages):
                raise HwnasError(f"stage {i} '{stage_to_str(stage)}' (output stride {cum}) does not fit "
                                 f"the {self.space.name} supernet: its stages after the previous "
                                 f"one have output strides "
                                 f"{[s.cum_stride for s in self.slot_stages[len(out) and out[-1] + 1:]]}")
            if len(stage) > self.slot_stages[nxt].max_layers:
                raise HwnasError(f"stage {i} '{stage_to_str(stage)}' has {len(stage)} layers; the "
                                 f"{self.space.name} supernet holds at most "
                                 f"{self.slot_stages[nxt].max_layers} there")
            out.append(nxt)
            nxt += 1
        return tuple(out)

    def _template(self, arch: Arch) -> Net:
        """A weightless module of ``arch`` (cached): the builder's own forward, no storage."""
        key = (arch, self.training)
        net = self._templates.get(key)
        if net is None:
            with torch.device("meta"):
                net = Net(arch, num_classes=self.num_classes, in_chs=self.in_chs)
            net.train(self.training)
            self._templates[key] = net
            if len(self._templates) > _TEMPLATE_CACHE:
                self._templates.popitem(last=False)
        else:
            self._templates.move_to_end(key)
        return net

    def _bank_name(self, name: str, arch: Arch, stages: tuple[int, ...]) -> str:
        part, _, rest = name.partition(".")
        if part == "stem":
            return name
        if part == "head":
            return f"heads.{arch.head.kind}.{rest}"
        i, j, rest = rest.split(".", 2)
        spec = arch.stages[int(i)][int(j)]
        return f"stages.{stages[int(i)]}.{j}.{spec.type}.{rest}"

    def path_state(self, arch: Arch) -> dict[str, torch.Tensor]:
        """The state dict of ``build(arch)`` as views of this supernet's banks.

        Raises:
            HwnasError: a part of ``arch`` is larger than its bank (names it).
        """
        if not isinstance(arch, Arch):
            raise HwnasError(f"expected an Arch, got {type(arch).__name__}")
        if arch.stem.stride != self.space.stem.stride:
            raise HwnasError(f"stem stride {arch.stem.stride} does not fit the {self.space.name} "
                             f"supernet: it needs {self.space.stem.stride}")
        if arch.head.kind not in self.heads:
            raise HwnasError(f"a {arch.head.kind} head does not fit the {self.space.name} supernet: "
                             f"it has {', '.join(self.heads)}")
        stages = self.stage_map(arch)
        banks = dict(self.named_parameters())
        banks.update(self.named_buffers())
        template = self._template(arch)
        state = {}
        for name, t in template.state_dict(keep_vars=True).items():
            src = banks[self._bank_name(name, arch, stages)]
            state[name] = _slice(src, tuple(t.shape), name, self.space.name)
        return state

    def forward(self, x: torch.Tensor, arch: Arch) -> torch.Tensor:
        template = self._template(arch)
        return functional_call(template, self.path_state(arch), (x,), strict=True)

    @torch.no_grad()
    def extract(self, arch: Arch) -> Net:
        """A standalone ``hwnas.space.build(arch)`` module holding this path's weights (a copy).

        Its ``state_dict()`` loads into ``build(arch, num_classes=...)``; it is in eval mode.
        """
        state = {k: v.detach().clone() for k, v in self.path_state(arch).items()}
        with torch.device("meta"):
            net = Net(arch, num_classes=self.num_classes, in_chs=self.in_chs)
        net.load_state_dict(state, assign=True)
        return net.eval()

    def fits(self, arch: Arch) -> bool:
        """Whether ``arch`` is a path of this supernet."""
        try:
            self.path_state(arch)
        except HwnasError:
            return False
        return True


def _slice(src: torch.Tensor, shape: tuple[int, ...], name: str, space: str) -> torch.Tensor:
    """The leading ``shape`` channels of ``src``; spatial dims of a conv weight from the centre."""
    if tuple(src.shape) == shape:
        return src
    if src.dim() != len(shape) or any(n > m for n, m in zip(shape, src.shape, strict=True)):
        where = name.rsplit(".", 1)[0]
        raise HwnasError(f"{where} needs a {tuple(shape)} {name.rsplit('.', 1)[1]}; the {space} "
                         f"supernet holds at most {tuple(src.shape)} there")
    index = [slice(0, n) for n in shape]
    if src.dim() == 4:
        for d in (2, 3):
            off = (src.shape[d] - shape[d]) // 2
            index[d] = slice(off, off + shape[d])
    return src[tuple(index)]


def largest(space: SearchSpace, head: str | None = None) -> Arch:
    """The widest, deepest point of ``space`` (``ir6``, 7x7, SE, 1.25x filters, +1 layer)."""
    values = {}
    for b in range(space.num_blocks):
        for d in space.block_decisions(b):
            field = d.name.split("_", 1)[1]
            values[d.name] = {"op": "ir6", "kernel": MAX_KERNEL, "se": MAX_SE, "act": "hswish",
                              "skip": True, "filters": MAX_WIDTH,
                              "layers": max(d.choices)}[field]
    for d in space.head_decisions():
        values[d.name] = head if head is not None else d.choices[0]
    return space.decode(values)


__all__ = ["SuperNet", "SlotStage", "largest"]

"""MnasNet's factorized hierarchical search space over a fixed skeleton.

Tan et al. (MnasNet, CVPR 2019, Sec. 4.1) split a network into blocks; each
block repeats one layer, whose op, kernel, SE ratio, skip, filters and number
of layers are chosen per block, so all layers of a block share its choices.
Here a block's choices are:

====================  ==============================================  ==============
decision              choices                                         applies to
====================  ==============================================  ==============
``b{i}_op``           ``conv``, ``ds``, ``ir1``, ``ir3``, ``ir4``,    all
                      ``ir6`` (``irE``: inverted residual, expansion
                      ``E``)
``b{i}_kernel``       3, 5, 7                                         all
``b{i}_se``           0.0, 0.25                                       ``ds``, ``ir*``
``b{i}_act``          ``relu``, ``hswish``                            all
``b{i}_skip``         True (identity residual), False                 all
``b{i}_filters``      0.75, 1.0, 1.25 x the skeleton's filters        all
``b{i}_layers``       -1, 0, +1 layers (0, +1 for one-layer blocks)   all
``head``              ``v3``, ``v2`` (``mobilenetv3`` space only)
====================  ==============================================  ==============

Every decision is always asked (fixed order, fixed length, as TuNAS does);
one that does not apply (SE of a ``conv``) is ignored by :meth:`decode`. Only
the first layer of a block has the skeleton's stride; filters are rounded with
``make_divisible``. The skeletons are in ``skeletons.py``.

>>> space = get_space("mnasnet")
>>> arch = space.sample_random(np.random.default_rng(0))
>>> space.decode(space.encode(arch)) == arch
True
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import cache
from typing import Any

import numpy as np

from hwnas.common.errors import HwnasError

from .counts import block_cost, head_cost
from .notation import head_to_str, stage_to_str, stem_to_str
from .skeletons import IR_EXPANSIONS, SKELETONS, Skeleton, block_uniform, nearest_expansion
from .spec import Arch, BlockSpec, HeadSpec, StemSpec, _out_res, make_divisible

__all__ = [
    "BLOCK_FIELDS", "Decision", "SPACE_NAMES", "SearchSpace", "block_uniform", "get_space",
    "nearest_expansion",
]

SPACE_NAMES: tuple[str, ...] = tuple(SKELETONS)  # the registry: add a skeleton there

OPS = ("conv", "ds", *(f"ir{e}" for e in IR_EXPANSIONS))
KERNEL_CHOICES = (3, 5, 7)  # MnasNet Sec. 4.1: 3x3, 5x5 (7x7 as ProxylessNAS / FBNet)
SE_CHOICES = (0.0, 0.25)  # MnasNet Sec. 4.1: 0, 0.25
ACT_CHOICES = ("relu", "hswish")  # MobileNetV3 Sec. 5.2
SKIP_CHOICES = (True, False)  # MnasNet Sec. 4.1: identity residual or none
FILTER_CHOICES = (0.75, 1.0, 1.25)  # MnasNet Sec. 4.1: 0.75, 1.0, 1.25 of the skeleton's
LAYER_CHOICES = (-1, 0, 1)  # MnasNet Sec. 4.1: -1, 0, +1 layers of the skeleton's
BLOCK_FIELDS: tuple[tuple[str, tuple], ...] = (
    ("op", OPS), ("kernel", KERNEL_CHOICES), ("se", SE_CHOICES), ("act", ACT_CHOICES),
    ("skip", SKIP_CHOICES), ("filters", FILTER_CHOICES), ("layers", LAYER_CHOICES),
)
MADDS_RESOLUTION = 224  # smallest() minimises the MAdds at the papers' input size
MADDS_CLASSES = 1000


@dataclass(frozen=True, slots=True)
class Decision:
    """One categorical decision: a unique name and its Optuna-safe choices."""

    name: str
    choices: tuple

    def __post_init__(self) -> None:
        if not self.choices or len(set(map(_key, self.choices))) != len(self.choices):
            raise HwnasError(f"decision {self.name!r} needs distinct choices, got {self.choices!r}")
        for c in self.choices:
            if not isinstance(c, bool | int | float | str):
                raise HwnasError(f"choice {c!r} of {self.name!r} is not a bool, int, float or str")

    def index(self, value: Any) -> int:
        """Position of ``value`` among the choices (``True`` never matches ``1``)."""
        key = _key(value)
        for i, c in enumerate(self.choices):
            if _key(c) == key:
                return i
        accepted = ", ".join(map(repr, self.choices))
        raise HwnasError(f"decision {self.name!r} must be one of {accepted}, got {value!r}")


def _key(value: Any) -> tuple:
    """A comparison key that keeps bools, numbers and strings apart."""
    if isinstance(value, bool | np.bool_):
        return ("bool", bool(value))
    if isinstance(value, int | float | np.integer | np.floating) and math.isfinite(value):
        return ("num", float(value))
    if isinstance(value, str):
        return ("str", value)
    return ("other", id(value))


def _op_spec(op: str) -> tuple[str, float]:
    """(block type, expansion) of an op choice."""
    if op.startswith("ir"):
        return "ir", float(op[2:])
    return op, 1.0


class SearchSpace:
    """A factorized search space: one decision table over a :class:`Skeleton`.

    Attributes:
        name: the space's name (one of :data:`SPACE_NAMES`).
        skeleton: the fixed frame.
        decisions: all decisions in their fixed order (block by block, then ``head``).
        stem: the fixed stem.
        num_blocks: number of blocks (stages of every architecture).
    """

    def __init__(self, skeleton: Skeleton) -> None:
        self.name = skeleton.name
        self.skeleton = skeleton
        self.stem: StemSpec = skeleton.stem
        self.num_blocks = len(skeleton.blocks)
        decisions: list[Decision] = []
        self._blocks: list[tuple[Decision, ...]] = []
        for b, sk in enumerate(skeleton.blocks):
            own = tuple(
                Decision(f"b{b}_{field}", tuple(c for c in choices if sk.layers + c >= 1)
                         if field == "layers" else choices)
                for field, choices in BLOCK_FIELDS
            )
            self._blocks.append(own)
            decisions.extend(own)
        self._head: tuple[Decision, ...] = ()
        if len(skeleton.heads) > 1:
            self._head = (Decision("head", tuple(skeleton.heads)),)
        self.decisions: tuple[Decision, ...] = (*decisions, *self._head)
        self._by_name = {d.name: d for d in self.decisions}
        self._high = np.array([len(d.choices) for d in self.decisions], dtype=np.int64)

    def __repr__(self) -> str:
        return f"SearchSpace({self.name!r}, {len(self.decisions)} decisions, size {self.size():.3e})"

    # --- decisions and values --------------------------------------------
    def block_decisions(self, b: int) -> tuple[Decision, ...]:
        """The decisions of block ``b`` (op, kernel, se, act, skip, filters, layers)."""
        self._check_block(b)
        return self._blocks[b]

    def head_decisions(self) -> tuple[Decision, ...]:
        """The head's decisions; ``()`` when the head is fixed."""
        return self._head

    def _value(self, values: Mapping[str, Any], name: str) -> Any:
        if name not in values:
            choices = ", ".join(map(repr, self._by_name[name].choices))
            raise HwnasError(f"missing decision {name!r} (choices: {choices})")
        d = self._by_name[name]
        return d.choices[d.index(values[name])]

    def _check_block(self, b: int) -> None:
        if not (isinstance(b, int | np.integer) and 0 <= b < self.num_blocks):
            raise HwnasError(f"block must be in 0..{self.num_blocks - 1}, got {b!r}")

    # --- structure ---------------------------------------------------------
    def block_out_chs(self, b: int, values: Mapping[str, Any]) -> int:
        """Output channels of block ``b``: the skeleton's filters times ``b{b}_filters``."""
        self._check_block(b)
        return make_divisible(self.skeleton.blocks[b].out_chs * self._value(values, f"b{b}_filters"))

    def stage(self, b: int, values: Mapping[str, Any]) -> tuple[BlockSpec, ...]:
        """The layers of block ``b`` for the decision values in ``values`` (extra keys ignored)."""
        self._check_block(b)
        sk = self.skeleton.blocks[b]
        v = {d.name.split("_", 1)[1]: self._value(values, d.name) for d in self._blocks[b]}
        kind, exp = _op_spec(v["op"])
        se = 0.0 if kind == "conv" else v["se"]
        first = BlockSpec(
            kind, v["kernel"], sk.stride, self.block_out_chs(b, values), exp_ratio=exp,
            se_ratio=se, se_gate=self.skeleton.se_gate, se_from=self.skeleton.se_from,
            act=v["act"], skip=v["skip"],
        )
        rest = BlockSpec(
            kind, first.kernel, 1, first.out_chs, exp_ratio=exp, se_ratio=se,
            se_gate=first.se_gate, se_from=first.se_from, act=first.act, skip=first.skip,
        )
        return (first,) + (rest,) * (sk.layers + v["layers"] - 1)

    def head(self, values: Mapping[str, Any]) -> HeadSpec:
        """The head for ``values`` (the fixed head when there is no head decision)."""
        if not self._head:
            return next(iter(self.skeleton.heads.values()))
        return self.skeleton.heads[self._value(values, "head")]

    # --- params <-> Arch ---------------------------------------------------
    def decode(self, params: Mapping[str, Any]) -> Arch:
        """The architecture of a full params dict (decision name -> choice).

        Raises:
            ValueError: an unknown decision, a value outside a decision's
                choices or a missing decision, in one line naming it.
        """
        if not isinstance(params, Mapping):
            raise HwnasError(f"params must be a mapping of decision names to choices, got {params!r}")
        for key in params:
            if key not in self._by_name:
                raise HwnasError(
                    f"unknown decision {key!r} for search space {self.name!r}: known are "
                    f"b0..b{self.num_blocks - 1}_{{{','.join(f for f, _ in BLOCK_FIELDS)}}}"
                    + (", head" if self._head else ""))
        for d in self.decisions:
            self._value(params, d.name)
        stages = tuple(self.stage(b, params) for b in range(self.num_blocks))
        return Arch(stem=self.stem, stages=stages, head=self.head(params))

    def encode(self, arch: Arch) -> dict[str, Any]:
        """The params of ``arch``; ``decode(encode(arch)) == arch``.

        Where several values give the same network (filters that round alike,
        the SE of a ``conv``), the multiplier 1.0 and the spec's own SE value
        are used.

        Raises:
            ValueError: ``arch`` is not a point of this space (names the part).
        """
        if not isinstance(arch, Arch):
            raise HwnasError(f"expected an Arch, got {type(arch).__name__}")
        where = f"not a point of search space {self.name!r}"
        if arch.stem != self.stem:
            raise HwnasError(f"stem {stem_to_str(arch.stem)} is {where}: it needs {stem_to_str(self.stem)}")
        if len(arch.stages) != self.num_blocks:
            raise HwnasError(f"{len(arch.stages)} stages are {where}: it has {self.num_blocks} blocks")
        params: dict[str, Any] = {}
        for b, stage in enumerate(arch.stages):
            params.update(self._encode_stage(b, stage, where))
        heads = [k for k, h in self.skeleton.heads.items() if h == arch.head]
        if not heads:
            known = ", ".join(head_to_str(h) for h in self.skeleton.heads.values())
            raise HwnasError(f"head {head_to_str(arch.head)} is {where}: it accepts {known}")
        if self._head:
            params["head"] = heads[0]
        return params

    def _encode_stage(self, b: int, stage: tuple[BlockSpec, ...], where: str) -> dict[str, Any]:
        sk, first = self.skeleton.blocks[b], stage[0]
        text = stage_to_str(stage)
        op = first.type
        if op == "ir":
            if first.mid_chs is not None or first.exp_ratio not in IR_EXPANSIONS:
                raise HwnasError(f"block {b} '{text}' is {where}: ir expansions are {IR_EXPANSIONS}")
            op = f"ir{int(first.exp_ratio)}"
        fits = [f for f in FILTER_CHOICES if make_divisible(sk.out_chs * f) == first.out_chs]
        if not fits:
            accepted = ", ".join(str(make_divisible(sk.out_chs * f)) for f in FILTER_CHOICES)
            raise HwnasError(f"block {b} '{text}' is {where}: its channels are one of {accepted}")
        raw = {"op": op, "kernel": first.kernel, "se": first.se_ratio, "act": first.act,
               "skip": first.skip, "filters": 1.0 if 1.0 in fits else fits[0],
               "layers": len(stage) - sk.layers}
        params = {}
        for d in self._blocks[b]:
            try:
                params[d.name] = d.choices[d.index(raw[d.name.split("_", 1)[1]])]
            except ValueError as e:
                raise HwnasError(f"block {b} '{text}' is {where}: {e}") from None
        expected = self.stage(b, params)
        if expected != stage:
            raise HwnasError(f"block {b} '{text}' is {where}: the nearest point is "
                             f"'{stage_to_str(expected)}'")
        return params

    # --- indices -------------------------------------------------------------
    def to_indices(self, params: Mapping[str, Any]) -> np.ndarray:
        """One choice index per decision, in :attr:`decisions` order (int64)."""
        self.decode(params)  # validates keys and values
        return np.array([d.index(params[d.name]) for d in self.decisions], dtype=np.int64)

    def from_indices(self, idx: Sequence[int] | np.ndarray) -> dict[str, Any]:
        """The params dict of one row of choice indices."""
        row = np.asarray(idx)
        if row.shape != (len(self.decisions),) or not np.issubdtype(row.dtype, np.integer):
            raise HwnasError(f"indices must be {len(self.decisions)} ints, got shape {row.shape} "
                             f"of {row.dtype}")
        bad = np.flatnonzero((row < 0) | (row >= self._high))
        if bad.size:
            d = self.decisions[bad[0]]
            raise HwnasError(f"index {int(row[bad[0]])} of decision {d.name!r} must be in "
                             f"0..{len(d.choices) - 1}")
        return {d.name: d.choices[int(i)] for d, i in zip(self.decisions, row, strict=True)}

    def sample_indices(self, rng: np.random.Generator, n: int) -> np.ndarray:
        """``n`` uniform random rows of choice indices, shape ``(n, len(decisions))``."""
        if isinstance(n, bool) or not isinstance(n, int | np.integer) or n < 0:
            raise HwnasError(f"number of samples must be an int >= 0, got {n!r}")
        return _rng(rng).integers(0, self._high, size=(n, len(self.decisions)), dtype=np.int64)

    # --- sampling ------------------------------------------------------------
    def sample_params(self, rng: np.random.Generator) -> dict[str, Any]:
        """A uniform random params dict (deterministic for a seeded generator)."""
        return self.from_indices(self.sample_indices(rng, 1)[0])

    def sample_random(self, rng: np.random.Generator) -> Arch:
        """A uniform random architecture: ``decode(sample_params(rng))``."""
        return self.decode(self.sample_params(rng))

    def sample(self, trial: Any) -> Arch:
        """Ask an Optuna trial (define-by-run) for every decision, in order, and decode."""
        return self.decode({d.name: trial.suggest_categorical(d.name, d.choices)
                            for d in self.decisions})

    def size(self) -> int:
        """Number of distinct params dicts (the product of the choice counts)."""
        return math.prod(len(d.choices) for d in self.decisions)

    def smallest(self) -> Arch:
        """The architecture with the fewest MAdds at 224x224 (first choices on ties)."""
        return _smallest(self.name)


def _rng(rng: Any) -> np.random.Generator:
    return rng if isinstance(rng, np.random.Generator) else np.random.default_rng(rng)


@cache
def _smallest(name: str) -> Arch:
    """Min-MAdds point: a block's MAdds never fall as its input or output channels
    grow, so the fewest filters everywhere are optimal and each block's other
    choices can then be minimised on their own."""
    space = get_space(name)
    chs, res = space.stem.out_chs, _out_res(MADDS_RESOLUTION, space.stem.stride)
    params: dict[str, Any] = {}
    for b in range(space.num_blocks):
        own = space.block_decisions(b)
        filters = next(d for d in own if d.name == f"b{b}_filters")
        others = [d for d in own if d is not filters]
        fewest = min(filters.choices,
                     key=lambda m, b=b: make_divisible(space.skeleton.blocks[b].out_chs * m))
        best: tuple | None = None
        for combo in itertools.product(*(d.choices for d in others)):
            values = {d.name: c for d, c in zip(others, combo, strict=True)}
            values[filters.name] = fewest
            c, r, madds = chs, res, 0
            for spec in space.stage(b, values):
                madds += block_cost(spec, c, r).madds
                c, r = spec.out_chs, _out_res(r, spec.stride)
            if best is None or madds < best[0]:
                best = (madds, values, c, r)
        _, values, chs, res = best
        params.update(values)
    if space.head_decisions():
        d = space.head_decisions()[0]
        params[d.name] = min(d.choices, key=lambda k: head_cost(
            space.skeleton.heads[k], chs, res, MADDS_CLASSES).madds)
    return space.decode(params).with_name(f"{name}_smallest")


def get_space(name: str) -> SearchSpace:
    """The search space ``name`` (one of :data:`SPACE_NAMES`); one shared instance per name.

    >>> get_space("mnasnet").num_blocks
    7
    """
    if not isinstance(name, str) or name not in SPACE_NAMES:
        raise HwnasError(f"unknown search space {name!r}: known are {', '.join(SPACE_NAMES)}")
    return _space(name)


@cache
def _space(name: str) -> SearchSpace:
    return SearchSpace(SKELETONS[name])

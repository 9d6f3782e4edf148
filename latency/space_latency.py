"""Vectorised latency prediction over a search space.

A factorized space (``hwnas.space.searchspace``) is a chain: block ``b``'s
layers depend only on its own decisions and on its input channels, which are
the previous block's output channels (a few distinct values); resolutions are
fixed by the skeleton. So for each block the summed latency of its layers can
be tabulated once over (input-channel class, combination of its own
decisions), and a network's latency is

    stem + sum_b T_b[class_b, combo_b] + H[class_head, combo_head] + overhead

where ``combo_b`` is the mixed-radix number of block ``b``'s decision indices
and ``class_b`` is looked up from ``combo_{b-1}``. Predicting ``n`` networks
given as an ``(n, d)`` index matrix is then two gathers per block.

>>> from hwnas.latency.pixel import load_pixel_target
>>> from hwnas.space.searchspace import get_space
>>> space = get_space("mobilenetv3")
>>> fast = SpaceLatency(load_pixel_target(), space)
>>> idx = space.sample_indices(np.random.default_rng(0), 1000)
>>> fast.predict_indices(idx).shape
(1000,)
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import numpy as np

from hwnas.common.errors import HwnasError
from hwnas.space.spec import Arch

from .keys import LayerKey, block_key, head_key, stem_key

_STRUCTURE_CACHE = 8  # spaces x resolutions kept enumerated


def resolve_space(space: Any) -> Any:
    """A ``SearchSpace`` from itself or its name."""
    if isinstance(space, str):
        from hwnas.space.searchspace import get_space

        return get_space(space)
    return space


@dataclass(frozen=True)
class _Group:
    """One link of the chain: a block (or the head) and what it tabulates.

    ``key_ids[c, j]`` are the key ids of the layers for input class ``c`` and
    combination ``j`` (padded with the id of a zero entry); ``out_class[j]``
    is the next group's input class of combination ``j``.
    """

    cols: np.ndarray  # positions of this group's decisions in space.decisions
    radix: tuple[int, ...]  # choice counts, most significant first
    in_chs: tuple[int, ...]  # input channel classes
    key_ids: np.ndarray  # (len(in_chs), n_combo, max_layers) int64
    out_class: np.ndarray  # (n_combo,) int64; zeros for the head

    @property
    def n_combo(self) -> int:
        return int(np.prod(self.radix)) if self.radix else 1


class SpaceStructure:
    """Every layer key of a space at one resolution, arranged as the chain above.

    Attributes:
        keys: the distinct layer keys of all networks of the space.
        stem_id: id of the stem's key.
        groups: one per block, then the head.
    """

    def __init__(self, space: Any, resolution: int = 224, num_classes: int = 1000) -> None:
        self.space, self.resolution, self.num_classes = space, resolution, num_classes
        self._ids: dict[LayerKey, int] = {}
        stem = stem_key(space.stem, resolution)
        self.stem_id = self._id(stem)
        self.groups: list[_Group] = []
        position = {d.name: i for i, d in enumerate(space.decisions)}
        in_chs, res = (space.stem.out_chs,), stem.out_res
        owned = 0
        for b in range(space.num_blocks):
            own = space.block_decisions(b)
            group, in_chs, res = self._block(b, own, position, in_chs, res)
            self.groups.append(group)
            owned += len(own)
        self.groups.append(self._head(space.head_decisions(), position, in_chs, res))
        owned += len(space.head_decisions())
        if owned != len(space.decisions):
            raise HwnasError(
                f"search space {space.name!r}: {len(space.decisions)} decisions, but blocks and "
                f"head own {owned}; the fast path needs every decision in exactly one of them"
            )
        self.keys: list[LayerKey] = list(self._ids)
        self.pad_id = len(self.keys)  # id of an extra zero entry
        for g in self.groups:
            g.key_ids[g.key_ids < 0] = self.pad_id
        # Mixed-radix place values per decision column: combo_g = idx @ places[:, g].
        self.places = np.zeros((len(space.decisions), len(self.groups)), dtype=np.int64)
        for gi, g in enumerate(self.groups):
            for col, p in zip(g.cols, _place_values(g.radix), strict=True):
                self.places[col, gi] = p
        self.high = np.array([len(d.choices) for d in space.decisions], dtype=np.int64)

    def _id(self, key: LayerKey) -> int:
        return self._ids.setdefault(key, len(self._ids))

    def _block(
        self,
        b: int,
        own: Sequence[Any],
        position: dict[str, int],
        in_chs: tuple[int, ...],
        res: int,
    ) -> tuple[_Group, tuple[int, ...], int]:
        space = self.space
        combos = list(itertools.product(*(d.choices for d in own)))
        names = [d.name for d in own]
        stages, outs, out_res = [], [], set()
        for combo in combos:
            values = dict(zip(names, combo, strict=True))
            specs = space.stage(b, values)
            stages.append(specs)
            outs.append(space.block_out_chs(b, values))
            r = res
            for s in specs:
                r = (r + s.stride - 1) // s.stride
            out_res.add(r)
        if len(out_res) != 1:
            raise HwnasError(f"search space {space.name!r}: block {b}'s output resolution varies")
        depth = max(len(s) for s in stages)
        ids = np.full((len(in_chs), len(combos), depth), -1, dtype=np.int64)
        for c, chs in enumerate(in_chs):
            for j, specs in enumerate(stages):
                cin, r = chs, res
                for li, spec in enumerate(specs):
                    ids[c, j, li] = self._id(block_key(spec, cin, r))
                    cin, r = spec.out_chs, (r + spec.stride - 1) // spec.stride
        nxt = tuple(sorted(set(outs)))
        out_class = np.array([nxt.index(o) for o in outs], dtype=np.int64)
        cols = np.array([position[n] for n in names], dtype=np.int64)
        radix = tuple(len(d.choices) for d in own)
        return _Group(cols, radix, in_chs, ids, out_class), nxt, out_res.pop()

    def _head(
        self, own: Sequence[Any], position: dict[str, int], in_chs: tuple[int, ...], res: int
    ) -> _Group:
        combos = list(itertools.product(*(d.choices for d in own)))
        names = [d.name for d in own]
        ids = np.empty((len(in_chs), len(combos), 1), dtype=np.int64)
        for j, combo in enumerate(combos):
            head = self.space.head(dict(zip(names, combo, strict=True)))
            for c, chs in enumerate(in_chs):
                ids[c, j, 0] = self._id(head_key(head, chs, res, self.num_classes))
        cols = np.array([position[n] for n in names], dtype=np.int64)
        radix = tuple(len(d.choices) for d in own)
        return _Group(cols, radix, in_chs, ids, np.zeros(len(combos), dtype=np.int64))

    def combos(self, idx: np.ndarray) -> np.ndarray:
        """``(n, groups)`` combination numbers of an ``(n, d)`` index matrix (checked)."""
        idx = np.asarray(idx)
        d = len(self.high)
        if idx.ndim != 2 or idx.shape[1] != d or not np.issubdtype(idx.dtype, np.integer):
            raise HwnasError(
                f"indices must be an (n, {d}) integer matrix for search space "
                f"{self.space.name!r}, got shape {idx.shape} of {idx.dtype}"
            )
        if idx.size and (idx.min() < 0 or (idx.max(axis=0) >= self.high).any()):
            row, col = np.argwhere((idx < 0) | (idx >= self.high))[0]
            raise HwnasError(
                f"index {int(idx[row, col])} of decision {self.space.decisions[col].name!r} "
                f"(row {int(row)}) must be in 0..{int(self.high[col]) - 1}"
            )
        return idx.astype(np.int64, copy=False) @ self.places


@lru_cache(maxsize=_STRUCTURE_CACHE)
def space_structure(space: Any, resolution: int = 224, num_classes: int = 1000) -> SpaceStructure:
    """The (cached) :class:`SpaceStructure` of a space."""
    return SpaceStructure(resolve_space(space), resolution, num_classes)


def space_keys(space: Any, resolution: int = 224, num_classes: int = 1000) -> list[LayerKey]:
    """Every distinct layer key of the networks of ``space`` (what ``build`` measures)."""
    return list(space_structure(resolve_space(space), resolution, num_classes).keys)


def _place_values(radix: Sequence[int]) -> list[int]:
    """Mixed-radix place values, most significant first: (3, 2) -> [2, 1]."""
    places, p = [], 1
    for r in reversed(radix):
        places.append(p)
        p *= r
    return places[::-1]


@dataclass(frozen=True)
class Fastest:
    """The minimum-latency network of a space: its latency, indices, params and Arch."""

    ms: float
    indices: np.ndarray
    params: dict
    arch: Arch


class SpaceLatency:
    """Latency of every network of a space on one target, as tables per block.

    Building it looks up every key of the space on the target (a measured
    target measures the keys its table lacks: build the table first).

    Args:
        target: a :class:`~hwnas.latency.target.Target`.
        space: a ``SearchSpace`` or its name.
        resolution: input size.
        num_classes: classifier outputs.
    """

    def __init__(
        self, target: Any, space: Any, resolution: int = 224, num_classes: int = 1000
    ) -> None:
        self.space = resolve_space(space)
        self.structure = st = space_structure(self.space, resolution, num_classes)
        ms = np.array([m for m, _ in target.layer_ms(st.keys)] + [0.0], dtype=float)
        self.overhead_ms = float(target.overhead_ms)
        self.stem_ms = float(ms[st.stem_id])
        # tables[g][c, j]: summed layer ms of group g's combination j on input class c
        self.tables = [ms[g.key_ids].sum(axis=-1) for g in st.groups]
        self._flat = [t.ravel() for t in self.tables]

    def predict_indices(self, idx: np.ndarray) -> np.ndarray:
        """Predicted latency (ms) of each row of an ``(n, d)`` decision-index matrix."""
        st = self.structure
        combos = st.combos(idx)
        out = np.full(combos.shape[0], self.stem_ms + self.overhead_ms)
        cls = np.zeros(combos.shape[0], dtype=np.int64)
        for gi, g in enumerate(st.groups):
            j = combos[:, gi]
            out += self._flat[gi][cls * g.n_combo + j]
            cls = g.out_class[j]
        return out

    def predict_params(self, params: Any) -> float:
        """Predicted latency (ms) of one params dict."""
        return float(self.predict_indices(self.space.to_indices(params)[None, :])[0])

    def fastest(self) -> Fastest:
        """The minimum-latency network, by dynamic programming over the chain.

        ``best[c]`` is the least latency of the stem and the blocks so far
        that ends on output class ``c``; each block relaxes it through its
        table, the head closes it.
        """
        st = self.structure
        best = np.array([self.stem_ms])
        choices: list[np.ndarray] = []  # per group: (next class) -> (in class, combo)
        for gi, g in enumerate(st.groups):
            total = best[:, None] + self.tables[gi]  # (in class, combo)
            n_next = int(g.out_class.max()) + 1
            nbest = np.full(n_next, np.inf)
            arg = np.zeros((n_next, 2), dtype=np.int64)
            for c in range(total.shape[0]):
                for k in range(n_next):
                    sel = np.flatnonzero(g.out_class == k)
                    j = sel[np.argmin(total[c, sel])]
                    if total[c, j] < nbest[k]:
                        nbest[k], arg[k] = total[c, j], (c, j)
            best = nbest
            choices.append(arg)
        idx = np.zeros(len(st.high), dtype=np.int64)
        k = 0  # the head has one output class
        for gi in range(len(st.groups) - 1, -1, -1):
            c, j = choices[gi][k]
            g = st.groups[gi]
            idx[g.cols] = np.unravel_index(j, g.radix) if g.radix else []
            k = c
        params = self.space.from_indices(idx)
        return Fastest(float(best[0] + self.overhead_ms), idx, params, self.space.decode(params))

"""An explainable linear cost model of one layer on a phone CPU.

A layer (a :class:`~hwnas.latency.keys.LayerKey`) is described by a few
physical counts, each in millions:

- ``pw``: multiply-adds of 1x1 convs and fully connected layers (GEMM work),
- ``dw``: multiply-adds of depthwise convs,
- ``conv``: multiply-adds of full KxK convs (the stem, ``conv`` blocks),
- ``el``: activation elements written by convs and residual adds,
- ``hs``: elements passed through an activation the runtime cannot fuse
  into the conv (hard-swish; swish counts :data:`SWISH_PASSES` times),
- ``se_el``: elements an SE module pools and rescales, ``se``: SE modules,
- ``wt``: weights of convs that slide over an image (1x1 and full KxK convs;
  not depthwise, not FC layers or SE's convs on pooled vectors): a cost that
  does not shrink with the input size.

ReLU and ReLU6 are fused into the preceding conv by TFLite, so they cost
nothing of their own. Latency is

    ms = c_pw * pw + c_dw * dw + c_conv * conv + c_wt * wt
         + c_el * (el + k_hs * hs + k_se * se_el + k_se0 * se)

with non-negative coefficients: work costs time in proportion to the
multiply-adds of each kind of kernel, and moving activations costs time in
proportion to the elements moved. The ``k_*`` factors price hard-swish and
SE in units of "activation elements written" (their ratio to ``c_el`` is
what carries over from one runtime to another; see docs/latency.md).

>>> from hwnas.latency.keys import LayerKey
>>> key = LayerKey("block", "ir", 24, 56, 24, 3, 1, mid_chs=72, act="relu6", skip=True)
>>> f = layer_features(key)
>>> round(f.pw, 3), round(f.dw, 3), round(f.el, 3)
(10.838, 2.032, 0.602)
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import astuple, dataclass, fields

import numpy as np
from scipy.optimize import nnls

from hwnas.common.errors import HwnasError

from .keys import LayerKey

MEGA = 1e6
# TFLite fuses ReLU/ReLU6 into the conv it follows (fused_activation_function);
# hard-swish is an op of its own (HARD_SWISH) and swish lowers to LOGISTIC + MUL,
# i.e. two elementwise passes where hard-swish is one (TFLite builtin op list).
UNFUSED_ACT_PASSES = {"relu": 0.0, "relu6": 0.0, "hswish": 1.0, "swish": 2.0}
SWISH_PASSES = UNFUSED_ACT_PASSES["swish"]


@dataclass(frozen=True, slots=True)
class LayerFeatures:
    """Physical counts of one layer (millions, except ``se``, a count)."""

    pw: float = 0.0
    dw: float = 0.0
    conv: float = 0.0
    el: float = 0.0
    hs: float = 0.0
    se_el: float = 0.0
    se: float = 0.0
    wt: float = 0.0

    def __add__(self, other: LayerFeatures) -> LayerFeatures:
        return LayerFeatures(*(a + b for a, b in zip(astuple(self), astuple(other), strict=True)))

    @property
    def madds(self) -> float:
        """All multiply-adds (millions), as ``hwnas.space.counts`` counts them."""
        return self.pw + self.dw + self.conv


FEATURE_NAMES: tuple[str, ...] = tuple(f.name for f in fields(LayerFeatures))


class _Acc:
    """Accumulates counts (in units) while a layer is walked op by op."""

    def __init__(self, act: str) -> None:
        self.v = dict.fromkeys(FEATURE_NAMES, 0.0)
        self.passes = UNFUSED_ACT_PASSES[act]

    def out(self, elems: float, activated: bool = True) -> None:
        """A conv/add writes ``elems`` elements; its activation may need a pass."""
        self.v["el"] += elems
        if activated:
            self.v["hs"] += self.passes * elems

    def done(self) -> LayerFeatures:
        v = {k: (x if k == "se" else x / MEGA) for k, x in self.v.items()}
        return LayerFeatures(**v)


def layer_features(key: LayerKey) -> LayerFeatures:
    """Counts of the computation ``key`` names (see module docstring)."""
    acc = _Acc(key.act)
    v = acc.v
    h2, o2 = key.res * key.res, key.out_res * key.out_res
    if key.part == "stem" or (key.part == "block" and key.op == "conv"):
        v["conv"] += key.kernel**2 * key.in_chs * key.out_chs * o2
        v["wt"] += key.kernel**2 * key.in_chs * key.out_chs
        acc.out(key.out_chs * o2)
    elif key.part == "block":
        mid = key.mid_chs
        if key.op == "ir":  # 1x1 expand + act
            v["pw"] += key.in_chs * mid * h2
            v["wt"] += key.in_chs * mid
            acc.out(mid * h2)
        v["dw"] += key.kernel**2 * mid * o2  # depthwise + act
        acc.out(mid * o2)
        if key.se_chs:  # pool, two 1x1 convs on the pooled vector, gate, rescale
            v["pw"] += 2 * mid * key.se_chs
            v["se_el"] += mid * o2
            v["se"] += 1
        v["pw"] += mid * key.out_chs * o2  # 1x1 linear projection
        v["wt"] += mid * key.out_chs
        acc.out(key.out_chs * o2, activated=False)
        if key.skip:  # identity residual add
            acc.out(key.out_chs * o2, activated=False)
    elif key.part == "head":
        v["pw"] += key.in_chs * key.out_chs * h2  # 1x1 conv + act, then global pool
        v["wt"] += key.in_chs * key.out_chs
        acc.out(key.out_chs * h2)
        last = key.out_chs
        if key.op == "v3":  # hidden 1x1 conv on the pooled vector + act
            v["pw"] += key.out_chs * key.features
            acc.out(key.features)
            last = key.features
        v["pw"] += last * key.num_classes  # classifier
    else:
        raise HwnasError(f"layer part must be stem, block or head, got {key.part!r}")
    return acc.done()


@dataclass(frozen=True, slots=True)
class CostModel:
    """Coefficients of the linear model (ms per million, ``k_*`` unitless).

    ``c_el`` is per million activation elements; ``k_se0`` is in millions
    of elements per SE module; ``c_wt`` is per million conv weights (0 in
    models fitted before the term existed).
    """

    c_pw: float
    c_dw: float
    c_conv: float
    c_el: float
    k_hs: float
    k_se: float
    k_se0: float
    c_wt: float = 0.0

    def terms(self, f: LayerFeatures) -> dict[str, float]:
        """Milliseconds by term: compute kinds and activation traffic."""
        return {
            "pw": self.c_pw * f.pw,
            "dw": self.c_dw * f.dw,
            "conv": self.c_conv * f.conv,
            "weights": self.c_wt * f.wt,
            "el": self.c_el * f.el,
            "hswish": self.c_el * self.k_hs * f.hs,
            "se": self.c_el * (self.k_se * f.se_el + self.k_se0 * f.se),
        }

    def ms(self, f: LayerFeatures) -> float:
        return float(sum(self.terms(f).values()))

    def predict(self, keys: Sequence[LayerKey]) -> np.ndarray:
        """Milliseconds of each key."""
        return np.array([self.ms(layer_features(k)) for k in keys], dtype=float)


def effective_el(f: LayerFeatures, k_hs: float, k_se: float, k_se0: float) -> float:
    """Activation traffic with hard-swish and SE expressed as elements written."""
    return f.el + k_hs * f.hs + k_se * f.se_el + k_se0 * f.se


def nnls_relative(x: np.ndarray, y: np.ndarray, weights: np.ndarray | None = None) -> np.ndarray:
    """Non-negative least squares on relative errors: min sum w (x c / y - 1)^2, c >= 0.

    Relative errors weigh a 0.3 ms layer like a 20 ms one, so the small
    layers that make up most of a network are fitted as well as the big ones.
    """
    w = np.ones(len(y)) if weights is None else np.asarray(weights, dtype=float)
    a = x / y[:, None] * w[:, None]
    coef, _ = nnls(a, w, maxiter=50 * x.shape[1])
    return coef

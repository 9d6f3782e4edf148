"""Cost-model features and monotonicity: counts agree with hwnas.space.counts."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from hwnas.latency.costmodel import CostModel, LayerFeatures, layer_features, nnls_relative
from hwnas.latency.keys import LayerKey, layer_keys
from hwnas.space.references import REFERENCE_NAMES, reference

# A model with every term switched on (values of the order of the Pixel-1 fit).
MODEL = CostModel(c_pw=0.14, c_dw=0.34, c_conv=0.15, c_el=2.6, k_hs=0.8, k_se=0.75, k_se0=0.01)


@pytest.mark.parametrize("name", REFERENCE_NAMES)
@pytest.mark.parametrize("width", [0.5, 1.0])
def test_madds_equal_the_analytic_count(name: str, width: float) -> None:
    arch = reference(name, width)
    total = sum((layer_features(k) for k in layer_keys(arch)), LayerFeatures())
    assert round(total.madds * 1e6) == arch.madds()


def test_hand_counted_block() -> None:
    # 24->72 expand at 56x56, 5x5 dw stride 2 to 28x28, SE to 24, project to 40, hard-swish
    k = LayerKey("block", "ir", 24, 56, 40, 5, 2, mid_chs=72, se_chs=24, act="hswish")
    f = layer_features(k)
    assert f.pw * 1e6 == pytest.approx(24 * 72 * 56**2 + 2 * 72 * 24 + 72 * 40 * 28**2)
    assert f.dw * 1e6 == pytest.approx(25 * 72 * 28**2)
    assert f.el * 1e6 == pytest.approx(72 * 56**2 + 72 * 28**2 + 40 * 28**2)
    assert f.hs * 1e6 == pytest.approx(72 * 56**2 + 72 * 28**2)  # not after the linear projection
    assert (f.se_el * 1e6, f.se) == (pytest.approx(72 * 28**2), 1)


def test_relu_is_free_and_swish_costs_more_than_hswish() -> None:
    base = dict(
        part="block", op="ir", in_chs=40, res=28, out_chs=40, kernel=3, mid_chs=120, skip=True
    )
    ms = {
        a: MODEL.ms(layer_features(LayerKey(**base, act=a)))
        for a in ("relu", "relu6", "hswish", "swish")
    }
    assert ms["relu"] == ms["relu6"] < ms["hswish"] < ms["swish"]


@pytest.mark.parametrize(
    "res,cin,cout,stride", [(112, 16, 24, 2), (56, 24, 24, 1), (14, 80, 96, 1), (7, 192, 320, 1)]
)
def test_bigger_kernel_or_expansion_is_never_faster(
    res: int, cin: int, cout: int, stride: int
) -> None:
    for act, se in itertools.product(("relu", "hswish"), (False, True)):
        grid = {}
        for k, e in itertools.product((3, 5, 7), (1, 3, 4, 6)):
            mid = cin * e
            key = LayerKey(
                "block",
                "ir",
                cin,
                res,
                cout,
                k,
                stride,
                mid_chs=mid,
                se_chs=mid // 4 if se else 0,
                act=act,
                skip=stride == 1 and cin == cout,
            )
            grid[k, e] = MODEL.ms(layer_features(key))
        for (k, e), v in grid.items():
            assert all(v <= grid[k2, e2] for k2, e2 in grid if k2 >= k and e2 >= e), (k, e, act, se)


def test_se_and_skip_add_cost() -> None:
    base = LayerKey("block", "ir", 40, 28, 40, 3, 1, mid_chs=120, act="relu")
    with_se = LayerKey("block", "ir", 40, 28, 40, 3, 1, mid_chs=120, se_chs=32, act="relu")
    with_skip = LayerKey("block", "ir", 40, 28, 40, 3, 1, mid_chs=120, act="relu", skip=True)
    ms = MODEL.predict([base, with_se, with_skip])
    assert ms[0] < ms[1] and ms[0] < ms[2]


def test_nnls_relative_recovers_known_coefficients() -> None:
    rng = np.random.default_rng(0)
    x = rng.uniform(0.1, 5.0, size=(60, 3))
    true = np.array([0.2, 0.0, 1.5])
    c = nnls_relative(x, x @ true)
    np.testing.assert_allclose(c, true, atol=1e-9)


def test_unknown_part_is_named() -> None:
    with pytest.raises(ValueError, match="'body'"):
        layer_features(LayerKey("body", "conv", 3, 8, 8))

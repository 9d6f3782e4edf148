"""Zero-cost prefilter: finite, deterministic scores that tell networks apart."""

from __future__ import annotations

import math

import pytest
import torch

from hwnas.proxy.data import Dataset
from hwnas.search.prefilter import PREFILTER_METHODS, naswot, synflow, zero_cost_score
from hwnas.space import Arch, reference

SMALL = Arch.from_str("stem_k3_s2_c8_nre:ir_r1_k3_s2_e3_c16_nre:"
                      "ir_r1_k3_s2_e3_c24_se0.25_nhs:head_v2_c64_nre")
WIDE = Arch.from_str("stem_k3_s2_c16_nre:ir_r2_k5_s2_e6_c32_nre:"
                     "ir_r2_k3_s2_e6_c48_se0.25_nhs:head_v2_c128_nre")


@pytest.fixture(scope="module")
def data() -> Dataset:
    g = torch.Generator().manual_seed(0)
    x = torch.randn(160, 3, 32, 32, generator=g)
    y = torch.randint(0, 10, (160,), generator=g)
    return Dataset("noise", "synthetic", 10, 32, x[:128], y[:128], x[128:], y[128:])


@pytest.mark.parametrize("method", PREFILTER_METHODS)
def test_scores_finite_deterministic_and_distinct(data: Dataset, method: str) -> None:
    scores = {name: zero_cost_score(a, data, method) for name, a in
              (("small", SMALL), ("wide", WIDE), ("v3l", reference("mobilenetv3_large")))}
    assert all(math.isfinite(s) for s in scores.values()), scores
    assert len({round(s, 6) for s in scores.values()}) == 3, scores
    assert zero_cost_score(SMALL, data, method) == scores["small"]


def test_synflow_grows_with_width_and_depth(data: Dataset) -> None:
    # more parameters on every path -> more synaptic flow (all terms are positive)
    assert zero_cost_score(WIDE, data, "synflow") > zero_cost_score(SMALL, data, "synflow")


def test_synflow_is_log_of_flow_for_a_linear_net() -> None:
    # f(x) = W2 W1 x, R = 1^T W2 W1 1; sum |theta * dR/dtheta| = 2 R for a two-layer linear net
    net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(4, 3, bias=False),
                              torch.nn.Linear(3, 2, bias=False))
    with torch.no_grad():
        net[1].weight.copy_(torch.arange(12.0).view(3, 4) - 5)
        net[2].weight.copy_(torch.ones(2, 3))
        r = float(net[2].weight.abs().sum(0) @ net[1].weight.abs().sum(1))
    assert synflow(net, resolution=2, in_chs=1) == pytest.approx(math.log(2 * r))


def test_naswot_counts_agreements() -> None:
    # one ReLU over 3 units; codes 110, 110, 001 -> K = [[3,3,0],[3,3,0],[0,0,3]] (+ I)
    net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.ReLU())
    x = torch.tensor([[1.0, 2, -1], [3, 1, -2], [-1, -1, 4]]).view(3, 3, 1, 1)
    want = torch.linalg.slogdet(torch.tensor([[4.0, 3, 0], [3, 4, 0], [0, 0, 4]]))[1]
    assert naswot(net, x) == pytest.approx(float(want))


def test_naswot_duplicate_images_stay_finite(data: Dataset) -> None:
    same = Dataset("dup", "synthetic", 10, 32, data.train_x[:1].expand(16, -1, -1, -1),
                   data.train_y[:16], data.val_x, data.val_y)
    assert math.isfinite(zero_cost_score(SMALL, same, "naswot"))


def test_unknown_method(data: Dataset) -> None:
    with pytest.raises(ValueError, match="unknown prefilter method 'snip': known are synflow, naswot"):
        zero_cost_score(SMALL, data, "snip")


def test_threads_restored(data: Dataset) -> None:
    before = torch.get_num_threads()
    zero_cost_score(SMALL, data, "synflow")
    assert torch.get_num_threads() == before


@pytest.mark.parametrize("method", PREFILTER_METHODS)
def test_score_depends_on_its_seed_not_on_the_callers_random_state(data: Dataset,
                                                                   method: str) -> None:
    torch.manual_seed(1)
    a = zero_cost_score(SMALL, data, method, seed=5)
    torch.manual_seed(2)
    torch.randn(100)
    assert zero_cost_score(SMALL, data, method, seed=5) == a
    assert zero_cost_score(SMALL, data, method, seed=6) != a


def test_prefilter_choices_come_from_the_registry() -> None:
    from hwnas.search.cli import build_parser
    from hwnas.search.config import PREFILTERS
    from hwnas.search.prefilter import PREFILTER_REGISTRY

    action = next(a for a in build_parser()._actions if "--prefilter" in a.option_strings)
    assert tuple(action.choices) == PREFILTERS == ("none", *PREFILTER_REGISTRY)

"""Prunable units: channel spaces, residual ties, counts."""

from __future__ import annotations

import pytest
import torch
from netadapt_helpers import randomize_bn

from hwnas.netadapt.prunable import (
    candidates,
    count,
    layout,
    normalize,
    smallest,
    units,
    with_count,
)
from hwnas.space import Arch, build, reference

TIED = "stem_k3_s2_c16_nre:ds_r1_k3_s1_c16_nre:ir_r1_k3_s2_e4_c24_nre,ir_r2_k3_s1_e3_c24_nre:head_v2_c64_nre"


def test_layout_joins_residual_blocks_into_one_space():
    lay = layout(normalize(Arch.from_str(TIED)))
    # stem and the ds block (16 -> 16, stride 1) share a space; the stride-2 ir
    # block starts a new one that the two residual ir blocks join.
    assert lay.groups == {"g0": (("stem",), ("out", 0, 0)),
                          "g1": (("out", 1, 0), ("out", 1, 1), ("out", 1, 2))}
    assert lay.modules["blocks.1.1.conv_pw"] == ("m1.1", "g1")
    assert lay.modules["blocks.1.1.conv_pwl"] == ("g1", "m1.1")
    assert lay.modules["head.conv_head"] == ("head", "g1")


def test_units_by_mode_honour_ties():
    arch = normalize(Arch.from_str(TIED))
    v3 = {u.name: u for u in units(arch, "mobilenetv3")}
    assert set(v3) == {"stem..s0.b0.out", "s1.b0..s1.b2.out", "s1.b0.mid", "s1.b1.mid",
                       "s1.b2.mid", "head"}
    assert v3["s1.b0..s1.b2.out"].sites == (("out", 1, 0), ("out", 1, 1), ("out", 1, 2))
    # filters mode: tied outputs are not prunable on their own
    assert {u.name for u in units(arch, "filters")} == {"s1.b0.mid", "s1.b1.mid", "s1.b2.mid", "head"}
    with pytest.raises(ValueError, match="filters, mobilenetv3"):
        units(arch, "layers")


def test_mobilenetv3_large_units():
    arch = normalize(reference("mobilenetv3_large"))
    names = [u.name for u in units(arch, "mobilenetv3")]
    # 6 bottleneck spaces (stem+first block tied), 14 expansions (ir blocks), the head
    assert sum(n.endswith(".out") for n in names) == 6
    assert sum(n.endswith(".mid") for n in names) == 14
    assert "stem..s0.b0.out" in names and "s3.b0..s3.b3.out" in names
    filt = [u.name for u in units(arch, "filters")]
    assert "head.features" in filt and not any(n.endswith(".out") for n in filt)


def test_tied_prune_keeps_the_residuals():
    arch = normalize(Arch.from_str(TIED))
    unit = next(u for u in units(arch, "mobilenetv3") if u.name == "s1.b0..s1.b2.out")
    new = with_count(arch, unit, 16)
    assert [b.out_chs for b in new.stages[1]] == [16, 16, 16]
    skips = [ly.spec.has_skip(ly.in_chs) for ly in new.layers()]
    assert skips == [ly.spec.has_skip(ly.in_chs) for ly in arch.layers()] == [True, False, True, True]
    assert count(new, unit) == 16


def test_normalize_keeps_the_network():
    arch = reference("mobilenetv3_large")
    norm = normalize(arch)
    assert all(b.mid_chs is not None for b in norm.blocks() if b.type == "ir")
    assert [ly.spec.has_skip(ly.in_chs) for ly in norm.layers()] == \
           [ly.spec.has_skip(ly.in_chs) for ly in arch.layers()]
    assert norm.params() == arch.params() and norm.madds() == arch.madds()
    a = randomize_bn(build(arch, num_classes=10))
    b = build(norm, num_classes=10).eval()
    b.load_state_dict(a.state_dict(), strict=True)
    x = torch.randn(2, 3, 32, 32)
    assert torch.equal(a(x), b(x))


def test_skip_not_taken_stays_off_when_counts_meet():
    # block 24 -> 32 at stride 1 with skip requested but not taken: cutting the
    # output to 24 must not add a residual.
    arch = normalize(Arch.from_str("stem_k3_s2_c24_nre:ir_r1_k3_s1_e2_c32_nre:head_v2_c32_nre"))
    unit = next(u for u in units(arch, "filters") if u.name == "s0.b0.out")
    new = with_count(arch, unit, 24)
    assert not any(ly.spec.has_skip(ly.in_chs) for ly in new.layers())


def test_candidates_and_smallest():
    assert candidates(40) == [32, 24, 16, 8]
    assert candidates(72, step=16) == [64, 48, 32, 16]
    assert candidates(20) == [16, 8]
    assert candidates(8) == []
    low = smallest(Arch.from_str(TIED), "mobilenetv3")
    assert low.stem.out_chs == 8 and all(b.out_chs == 8 for b in low.blocks())
    assert all(b.mid_chs == 8 for b in low.blocks() if b.type == "ir") and low.head.chs == 8
    build(low, num_classes=10)

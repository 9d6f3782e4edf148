"""Weight surgery: kept filters, inherited weights, exactness, strict loading."""

from __future__ import annotations

import pytest
import torch
from netadapt_helpers import randomize_bn

from hwnas.netadapt.prunable import count, layout, normalize, units, with_count
from hwnas.netadapt.surgery import importance, keep_indices, prune
from hwnas.space import Arch, build, reference

SMALL = ("stem_k3_s2_c16_nre:ds_r1_k3_s1_c16_se0.25_nre:ir_r1_k3_s2_e4_c24_nre,"
         "ir_r1_k3_s1_e3_c24_se0.25_nhs:head_v3_c64_f96_nhs")


def _net(arch: Arch, seed: int = 0) -> torch.nn.Module:
    torch.manual_seed(seed)
    return randomize_bn(build(arch, num_classes=10), seed)


def test_pruning_nothing_is_an_exact_copy():
    arch = normalize(reference("mobilenetv3_large"))
    net = _net(arch)
    copy = prune(net, arch, arch, 10).eval()
    x = torch.randn(2, 3, 32, 32)
    assert torch.equal(copy(x), net(x))
    for k, v in net.state_dict().items():
        assert torch.equal(copy.state_dict()[k], v)


@pytest.mark.parametrize("mode", ["mobilenetv3", "filters"])
def test_every_unit_prunes_to_a_strictly_loadable_net(mode):
    arch = normalize(Arch.from_str(SMALL))
    net = _net(arch)
    x = torch.randn(3, 3, 16, 16)
    for unit in units(arch, mode):
        new = with_count(arch, unit, 8)
        pruned = prune(net, arch, new, 10).eval()  # load_state_dict(strict=True) inside
        assert pruned.arch == new
        assert pruned(x).shape == (3, 10)
        assert sum(p.numel() for p in pruned.parameters()) == new.params(10) < arch.params(10)


def test_kept_filters_are_the_largest_and_keep_their_weights():
    arch = normalize(Arch.from_str(SMALL))
    net = _net(arch)
    lay = layout(arch, 10)
    w = net.blocks[1][0].conv_pw.weight.data  # expand conv of s1.b0: 64 filters
    w.mul_(0.01)
    big = torch.tensor([3, 10, 17, 40, 41, 50, 60, 63])
    w[big] *= 1000
    assert torch.equal(keep_indices(net, lay, "m1.0", 8), big)
    unit = next(u for u in units(arch) if u.name == "s1.b0.mid")
    pruned = prune(net, arch, with_count(arch, unit, 8), 10)
    b_old, b_new = net.blocks[1][0], pruned.blocks[1][0]
    assert torch.equal(b_new.conv_pw.weight, b_old.conv_pw.weight[big])
    assert torch.equal(b_new.bn1.running_var, b_old.bn1.running_var[big])
    assert torch.equal(b_new.conv_dw.weight, b_old.conv_dw.weight[big])
    assert torch.equal(b_new.conv_pwl.weight, b_old.conv_pwl.weight[:, big])


def test_tied_space_importance_sums_the_producers():
    arch = normalize(Arch.from_str(SMALL))
    net = _net(arch)
    lay = layout(arch, 10)  # g0 = stem + ds block (skip): both write into it
    imp = importance(net, lay, "g0")
    stem = net.stem.conv.weight.flatten(1).norm(dim=1)
    ds = net.blocks[0][0].conv_pw.weight.flatten(1).norm(dim=1)
    assert torch.allclose(imp, stem + ds)


def test_removing_unused_channels_is_exact():
    # Channels the next layer ignores and whose filters are zero are the ones
    # pruned, and the network computes exactly the same function.
    arch = normalize(Arch.from_str("stem_k3_s2_c16_nre:ir_r1_k3_s2_e4_c24_nre:head_v2_c32_nre"))
    net = _net(arch)
    blk = net.blocks[0][0]
    dead = torch.arange(0, 64, 8)  # 8 of the 64 expanded channels
    blk.conv_pw.weight.data[dead] = 0
    blk.conv_pwl.weight.data[:, dead] = 0
    unit = next(u for u in units(arch) if u.name == "s0.b0.mid")
    new = with_count(arch, unit, 56)
    pruned = prune(net, arch, new, 10).eval()
    x = torch.randn(4, 3, 16, 16)
    torch.testing.assert_close(pruned(x), net(x), rtol=0, atol=1e-6)
    assert count(new, unit) == 56


def test_prune_refuses_other_structures():
    arch = normalize(Arch.from_str(SMALL))
    net = _net(arch)
    other = normalize(Arch.from_str(SMALL.replace("ir_r1_k3_s1_e3_c24_se0.25_nhs", "ir_r1_k3_s1_e3_c24_nhs")))
    with pytest.raises(ValueError, match="structure"):
        prune(net, arch, other, 10)
    bigger = with_count(arch, units(arch)[0], 24)
    with pytest.raises(ValueError, match="grows"):
        prune(net, arch, bigger, 10)


def test_pruning_a_space_that_feeds_an_se_block_is_exact():
    # The expanded space of an ir block with SE: its channels feed the SE squeeze
    # (conv_reduce's inputs) and are gated by conv_expand's outputs, and the SE's
    # own reduced space shrinks with it (64 -> 32 expanded: 16 -> 8 reduced).
    # Channels that nothing reads (zero filters, zero columns in conv_pwl and in
    # conv_reduce) and a reduced channel that is always 0 (zero filter and bias:
    # ReLU(0) = 0) are the ones pruned, so the network computes the same function.
    arch = normalize(Arch.from_str("stem_k3_s2_c16_nre:ir_r1_k3_s2_e4_c24_se0.25_nre:"
                                   "head_v2_c32_nre"))
    net = _net(arch)
    blk = net.blocks[0][0]
    dead, dead_r = torch.arange(0, 64, 2), torch.arange(1, 16, 2)  # half of each space
    blk.conv_pw.weight.data[dead] = 0
    blk.conv_pwl.weight.data[:, dead] = 0
    blk.se.conv_reduce.weight.data[:, dead] = 0
    blk.se.conv_reduce.weight.data[dead_r] = 0
    blk.se.conv_reduce.bias.data[dead_r] = 0
    unit = next(u for u in units(arch) if u.name == "s0.b0.mid")
    new = with_count(arch, unit, 32)
    assert (layout(arch, 10).sizes["r0.0"], layout(new, 10).sizes["r0.0"]) == (16, 8)
    pruned = prune(net, arch, new, 10).eval()
    x = torch.randn(4, 3, 16, 16)
    torch.testing.assert_close(pruned(x), net(x), rtol=0, atol=1e-6)
    # the kept channels carry their own weights, in both SE convs
    kept = torch.arange(1, 64, 2), torch.arange(0, 16, 2)
    se_old, se_new = blk.se, pruned.blocks[0][0].se
    assert torch.equal(se_new.conv_reduce.weight, se_old.conv_reduce.weight[kept[1]][:, kept[0]])
    assert torch.equal(se_new.conv_reduce.bias, se_old.conv_reduce.bias[kept[1]])
    assert torch.equal(se_new.conv_expand.weight, se_old.conv_expand.weight[kept[0]][:, kept[1]])
    assert torch.equal(se_new.conv_expand.bias, se_old.conv_expand.bias[kept[0]])

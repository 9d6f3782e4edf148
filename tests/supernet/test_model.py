"""The supernet's paths are exact: extract(arch) computes what the supernet computes on that path."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from hwnas.common.errors import HwnasError
from hwnas.space import Arch, build, get_space, reference
from hwnas.supernet.model import MAX_KERNEL, SuperNet, largest

RES = 16


def _randomise_bn(net: nn.Module, seed: int) -> None:
    g = torch.Generator().manual_seed(seed)
    for m in net.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.copy_(torch.rand(m.running_mean.shape, generator=g) - 0.5)
            m.running_var.copy_(torch.rand(m.running_var.shape, generator=g) + 0.5)
            m.weight.data.copy_(torch.rand(m.weight.shape, generator=g) + 0.5)
            m.bias.data.copy_(torch.rand(m.bias.shape, generator=g) - 0.5)


@pytest.fixture(scope="module")
def v3() -> SuperNet:
    torch.manual_seed(0)
    net = SuperNet(get_space("mobilenetv3"), num_classes=10)
    _randomise_bn(net, 0)
    return net.eval()


def _archs() -> list[Arch]:
    space = get_space("mobilenetv3")
    rng = np.random.default_rng(1)
    return [*(space.sample_random(rng) for _ in range(2)), largest(space, "v2"), space.smallest(),
            reference("mobilenetv3_large", 1.25), reference("mobilenetv3_small", 0.75)]


@pytest.mark.parametrize("i", range(6))
def test_extract_is_exact_and_loads_into_build(v3: SuperNet, i: int) -> None:
    arch = _archs()[i]
    x = torch.randn(3, 3, RES, RES, generator=torch.Generator().manual_seed(i))
    standalone = build(arch, num_classes=10)
    standalone.load_state_dict(v3.extract(arch).state_dict())  # strict: same keys and shapes
    standalone.eval()
    with torch.no_grad():
        want = v3(x, arch)
        got = standalone(x)
    assert want.shape == (3, 10)
    assert torch.allclose(got, want, atol=1e-5, rtol=0), float((got - want).abs().max())


def test_train_mode_paths_are_exact_too(v3: SuperNet) -> None:
    arch = reference("mobilenetv3_large")
    x = torch.randn(4, 3, RES, RES)
    sub = net_out = None
    try:
        v3.train()
        sub = v3.extract(arch).train()
        with torch.no_grad():
            net_out = v3(x, arch)
            assert torch.allclose(sub(x), net_out, atol=1e-5, rtol=0)
    finally:
        v3.eval()


def test_kernel_is_the_centre_of_the_shared_bank(v3: SuperNet) -> None:
    arch = get_space("mobilenetv3").smallest()  # 3x3 kernels
    sd = v3.extract(arch).state_dict()
    name = "blocks.2.0.conv_dw.weight"
    spec = arch.stages[2][0]
    bank = v3.stages[2][0][spec.type].conv_dw.weight
    off = (MAX_KERNEL - spec.kernel) // 2
    n = sd[name].shape[0]
    assert torch.equal(sd[name], bank[:n, :, off:off + spec.kernel, off:off + spec.kernel])


def test_one_step_trains_only_the_path() -> None:
    torch.manual_seed(2)
    space = get_space("mobilenetv3")
    net = SuperNet(space, num_classes=10).train()
    arch = space.smallest()
    net(torch.randn(4, 3, RES, RES), arch).sum().backward()
    used = {n for n, p in net.named_parameters() if p.grad is not None}
    assert "stem.conv.weight" in used
    op = arch.stages[0][0].type
    assert f"stages.0.0.{op}.bn1.weight" in used
    assert not any(n.startswith("stages.0.1.") for n in used)  # a slot beyond the stage's depth
    unused_op = next(o for o in ("conv", "ds", "ir") if o != op)
    assert not any(n.startswith(f"stages.0.0.{unused_op}.") for n in used)
    g = net.stages[2][0][arch.stages[2][0].type].conv_dw.weight.grad  # 7x7 bank, 3x3 path
    assert g[..., 0, :].abs().sum() == 0 and g[..., 3, 3].abs().sum() > 0


def test_architectures_that_do_not_fit_say_why(v3: SuperNet) -> None:
    with pytest.raises(HwnasError, match="stage 6 .* does not fit the mobilenetv3 supernet"):
        v3.extract(reference("mnasnet_a1"))  # one stage too many
    with pytest.raises(HwnasError, match=r"needs a \(32, 3, 3, 3\) weight; the mobilenetv3 supernet holds at most"):
        v3.extract(reference("mobilenetv3_large", 2.0))
    assert not v3.fits(reference("mobilenetv3_large", 2.0))
    assert v3.fits(reference("mobilenetv3_small"))

"""A kernel larger than its feature map computes exactly what its centre crop computes."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from hwnas.common.errors import HwnasError
from hwnas.space import get_space, reference
from hwnas.space.visibility import effective_kernel, invisible_decisions


@pytest.mark.parametrize("res, stride", [(1, 1), (2, 1), (2, 2), (3, 1), (3, 2), (4, 2), (5, 1)])
def test_effective_kernel_is_exact(res: int, stride: int) -> None:
    g = torch.Generator().manual_seed(res * 10 + stride)
    x = torch.randn(1, 4, res, res, generator=g)
    w = torch.randn(4, 1, 7, 7, generator=g)
    full = F.conv2d(x, w, stride=stride, padding=3, groups=4)
    k = effective_kernel(7, res)
    off = (7 - k) // 2
    crop = F.conv2d(x, w[..., off:off + k, off:off + k], stride=stride, padding=k // 2, groups=4)
    assert torch.allclose(full, crop, atol=1e-6)
    if k > 1:  # and no smaller crop would do
        k2 = k - 2
        off = (7 - k2) // 2
        smaller = F.conv2d(x, w[..., off:off + k2, off:off + k2], stride=stride, padding=k2 // 2, groups=4)
        assert not torch.allclose(full, smaller, atol=1e-6)


def test_space_warning_fires_at_32_px_and_not_at_64() -> None:
    space = get_space("mobilenetv3")
    lines = invisible_decisions(space, 32)
    assert [line.split()[0] for line in lines] == ["b4_kernel", "b5_kernel"]
    assert "input 2x2" in lines[0] and "compute the same as 3" in lines[0]
    assert invisible_decisions(space, 64) == []
    assert invisible_decisions(get_space("mnasnet"), 64) == [
        "b6_kernel (input 2x2): kernels 3, 5, 7 compute the same as 3"]


def test_arch_lines_name_the_layers() -> None:
    lines = invisible_decisions(reference("mobilenetv3_large"), 32)
    assert lines[0] == "stage 5 layer 0 (k5, input 2x2): computes the same as k3"
    assert len(lines) == 3 and invisible_decisions(reference("mobilenetv3_large"), 224) == []


@pytest.mark.parametrize("bad", [0, -3, 2.5, "32", True])
def test_bad_resolution_is_one_line(bad: object) -> None:
    with pytest.raises(HwnasError, match="proxy resolution must be an int >= 1"):
        invisible_decisions(get_space("mobilenetv3"), bad)
    with pytest.raises(HwnasError, match="expected a SearchSpace or an Arch"):
        invisible_decisions("mobilenetv3", 32)

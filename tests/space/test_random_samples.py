"""Random samples of every search space: strings round-trip, counts match torch, ONNX matches torch."""

from __future__ import annotations

import numpy as np
import pytest

from hwnas.space import Arch, build
from hwnas.space.searchspace import get_space

SPACES = ("mobilenetv3", "mnasnet")
SAMPLES_PER_SPACE = 200
ONNX_SAMPLES = 5
ONNX_TOL = 1e-4
MADDS_RESOLUTION = 64  # hook counting runs a forward pass; a small input keeps it quick


def samples(space: str, seed: int = 2024) -> list[Arch]:
    rng = np.random.default_rng(seed)
    sp = get_space(space)
    return [sp.sample_random(rng) for _ in range(SAMPLES_PER_SPACE)]


SAMPLES = {name: samples(name) for name in SPACES}


@pytest.mark.parametrize("space", SPACES)
def test_sampling_is_seeded_and_varied(space: str) -> None:
    assert [a.to_str() for a in samples(space)] == [a.to_str() for a in SAMPLES[space]]
    assert len({a.to_str() for a in SAMPLES[space]}) > SAMPLES_PER_SPACE // 2


@pytest.mark.parametrize("space", SPACES)
def test_strings_round_trip(space: str) -> None:
    for arch in SAMPLES[space]:
        text = arch.to_str()
        back = Arch.from_str(text)
        assert back == arch, text
        assert back.to_str() == text


@pytest.mark.parametrize("space", SPACES)
def test_params_equal_the_torch_module(space: str, params_of) -> None:
    for arch in SAMPLES[space]:
        assert params_of(build(arch)) == arch.params(), arch.to_str()


@pytest.mark.parametrize("space", SPACES)
def test_madds_equal_a_hook_count(space: str, torch_madds) -> None:
    for arch in SAMPLES[space][:20]:
        assert torch_madds(build(arch), MADDS_RESOLUTION) == arch.madds(MADDS_RESOLUTION), arch.to_str()


@pytest.mark.parametrize("index", range(ONNX_SAMPLES))
def test_onnx_equals_torch(index: int, onnx_vs_torch) -> None:
    arch = SAMPLES[SPACES[index % len(SPACES)]][index]
    expected, got = onnx_vs_torch(arch, resolution=64, seed=index)
    assert expected.std() > 0.05  # randomised weights: logits far from trivially zero
    np.testing.assert_allclose(got, expected, rtol=0, atol=ONNX_TOL)

"""Reference networks: published sizes to the unit, width multipliers, torch agreement."""

from __future__ import annotations

import pytest

from hwnas.space import REFERENCE_NAMES, build, make_divisible, reference

# (params, MAdds) at 1000 classes and 224x224; equal to timm's models of the
# same names (timm.create_model + its profiler), i.e. what the papers report
# up to the papers' own rounding.
TABLE: dict[tuple[str, float], tuple[int, int]] = {
    ("mobilenetv3_large", 1.0): (5_483_032, 216_589_760),
    ("mobilenetv3_large", 0.75): (3_993_528, 154_560_624),
    ("mobilenetv3_small", 1.0): (2_542_856, 56_510_400),
    ("mnasnet_b1", 1.0): (4_383_312, 314_415_872),
    ("mnasnet_a1", 1.0): (3_887_038, 311_579_072),
    ("mnasnet_small", 1.0): (2_030_264, 68_339_184),
    ("mobilenetv2", 1.0): (3_504_872, 300_774_272),
    ("fbnet_c", 1.0): (5_572_200, 384_960_160),
    ("spnasnet", 1.0): (4_421_616, 333_467_072),
}
# ProxylessNAS-Mobile is quoted as about 4.1M params and 320M MAdds for the released model.
PROXYLESS_PARAMS, PROXYLESS_MADDS, PROXYLESS_TOL = 4.1e6, 320e6, 0.03
WIDTHS = (0.5, 0.75, 1.25)


@pytest.mark.parametrize("key", list(TABLE), ids=[f"{n}-{w}" for n, w in TABLE])
def test_published_sizes_to_the_unit(key: tuple[str, float], params_of) -> None:
    name, width = key
    arch = reference(name, width)
    params, madds = TABLE[key]
    assert arch.params() == params
    assert arch.madds() == madds
    assert params_of(build(arch)) == params


def test_proxyless_mobile_matches_the_paper(params_of) -> None:
    arch = reference("proxyless_mobile")
    assert abs(arch.params() / PROXYLESS_PARAMS - 1) < PROXYLESS_TOL
    assert abs(arch.madds() / PROXYLESS_MADDS - 1) < PROXYLESS_TOL
    assert params_of(build(arch)) == arch.params()


def test_table_covers_every_reference() -> None:
    assert {n for n, _ in TABLE} | {"proxyless_mobile"} == set(REFERENCE_NAMES)


@pytest.mark.parametrize("width", WIDTHS)
@pytest.mark.parametrize("name", REFERENCE_NAMES)
def test_scaled_params_equal_the_torch_module(name: str, width: float, params_of) -> None:
    arch = reference(name, width)
    assert params_of(build(arch)) == arch.params()
    assert params_of(build(arch, num_classes=10)) == arch.params(num_classes=10)


@pytest.mark.parametrize("name", REFERENCE_NAMES)
def test_madds_equal_a_hook_count_of_the_module(name: str, torch_madds) -> None:
    arch = reference(name)
    model = build(arch)
    assert torch_madds(model, 224) == arch.madds(224)
    assert torch_madds(model, 97) == arch.madds(97)  # odd size: "same" padding rounds up


@pytest.mark.parametrize("name", ["mobilenetv3_small", "mnasnet_a1", "mobilenetv2"])
@pytest.mark.parametrize("width", WIDTHS)
def test_scaled_madds_equal_a_hook_count(name: str, width: float, torch_madds) -> None:
    arch = reference(name, width)
    assert torch_madds(build(arch), 128) == arch.madds(128)


def test_width_scales_stage_channels_with_make_divisible() -> None:
    base, half = reference("mnasnet_a1"), reference("mnasnet_a1", 0.5)
    assert [b.out_chs for b in half.blocks()] == [make_divisible(b.out_chs * 0.5) for b in base.blocks()]
    assert half.stem.out_chs == 16 and half.name == "mnasnet_a1_0.5" and base.name == "mnasnet_a1"


def test_mobilenetv3_stem_is_fixed_below_075_and_hidden_head_is_fixed() -> None:
    assert reference("mobilenetv3_large", 0.5).stem.out_chs == 16
    assert reference("mobilenetv3_large", 0.75).stem.out_chs == 16  # make_divisible(12) = 16 anyway
    assert reference("mobilenetv3_large", 1.25).stem.out_chs == 24  # make_divisible(20)
    for width in (0.5, 1.0, 1.25):
        head = reference("mobilenetv3_large", width).head
        assert head.features == 1280 and head.chs == make_divisible(960 * width)


@pytest.mark.parametrize("name", ["mobilenetv2", "proxyless_mobile"])
def test_v2_style_head_is_max_of_1280_and_scaled(name: str) -> None:
    assert reference(name, 0.5).head.chs == 1280
    assert reference(name, 1.25).head.chs == 1600
    assert reference(name, 1.5).head.chs == 1920


def test_names_are_forgiving_and_errors_list_known_names() -> None:
    assert reference("MobileNetV3-Large") == reference("mobilenetv3_large")
    with pytest.raises(ValueError, match="unknown network 'resnet50': known are mobilenetv3_large, "):
        reference("resnet50")
    with pytest.raises(ValueError, match=r"width multiplier must be in \(0, 4\], got 0"):
        reference("mnasnet_a1", 0)
    with pytest.raises(ValueError, match="got 5"):
        reference("mnasnet_a1", 5)

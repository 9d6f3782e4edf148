"""Specs validate their values; the text form round-trips and rejects bad tokens."""

from __future__ import annotations

import dataclasses

import pytest

from hwnas.space import (
    REFERENCE_NAMES,
    Arch,
    BlockSpec,
    HeadSpec,
    NotationError,
    StemSpec,
    reference,
)
from hwnas.space.notation import block_from_str, block_to_str
from hwnas.space.spec import make_divisible

MNV3_STEM = "stem_k3_s2_c16_nhs"
V2_HEAD = "head_v2_c1280_nre"


# ------------------------------------------------------------ validation ---
@pytest.mark.parametrize("kwargs, bad", [
    (dict(type="ir", kernel=4, stride=1, out_chs=16), "4"),
    (dict(type="ir", kernel=3, stride=3, out_chs=16), "3"),
    (dict(type="ir", kernel=3, stride=1, out_chs=-8), "-8"),
    (dict(type="ir", kernel=3, stride=1, out_chs=0), "0"),
    (dict(type="ir", kernel=3, stride=1, out_chs=16.0), "16.0"),
    (dict(type="ir", kernel=3, stride=1, out_chs=16, exp_ratio=0.0), "0.0"),
    (dict(type="ir", kernel=3, stride=1, out_chs=16, exp_ratio=float("inf")), "inf"),
    (dict(type="ir", kernel=3, stride=1, out_chs=16, mid_chs=-3), "-3"),
    (dict(type="ir", kernel=3, stride=1, out_chs=16, se_ratio=1.5), "1.5"),
    (dict(type="ir", kernel=3, stride=1, out_chs=16, act="gelu"), "gelu"),
    (dict(type="ir", kernel=3, stride=1, out_chs=16, se_gate="tanh"), "tanh"),
    (dict(type="ir", kernel=3, stride=1, out_chs=16, se_from="out"), "out"),
    (dict(type="mb", kernel=3, stride=1, out_chs=16), "mb"),
    (dict(type="ds", kernel=3, stride=1, out_chs=16, exp_ratio=6.0), "6.0"),
    (dict(type="conv", kernel=3, stride=1, out_chs=16, se_ratio=0.25), "0.25"),
])
def test_block_spec_rejects_bad_values_naming_them(kwargs: dict, bad: str) -> None:
    with pytest.raises(ValueError, match=rf"got {bad!s}|got '{bad}'"):
        BlockSpec(**kwargs)


@pytest.mark.parametrize("make, bad", [
    (lambda: StemSpec(out_chs=0), "0"),
    (lambda: StemSpec(out_chs=16, kernel=2), "2"),
    (lambda: StemSpec(out_chs=16, stride=4), "4"),
    (lambda: StemSpec(out_chs=16, act="tanh"), "tanh"),
    (lambda: HeadSpec(kind="v4", chs=1280), "v4"),
    (lambda: HeadSpec(kind="v3", chs=960), "0"),
    (lambda: HeadSpec(kind="v2", chs=1280, features=1024), "1024"),
    (lambda: HeadSpec(kind="v2", chs=-1), "-1"),
])
def test_stem_and_head_reject_bad_values(make, bad: str) -> None:
    with pytest.raises(ValueError, match=rf"got '?{bad}'?$"):
        make()


def test_arch_rejects_empty_stages() -> None:
    stem, head = StemSpec(out_chs=16), HeadSpec(kind="v2", chs=1280)
    with pytest.raises(ValueError, match="empty stage"):
        Arch(stem=stem, stages=((BlockSpec("ir", 3, 1, 16),), ()), head=head)
    with pytest.raises(ValueError, match="at least one stage"):
        Arch(stem=stem, stages=(), head=head)


def test_specs_are_frozen_and_hashable() -> None:
    arch = reference("mobilenetv3_large")
    with pytest.raises(dataclasses.FrozenInstanceError):
        arch.stem.out_chs = 8  # type: ignore[misc]
    assert hash(arch) == hash(reference("mobilenetv3_large"))
    assert arch == reference("mobilenetv3_large") and arch != reference("mobilenetv3_small")


@pytest.mark.parametrize("value, expected", [(18, 24), (88.08, 88), (4, 8), (16 * 0.75, 16), (320 * 1.25, 400)])
def test_make_divisible(value: float, expected: int) -> None:
    assert make_divisible(value) == expected


def test_derived_channels_follow_timm() -> None:
    spec = BlockSpec("ir", 5, 2, 40, exp_ratio=3.0, se_ratio=0.25)  # MobileNetV3 stage 3, first layer
    assert spec.mid(24) == 72 and spec.se_chs(24) == 24  # make_divisible(72 * 0.25)
    mnas = BlockSpec("ir", 5, 2, 40, exp_ratio=3.0, se_ratio=0.25, se_from="in")
    assert mnas.se_chs(24) == 6  # 24 input channels * 0.25
    assert BlockSpec("ir", 3, 1, 24, exp_ratio=6.0, mid_chs=100).mid(24) == 100
    assert BlockSpec("ir", 3, 1, 24).has_skip(24) and not BlockSpec("ir", 3, 2, 24).has_skip(24)
    assert not BlockSpec("ir", 3, 1, 24, skip=False).has_skip(24)


def test_layers_track_channels_and_resolution() -> None:
    arch = reference("mobilenetv2")
    layers = list(arch.layers(224))
    assert len(layers) == arch.depth == 17
    assert (layers[0].in_chs, layers[0].in_res) == (32, 112)
    assert (layers[-1].in_chs, layers[-1].in_res, layers[-1].out_res) == (160, 7, 7)
    assert arch.final_shape(224) == (320, 7) and arch.final_shape(97) == (320, 4)


# ------------------------------------------------------------ round trip ---
@pytest.mark.parametrize("name", REFERENCE_NAMES)
@pytest.mark.parametrize("width", [1.0, 0.5, 1.25])
def test_references_round_trip(name: str, width: float) -> None:
    arch = reference(name, width)
    text = arch.to_str()
    assert Arch.from_str(text) == arch
    assert Arch.from_str(text).to_str() == text


CANONICAL = [
    f"{MNV3_STEM}:ds_r1_k3_s1_e1_c16_nre:ir_r1_k3_s2_e4_c24_nre,ir_r1_k3_s1_e3_c24_nre:head_v3_c960_f1280_nhs",
    "stem_k3_s2_c32_nre:cn_r1_k3_s1_c32_nre_skip:ir_r2_k7_s2_e6_m100_c40_se0.25_sig_sein_nsw_noskip:"
    "ir_r1_k5_s1_e2.3_c48_se0.5_nr6:" + V2_HEAD,
    "stem_k5_s1_c8_nr6:cn_r3_k1_s2_c8_nre:ds_r1_k7_s1_e1_c8_nhs_noskip:head_v2_c64_nr6",
]


@pytest.mark.parametrize("text", CANONICAL)
def test_canonical_strings_round_trip_exactly(text: str) -> None:
    assert Arch.from_str(text).to_str() == text


@pytest.mark.parametrize("short, canonical", [
    ("ds_r1_k3_s1_c16", "ds_r1_k3_s1_e1_c16_nre"),
    ("ir_r3_k5_s2_e3_c40_se0.25_nre", "ir_r3_k5_s2_e3_c40_se0.25_nre"),
    ("ir_r1_k3_s2_e6_c24", "ir_r1_k3_s2_e6_c24_nre"),
    ("ir_r2_k3_s1_e6_c112_se0.25_nhs", "ir_r2_k3_s1_e6_c112_se0.25_nhs"),
    ("ds_r1_k3_s1_c16_noskip", "ds_r1_k3_s1_e1_c16_nre_noskip"),
    ("cn_r1_k1_s1_c960", "cn_r1_k1_s1_c960_nre"),
    ("conv_r1_k3_s1_c32_skip", "cn_r1_k3_s1_c32_nre_skip"),
    ("dsa_r1_k3_s1_c16", "ds_r1_k3_s1_e1_c16_nre"),
])
def test_timm_short_forms(short: str, canonical: str) -> None:
    """timm leaves out defaults (e1, ReLU); the canonical form spells them out."""
    layers = block_from_str(short)
    assert block_to_str(layers[0], len(layers)) == canonical
    assert block_from_str(canonical) == layers
    text = f"{MNV3_STEM}:{short}:{V2_HEAD}"
    arch = Arch.from_str(text)
    assert arch.to_str() == f"{MNV3_STEM}:{canonical}:{V2_HEAD}"
    assert Arch.from_str(arch.to_str()) == arch


def test_repeats_expand_with_stride_on_first_layer_only() -> None:
    layers = block_from_str("ir_r3_k5_s2_e3_c40_se0.25_nre")
    assert [b.stride for b in layers] == [2, 1, 1]
    assert all(b.kernel == 5 and b.exp_ratio == 3.0 and b.se_ratio == 0.25 and b.out_chs == 40 for b in layers)


def test_whitespace_and_line_breaks_are_ignored() -> None:
    text = CANONICAL[0]
    assert Arch.from_str(text.replace(":", ":\n  ").replace(",", ", ")).to_str() == text


# ------------------------------------------------------------ bad strings ---
@pytest.mark.parametrize("block, token", [
    ("ir_r1_k3_s1_x5_c16", "x5"),
    ("ir_r1_k3_s1_cabc", "cabc"),
    ("ir_r1_k3.5_s1_c16", "k3.5"),
    ("ir_r1_k3_s1_c16_se", "se"),
    ("ir_r1_k3_s1_c16_nxx", "nxx"),
    ("zz_r1_k3_s1_c16", "zz"),
    ("ir_r0_k3_s1_c16", "r0"),
    ("ir_r1_k3_s1_c16_", "''"),
])
def test_malformed_block_names_bad_token(block: str, token: str) -> None:
    with pytest.raises(NotationError, match=f"'{token}'" if token != "''" else "''"):
        Arch.from_str(f"{MNV3_STEM}:{block}:{V2_HEAD}")


@pytest.mark.parametrize("block, value", [
    ("ir_r1_k4_s1_c16", "4"), ("ir_r1_k3_s3_c16", "3"), ("ir_r1_k3_s1_c0", "0"),
    ("ir_r1_k3_s1_e0_c16", "0.0"), ("ds_r1_k3_s1_e6_c16", "6.0"), ("cn_r1_k3_s1_c16_se0.25", "0.25"),
])
def test_invalid_values_in_strings_name_value_and_block(block: str, value: str) -> None:
    with pytest.raises(NotationError, match=rf"bad block '{block}'.*got {value}$"):
        block_from_str(block)


@pytest.mark.parametrize("text, fragment", [
    ("ir_r1_k3_s1_c16", "expected 'stem_"),
    (f"{MNV3_STEM}:{V2_HEAD}", "expected 'stem_"),
    (f"{MNV3_STEM}::{V2_HEAD}", "empty stage"),
    (f"{MNV3_STEM}:ir_r1_k3_s1:{V2_HEAD}", "lacks its c token"),
    (f"stem_k3_s2_q7_c16:ir_r1_k3_s1_c16:{V2_HEAD}", "'q7'"),
    (f"stem_k3_s2:ir_r1_k3_s1_c16:{V2_HEAD}", "stem 'stem_k3_s2' lacks"),
    (f"stem_k4_s2_c16:ir_r1_k3_s1_c16:{V2_HEAD}", "got 4"),
    (f"{MNV3_STEM}:ir_r1_k3_s1_c16:head_v3_c960_nhs", "got 0"),
    (f"{MNV3_STEM}:ir_r1_k3_s1_c16:head_v2_c1280_z3", "'z3'"),
])
def test_malformed_arch_strings(text: str, fragment: str) -> None:
    with pytest.raises(NotationError, match=fragment.replace("(", r"\(")):
        Arch.from_str(text)


def test_notation_error_is_a_value_error() -> None:
    assert issubclass(NotationError, ValueError)


# --- limits (stated once in hwnas.space.spec; refused before anything is allocated) ------
def test_limits_refuse_huge_inputs_in_one_short_line() -> None:
    from hwnas.space.spec import MAX_CHANNELS, MAX_LAYERS, MAX_RESOLUTION

    huge = "stem_k3_s2_c16_nre:ds_r1_k3_s1_c999999_nre:head_v2_c1280_nre"
    with pytest.raises(ValueError, match=f"channels must be an int in 1..{MAX_CHANNELS}"):
        Arch.from_str(huge)
    with pytest.raises(ValueError, match=f"repeats must be in 1..{MAX_LAYERS}"):
        Arch.from_str("stem_k3_s2_c16_nre:ds_r100000_k3_s1_c16_nre:head_v2_c1280_nre")
    arch = Arch.from_str("stem_k3_s2_c16_nre:ds_r1_k3_s1_c16_nre:head_v2_c1280_nre")
    with pytest.raises(ValueError, match=f"resolution must be an integer in 1..{MAX_RESOLUTION}"):
        arch.madds(resolution=100_000)
    with pytest.raises(ValueError) as e:
        Arch.from_str("stem_k3_s2_c16_nre:" + "x" * 10_000 + ":head_v2_c1280_nre")
    assert len(str(e.value)) < 300

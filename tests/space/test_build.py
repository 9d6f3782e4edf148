"""The torch builder: layout, shapes, counts against hooks, and ONNX agreement."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
import torch
from torch import nn

from hwnas.space import Arch, BlockSpec, HeadSpec, StemSpec, build, export_onnx, reference
from hwnas.space.spec import ACTIVATIONS, KERNELS

ONNX_TOL = 1e-4
MIN_LOGIT_STD = 0.05  # randomised nets give O(0.1-1) logits; near-zero ones would prove nothing


def random_arch(rng: np.random.Generator) -> Arch:
    """A small arch using every block feature (conv/ds/ir, m, SE variants, skip), drawn from ``rng``.

    Independent of the search spaces, so the builder is checked on options
    the spaces may never pick.
    """
    def se_options() -> dict[str, str]:
        return {"se_gate": str(rng.choice(["hsigmoid", "sigmoid"])), "se_from": str(rng.choice(["mid", "in"]))}

    def block(stride: int) -> BlockSpec:
        kind = str(rng.choice(["conv", "ds", "ir", "ir"]))
        se = float(rng.choice([0.0, 0.25, 0.5])) if kind != "conv" else 0.0
        exp = float(rng.choice([1.0, 2.3, 3.0, 6.0])) if kind == "ir" else 1.0
        return BlockSpec(
            type=kind, kernel=int(rng.choice(KERNELS)), stride=stride, out_chs=int(rng.integers(4, 41)),
            exp_ratio=exp, mid_chs=int(rng.integers(8, 65)) if kind == "ir" and rng.random() < 0.3 else None,
            se_ratio=se, **(se_options() if se else {}),
            act=str(rng.choice(ACTIVATIONS)), skip=bool(rng.random() < 0.7))

    stages = []
    for _ in range(int(rng.integers(1, 5))):
        n = int(rng.integers(1, 4))
        first = block(int(rng.choice([1, 2])))
        # repeat the first block sometimes so the stride-1 followers make identity skips
        rest = [block(1) if rng.random() < 0.5 else BlockSpec(**{
            f: getattr(first, f) for f in BlockSpec.__dataclass_fields__} | {"stride": 1}) for _ in range(n - 1)]
        stages.append((first, *rest))
    kind = str(rng.choice(["v2", "v3"]))
    head = HeadSpec(kind=kind, chs=int(rng.integers(16, 129)),
                    features=int(rng.integers(16, 257)) if kind == "v3" else 0, act=str(rng.choice(ACTIVATIONS)))
    stem = StemSpec(out_chs=int(rng.integers(4, 33)), kernel=int(rng.choice([3, 5])),
                    stride=int(rng.choice([1, 2])), act=str(rng.choice(ACTIVATIONS)))
    return Arch(stem=stem, stages=tuple(stages), head=head)


RANDOM_ARCHS = [random_arch(np.random.default_rng(seed)) for seed in range(40)]


def test_random_archs_cover_every_option() -> None:
    blocks = [b for a in RANDOM_ARCHS for b in a.blocks()]
    assert {b.type for b in blocks} == {"conv", "ds", "ir"}
    assert {b.act for b in blocks} == set(ACTIVATIONS) and {b.kernel for b in blocks} == set(KERNELS)
    assert any(b.mid_chs for b in blocks) and any(b.se_from == "in" and b.se_ratio for b in blocks)
    assert any(b.se_gate == "sigmoid" and b.se_ratio for b in blocks)
    skips = [b for a in RANDOM_ARCHS for layer in a.layers() if (b := layer.spec).has_skip(layer.in_chs)]
    assert skips


@pytest.mark.parametrize("index", range(len(RANDOM_ARCHS)))
def test_random_arch_counts_equal_the_module(index: int, params_of, torch_madds) -> None:
    arch = RANDOM_ARCHS[index]
    assert Arch.from_str(arch.to_str()) == arch
    model = build(arch, num_classes=37)
    assert params_of(model) == arch.params(num_classes=37)
    for res in (32, 45):
        assert torch_madds(model, res) == arch.madds(res, num_classes=37)


def test_blocks_name_sublayers_in_paper_order() -> None:
    model = build(reference("mobilenetv3_large"))
    ir = model.blocks[2][0]  # ir_r3_k5_s2_e3_c40_se0.25_nre
    assert [n for n, _ in ir.named_children()] == [
        "conv_pw", "bn1", "act1", "conv_dw", "bn2", "act2", "se", "conv_pwl", "bn3"]
    assert isinstance(model.blocks[1][0].se, nn.Identity)  # no SE: an Identity, not a branch
    assert isinstance(ir.act1, nn.ReLU) and isinstance(model.blocks[3][0].act1, nn.Hardswish)
    assert isinstance(ir.se.gate, nn.Hardsigmoid)
    assert isinstance(build(reference("mnasnet_a1")).blocks[2][0].se.gate, nn.Sigmoid)
    assert ir.conv_dw.stride == (2, 2) and model.blocks[2][1].conv_dw.stride == (1, 1)


def test_skips_follow_shapes_and_noskip() -> None:
    model = build(reference("mnasnet_b1"))
    assert not model.blocks[0][0].has_skip  # ds_..._noskip, 32 -> 16 anyway
    assert [b.has_skip for b in model.blocks[1]] == [False, True, True]
    assert not model.blocks[6][0].has_skip


def test_builds_are_fresh_and_output_has_class_count() -> None:
    arch = reference("mnasnet_small")
    a, b = build(arch, num_classes=7), build(arch, num_classes=7)
    assert not torch.equal(a.stem.conv.weight, b.stem.conv.weight)
    with torch.no_grad():
        assert a.eval()(torch.zeros(2, 3, 64, 64)).shape == (2, 7)


@pytest.mark.parametrize("name", ["mobilenetv3_large", "mnasnet_a1", "proxyless_mobile"])
def test_onnx_equals_torch(name: str, onnx_vs_torch) -> None:
    expected, got = onnx_vs_torch(reference(name), resolution=64, seed=3)
    assert expected.std() > MIN_LOGIT_STD
    np.testing.assert_allclose(got, expected, rtol=0, atol=ONNX_TOL)


@pytest.mark.parametrize("seed", [0, 1])
def test_onnx_equals_torch_on_random_archs(seed: int, onnx_vs_torch) -> None:
    expected, got = onnx_vs_torch(RANDOM_ARCHS[seed], resolution=48, seed=seed)
    np.testing.assert_allclose(got, expected, rtol=0, atol=ONNX_TOL)


def test_onnx_check_detects_a_changed_network(tmp_path: Path) -> None:
    """The exported file holds the given weights: changing the module afterwards shows."""
    arch = reference("mnasnet_small")
    model = build(arch, num_classes=10).eval()
    path = export_onnx(arch, tmp_path / "n.onnx", resolution=32, model=model)
    assert path.exists() and not list(tmp_path.glob("*.tmp"))
    x = torch.randn(1, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        model.head.classifier.bias.add_(1.0)
        changed = model(x).numpy()
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    got = sess.run(None, {"input": x.numpy()})[0]
    assert np.abs(got - changed).min() > 0.5

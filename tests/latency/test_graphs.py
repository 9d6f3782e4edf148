"""Per-layer ONNX graphs: same numbers as the torch layer, same ops as the exported network."""

from __future__ import annotations

import collections
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from torch import nn

from hwnas.latency.graphs import OPSET, empty_model, key_model
from hwnas.latency.keys import LayerKey, block_key, head_key, layer_keys, stem_key
from hwnas.space import BlockSpec, HeadSpec, StemSpec, export_onnx, reference
from hwnas.space.build import Head, build_block, build_stem

TOL = 1e-4
# Every op, activation, SE gate, skip and head kind, at low resolution.
KEYS = [
    "stem_k3_s2_c16_nhs|3x16x16",
    "stem_k5_s1_c8_nsw|3x9x9",
    "conv_k3_s1_c12_nr6_skip|12x8x8",
    "conv_k5_s2_c16_nsw_noskip|8x9x9",
    "ds_k3_s1_c16_se4s_nre_skip|16x8x8",
    "ds_k7_s2_c24_nhs_noskip|16x9x9",
    "ds_k5_s1_c8_se8h_nsw_noskip|16x6x6",
    "ir_k3_s1_m48_c16_se12h_nhs_skip|16x8x8",
    "ir_k5_s2_m72_c24_nre_noskip|16x9x9",
    "ir_k7_s1_m40_c24_se6s_nsw_skip|24x6x6",
    "ir_k3_s1_m96_c32_nr6_noskip|24x5x5",
    "head_v2_c64_nr6_cls10|24x4x4",
    "head_v3_c48_f80_nhs_cls7|16x3x3",
    "head_v3_c32_f40_nsw_cls5|8x2x2",
]


def torch_layer(key: LayerKey) -> nn.Module:
    """The module ``hwnas.space.build`` makes for ``key`` (checked to key back to ``key``)."""
    if key.part == "stem":
        stem = StemSpec(key.out_chs, key.kernel, key.stride, key.act)
        assert stem_key(stem, key.res, key.in_chs) == key
        return build_stem(stem, key.in_chs)
    if key.part == "head":
        head = HeadSpec(key.op, key.out_chs, key.features, key.act)
        assert head_key(head, key.in_chs, key.res, key.num_classes) == key
        return Head(head, key.in_chs, key.num_classes)
    mid = key.mid_chs if key.op != "conv" else key.in_chs
    spec = BlockSpec(
        key.op,
        key.kernel,
        key.stride,
        key.out_chs,
        mid_chs=key.mid_chs if key.op == "ir" else None,
        se_ratio=key.se_chs / mid if key.se_chs else 0.0,
        se_gate=key.se_gate,
        se_from="in",
        act=key.act,
        skip=key.skip,
    )
    assert block_key(spec, key.in_chs, key.res) == key
    return build_block(spec, key.in_chs)


def load_weights(module: nn.Module, model: onnx.ModelProto) -> None:
    """Copy the graph's initializers into ``module``; folded BN shifts go to identity BNs."""
    state = module.state_dict()
    bns = {n for n, m in module.named_modules() if isinstance(m, nn.BatchNorm2d)}
    with torch.no_grad():
        for init in model.graph.initializer:
            value = torch.from_numpy(onnx.numpy_helper.to_array(init).copy())
            owner = init.name.rsplit(".", 1)[0]
            if owner in bns:
                bn = module.get_submodule(owner)
                bn.bias.copy_(value)
                bn.weight.fill_(1.0)
                bn.running_mean.zero_()
                bn.running_var.fill_(1.0 - bn.eps)  # (x - 0) / sqrt(1 - eps + eps) = x
            elif init.name in state:
                state[init.name].copy_(value)
            else:
                assert init.name.endswith((".min", ".max")), init.name  # Clip bounds of ReLU6
    module.eval()


def run_onnx(model: onnx.ModelProto, x: np.ndarray) -> np.ndarray:
    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return sess.run(None, {sess.get_inputs()[0].name: x})[0]


@pytest.mark.parametrize("text", KEYS)
def test_key_graph_computes_what_the_torch_layer_computes(text: str) -> None:
    key = LayerKey.parse(text)
    model = key_model(key, seed=3)
    onnx.checker.check_model(model, full_check=True)
    module = torch_layer(key)
    load_weights(module, model)
    x = (
        np.random.default_rng(1)
        .standard_normal((1, key.in_chs, key.res, key.res))
        .astype(np.float32)
    )
    got = run_onnx(model, x)
    with torch.no_grad():
        want = module(torch.from_numpy(x)).numpy()
    assert got.shape == want.shape
    scale = max(1.0, float(np.abs(want).max()))
    np.testing.assert_allclose(got, want, rtol=TOL, atol=TOL * scale)
    assert float(np.std(want)) > 1e-3  # the weights make a non-trivial layer


@pytest.mark.parametrize("text", KEYS)
def test_key_graph_declares_its_shapes(text: str) -> None:
    key = LayerKey.parse(text)
    model = key_model(key)
    (inp,), (out,) = model.graph.input, model.graph.output
    dims = [d.dim_value for d in inp.type.tensor_type.shape.dim]
    assert dims == [1, key.in_chs, key.res, key.res]
    want = (
        [1, key.num_classes] if key.part == "head" else [1, key.out_chs, key.out_res, key.out_res]
    )
    assert [d.dim_value for d in out.type.tensor_type.shape.dim] == want
    assert model.opset_import[0].version == OPSET
    x = np.zeros(dims, dtype=np.float32)
    assert list(run_onnx(model, x).shape) == want


@pytest.mark.parametrize(
    "text, ops",
    [
        ("stem_k3_s2_c16_nhs|3x16x16", ["Conv", "HardSwish"]),
        ("conv_k3_s1_c12_nr6_skip|12x8x8", ["Conv", "Clip", "Add"]),
        (
            "ds_k3_s1_c16_se4s_nre_skip|16x8x8",
            ["Conv", "Relu", "ReduceMean", "Conv", "Relu", "Conv", "Sigmoid", "Mul", "Conv", "Add"],
        ),
        (
            "ir_k5_s2_m72_c24_nsw_noskip|16x9x9",
            ["Conv", "Sigmoid", "Mul", "Conv", "Sigmoid", "Mul", "Conv"],
        ),
        (
            "ir_k3_s1_m48_c16_se12h_nhs_skip|16x8x8",
            [
                "Conv",
                "HardSwish",
                "Conv",
                "HardSwish",
                "ReduceMean",
                "Conv",
                "Relu",
                "Conv",
                "HardSigmoid",
                "Mul",
                "Conv",
                "Add",
            ],
        ),
        (
            "head_v3_c48_f80_nhs_cls7|16x3x3",
            ["Conv", "HardSwish", "GlobalAveragePool", "Conv", "HardSwish", "Flatten", "Gemm"],
        ),
        ("head_v2_c64_nre_cls10|24x4x4", ["Conv", "Relu", "GlobalAveragePool", "Flatten", "Gemm"]),
    ],
)
def test_key_graph_ops_in_order(text: str, ops: list[str]) -> None:
    assert [n.op_type for n in key_model(LayerKey.parse(text)).graph.node] == ops


@pytest.mark.parametrize("name", ["mobilenetv3_large", "mnasnet_a1", "mobilenetv2"])
def test_layer_graphs_hold_the_ops_of_the_exported_network(name: str, tmp_path: Path) -> None:
    arch = reference(name)
    exported = onnx.load(export_onnx(arch, tmp_path / "net.onnx", resolution=32))
    ignore = {"Identity", "Constant"}  # the exporter's bookkeeping, folded away by onnxruntime
    want = collections.Counter(n.op_type for n in exported.graph.node if n.op_type not in ignore)
    got: collections.Counter[str] = collections.Counter()
    for key in layer_keys(arch, 32):
        got.update(n.op_type for n in key_model(key).graph.node)
    assert got == want


def test_key_graph_weights_come_from_the_seed() -> None:
    key = LayerKey.parse(KEYS[7])
    assert key_model(key, 5).SerializeToString() == key_model(key, 5).SerializeToString()
    assert key_model(key, 5).SerializeToString() != key_model(key, 6).SerializeToString()


def test_large_layers_wrap_the_random_pool() -> None:
    key = LayerKey("head", "v2", 320, 7, 1280, act="relu", num_classes=1000)  # 1.7M weights
    model = key_model(key)
    weights = {t.name: onnx.numpy_helper.to_array(t) for t in model.graph.initializer}
    assert weights["classifier.weight"].shape == (1000, 1280)
    assert (
        np.isfinite(weights["classifier.weight"]).all() and weights["classifier.weight"].std() > 0
    )


def test_empty_model_costs_nothing_per_element() -> None:
    model = empty_model(3, 16)
    onnx.checker.check_model(model, full_check=True)
    x = np.ones((1, 3, 16, 16), dtype=np.float32)
    assert run_onnx(model, x).tolist() == [1, 3, 16, 16]
    assert [n.op_type for n in model.graph.node] == ["Shape"]


@pytest.mark.parametrize(
    "build, message",
    [
        (lambda: empty_model(0, 8), "must be >= 1"),
        (lambda: key_model(LayerKey("block", "mb", 8, 8, 8)), "unknown part/op block/mb"),
        (
            lambda: key_model(LayerKey("head", "v9", 8, 4, 8, num_classes=3)),
            "unknown part/op head/v9",
        ),
        (lambda: key_model(LayerKey("block", "conv", 8, 8, 8, act="gelu")), "activation must be"),
        (
            lambda: key_model(
                LayerKey("block", "ds", 8, 8, 8, mid_chs=8, se_chs=2, se_gate="tanh")
            ),
            "SE gate must be",
        ),
    ],
)
def test_bad_keys_are_one_line_value_errors(build, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        build()

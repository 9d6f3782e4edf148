"""TFLite export: the flatbuffer reads back with the schema's own reader, and the LiteRT
interpreter computes what torch computes (eval mode) for every reference network and
random networks of both search spaces."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import tflite
import torch
from ai_edge_litert.interpreter import Interpreter
from nets import randomize
from torch import nn

from hwnas.common.errors import HwnasError
from hwnas.space import REFERENCE_NAMES, build, export_tflite, get_space, reference
from hwnas.space.spec import ACTIVATIONS
from hwnas.space.tflite_export import network_tflite, same_matches_torch
from hwnas.space.tflite_schema import FLOAT32, Op, TfliteWriter
from tests.space.test_build import random_arch

RES = 64  # small: the padding cases (even sizes at stride 2, odd sizes) all occur
TOL = 1e-4  # max |tflite - torch| / max(1, max |torch|); measured: ~1e-6
NUM_CLASSES = 37
RANDOM_PER_SPACE = 20


@pytest.fixture(autouse=True)
def _one_torch_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def run_tflite(data: bytes, x_nchw: np.ndarray) -> np.ndarray:
    interp = Interpreter(model_content=data, num_threads=1)
    interp.allocate_tensors()
    interp.set_tensor(interp.get_input_details()[0]["index"], x_nchw.transpose(0, 2, 3, 1).copy())
    interp.invoke()
    return interp.get_tensor(interp.get_output_details()[0]["index"])


def check_net(arch, seed: int, res: int = RES) -> None:  # noqa: ANN001
    model = randomize(build(arch, num_classes=NUM_CLASSES), seed)
    x = np.random.default_rng(seed).standard_normal((1, 3, res, res)).astype(np.float32)
    with torch.no_grad():
        want = model(torch.from_numpy(x)).numpy()
    got = run_tflite(network_tflite(model, res), x)
    assert got.shape == want.shape == (1, NUM_CLASSES)
    assert np.abs(want).std() > 0.05  # O(1) logits: a real comparison
    err = np.abs(got - want).max() / max(1.0, float(np.abs(want).max()))
    assert err < TOL, f"{arch.to_str()}: error {err:.2e}"


@pytest.mark.parametrize("name", REFERENCE_NAMES)
def test_reference_networks_equal_torch(name: str) -> None:
    check_net(reference(name), seed=1)


@pytest.mark.parametrize("space", ["mobilenetv3", "mnasnet"])
def test_random_networks_of_each_space_equal_torch(space: str) -> None:
    rng = np.random.default_rng(7)
    sp = get_space(space)
    for i in range(RANDOM_PER_SPACE):
        check_net(sp.sample_random(rng), seed=100 + i, res=int(rng.choice([32, 57, 64])))


OPTION_SEEDS = range(10)


def test_option_seeds_cover_every_activation_and_gate() -> None:
    archs = [random_arch(np.random.default_rng(s)) for s in OPTION_SEEDS]
    blocks = [b for a in archs for b in a.blocks()]
    assert {b.act for b in blocks} == set(ACTIVATIONS)
    assert {b.se_gate for b in blocks if b.se_ratio} == {"hsigmoid", "sigmoid"}
    assert {b.type for b in blocks} == {"conv", "ds", "ir"} and {a.head.kind for a in archs} == {"v2", "v3"}


@pytest.mark.parametrize("seed", OPTION_SEEDS)
def test_every_block_option_equals_torch(seed: int) -> None:
    """conv/ds/ir blocks, relu6 and swish, sigmoid gates, SE from the input width, stem stride 1."""
    check_net(random_arch(np.random.default_rng(seed)), seed=seed, res=45)


def test_file_is_written_atomically_and_reads_back(tmp_path: Path) -> None:
    arch = reference("mobilenetv3_small")
    path = export_tflite(arch, tmp_path / "sub" / "net.tflite", resolution=96, num_classes=10)
    data = path.read_bytes()
    assert [p.name for p in path.parent.iterdir()] == ["net.tflite"]
    model = tflite.Model.GetRootAs(data, 0)
    assert tflite.Model.ModelBufferHasIdentifier(data, 0) and model.Version() == 3
    sub = model.Subgraphs(0)
    ops = {model.OperatorCodes(sub.Operators(i).OpcodeIndex()).BuiltinCode()
           for i in range(sub.OperatorsLength())}
    b = tflite.BuiltinOperator
    assert ops == {b.CONV_2D, b.DEPTHWISE_CONV_2D, b.PAD, b.HARD_SWISH, b.MEAN, b.MUL, b.ADD,
                   b.FULLY_CONNECTED}
    inp, out = sub.Tensors(sub.Inputs(0)), sub.Tensors(sub.Outputs(0))
    assert inp.ShapeAsNumpy().tolist() == [1, 96, 96, 3] and inp.Type() == tflite.TensorType.FLOAT32
    assert out.ShapeAsNumpy().tolist() == [1, 10] and out.Name() == b"output"
    # constant data is 16-byte aligned in the file (schema: force_align 16)
    for i in range(1, model.BuffersLength()):
        buf = model.Buffers(i)
        if buf.DataLength():
            assert (buf._tab.Vector(buf._tab.Offset(4))) % 16 == 0
    Interpreter(model_path=str(path)).allocate_tensors()


def test_options_read_back_with_the_schema_reader() -> None:
    """Field slots checked against the generated reader: a stride-2 depthwise with fused ReLU6."""
    from hwnas.space.tflite_export import LayerGraph

    g = LayerGraph(8, 7)
    y = g.conv(g.input, np.ones((8, 1, 3, 3), np.float32), np.zeros(8, np.float32), "dw",
               stride=2, groups=8, act="relu6")
    model = tflite.Model.GetRootAs(g.serialize(y, "dw"), 0)
    op = model.Subgraphs(0).Operators(0)
    assert model.OperatorCodes(op.OpcodeIndex()).BuiltinCode() == tflite.BuiltinOperator.DEPTHWISE_CONV_2D
    assert op.BuiltinOptionsType() == tflite.BuiltinOptions.DepthwiseConv2DOptions
    opts = tflite.DepthwiseConv2DOptions()
    opts.Init(op.BuiltinOptions().Bytes, op.BuiltinOptions().Pos)
    assert (opts.Padding(), opts.StrideW(), opts.StrideH(), opts.DepthMultiplier()) == (
        tflite.Padding.SAME, 2, 2, 1)
    assert opts.FusedActivationFunction() == tflite.ActivationFunctionType.RELU6
    weight = model.Subgraphs(0).Tensors(op.Inputs(1))
    assert weight.ShapeAsNumpy().tolist() == [1, 3, 3, 8]


def test_writer_codes_match_the_schema() -> None:
    for name in ("ADD", "CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED", "LOGISTIC", "MUL",
                 "RELU", "RELU6", "PAD", "MEAN", "SHAPE", "HARD_SWISH"):
        assert getattr(Op, name) == getattr(tflite.BuiltinOperator, name)
    assert FLOAT32 == tflite.TensorType.FLOAT32
    with pytest.raises(TypeError, match="float32 or int32"):
        TfliteWriter().const(np.zeros(2, np.float64), "x")


def test_padding_rule() -> None:
    # torch pads k//2 both sides; SAME pads (k-2)//2 before at stride 2 on even sizes
    assert not same_matches_torch(112, 3, 2) and not same_matches_torch(112, 5, 2)
    assert same_matches_torch(113, 3, 2) and same_matches_torch(7, 5, 2)
    assert all(same_matches_torch(n, k, 1) for n in (1, 7, 8) for k in (1, 3, 5, 7))


def test_refuses_a_model_it_cannot_write(tmp_path: Path) -> None:
    with pytest.raises(HwnasError, match="built by hwnas.space.build"):
        export_tflite(reference("mobilenetv2"), tmp_path / "x.tflite", model=nn.Linear(2, 2))
    assert not list(tmp_path.iterdir())

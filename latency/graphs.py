"""ONNX graphs of single layers, built from their latency keys with ``onnx.helper``.

:func:`key_model` turns a :class:`~hwnas.latency.keys.LayerKey` into the
graph of that layer alone, computing what ``hwnas.space.build`` computes for
it in eval mode, with the node types ``torch.onnx.export`` writes for the
whole network (``hwnas.space.export_onnx``), so that onnxruntime fuses and
runs a layer the same way in both. BatchNorm is folded into the conv's bias,
as the exporter does in eval mode. Weights are random (He-normal scale, so
activations stay O(1)) from an explicit seed. Building and serializing a
block's graph takes ~0.3-0.5 ms (a head's, with its 1-2M weights, ~2-3 ms):
hundreds of times faster than exporting the torch module (~250 ms).

Node names and initializer names follow the torch module's parameter names
(``conv_pw.weight``; a folded BN's shift is ``bn1.bias``) so tests can load
the same weights into torch::

    >>> m = key_model(LayerKey.parse("ir_k3_s1_m96_c16_nre_skip|16x8x8"))
    >>> [n.op_type for n in m.graph.node]
    ['Conv', 'Relu', 'Conv', 'Relu', 'Conv', 'Add']
"""

from __future__ import annotations

import math

import numpy as np
import onnx
from onnx import TensorProto, helper

from hwnas.common.errors import HwnasError

from .keys import LayerKey

# Same opset as hwnas.space.export_onnx (HardSwish/HardSigmoid are native from 14).
OPSET = 17
IR_VERSION = 8  # the IR that goes with opset 17 (onnx 1.12 in onnx.helper.VERSION_TABLE): older runtimes load it
INPUT = "input"
OUTPUT = "output"
BIAS_STD = 0.1  # spread of the folded BN shifts; any value works, nonzero checks the wiring
HSIGMOID_ALPHA = 1.0 / 6.0  # torch Hardsigmoid: relu6(x + 3) / 6 = clip(x / 6 + 0.5, 0, 1)
RELU6_MAX = 6.0
# One pool of normal draws per seed, sliced for every tensor: building a graph
# is then a copy, not millions of fresh draws (a v2 head holds ~1.6M weights).
_POOL_SIZE = 1 << 21
_pools: dict[int, np.ndarray] = {}


def _pool(seed: int) -> np.ndarray:
    pool = _pools.get(seed)
    if pool is None:
        pool = np.random.default_rng(seed).standard_normal(_POOL_SIZE, dtype=np.float32)
        if len(_pools) >= 8:
            _pools.clear()
        _pools[seed] = pool
    return pool


class _Builder:
    """Accumulates nodes and initializers of one graph."""

    def __init__(self, seed: int) -> None:
        self.model = onnx.ModelProto()
        self.graph = self.model.graph  # built in place: no copy of the weights at the end
        self.nodes: list[onnx.NodeProto] = []
        self._pool = _pool(seed)
        self._offset = 0

    def _draw(self, shape: tuple[int, ...], std: float) -> np.ndarray:
        n = math.prod(shape)
        start = self._offset % _POOL_SIZE
        if start + n <= _POOL_SIZE:
            flat = self._pool[start : start + n]
        else:  # wrap around the pool (only tensors larger than what is left)
            flat = np.resize(np.roll(self._pool, -start), n)
        self._offset += n + 1  # +1: consecutive tensors never start on the same draw
        return (flat * np.float32(std)).reshape(shape)

    def _init(self, name: str, array: np.ndarray) -> str:
        # Filled in place: make_graph(initializer=...) would copy every weight once more.
        t = self.graph.initializer.add()
        t.name = name
        t.data_type = TensorProto.FLOAT
        t.dims.extend(array.shape)
        t.raw_data = np.ascontiguousarray(array, dtype="<f4").tobytes()
        return name

    def node(self, op: str, inputs: list[str], name: str, **attrs: object) -> str:
        out = f"{name}_out"
        self.nodes.append(helper.make_node(op, inputs, [out], name=name, **attrs))
        return out

    def conv(
        self,
        x: str,
        name: str,
        bias: str,
        cin: int,
        cout: int,
        k: int = 1,
        stride: int = 1,
        groups: int = 1,
    ) -> str:
        """KxK conv with bias, padding ``k // 2`` (torch's ``_conv``)."""
        fan_in = cin // groups * k * k
        w = self._init(
            f"{name}.weight", self._draw((cout, cin // groups, k, k), math.sqrt(2.0 / fan_in))
        )
        b = self._init(bias, self._draw((cout,), BIAS_STD))
        p = k // 2
        return self.node(
            "Conv",
            [x, w, b],
            name,
            kernel_shape=[k, k],
            strides=[stride, stride],
            pads=[p, p, p, p],
            dilations=[1, 1],
            group=groups,
        )

    def act(self, x: str, name: str, act: str) -> str:
        """Activation as the exporter writes it (SiLU is Sigmoid then Mul; ReLU6 is Clip)."""
        if act == "relu":
            return self.node("Relu", [x], name)
        if act == "hswish":
            return self.node("HardSwish", [x], name)
        if act == "relu6":
            lo = self._init(f"{name}.min", np.array(0.0, dtype=np.float32))
            hi = self._init(f"{name}.max", np.array(RELU6_MAX, dtype=np.float32))
            return self.node("Clip", [x, lo, hi], name)
        if act == "swish":
            s = self.node("Sigmoid", [x], f"{name}.sigmoid")
            return self.node("Mul", [x, s], name)
        raise HwnasError(f"activation must be relu, relu6, hswish or swish, got {act!r}")

    def se(self, x: str, chs: int, rd: int, gate: str) -> str:
        """Squeeze-excitation: mean, 1x1 reduce + ReLU, 1x1 expand + gate, rescale."""
        s = self.node("ReduceMean", [x], "se.mean", axes=[2, 3], keepdims=1)
        s = self.conv(s, "se.conv_reduce", "se.conv_reduce.bias", chs, rd)
        s = self.node("Relu", [s], "se.act")
        s = self.conv(s, "se.conv_expand", "se.conv_expand.bias", rd, chs)
        if gate == "hsigmoid":
            s = self.node("HardSigmoid", [s], "se.gate", alpha=HSIGMOID_ALPHA)
        elif gate == "sigmoid":
            s = self.node("Sigmoid", [s], "se.gate")
        else:
            raise HwnasError(f"SE gate must be hsigmoid or sigmoid, got {gate!r}")
        return self.node("Mul", [x, s], "se.mul")

    def gemm(self, x: str, name: str, cin: int, cout: int) -> str:
        w = self._init(f"{name}.weight", self._draw((cout, cin), math.sqrt(1.0 / cin)))
        b = self._init(f"{name}.bias", self._draw((cout,), BIAS_STD))
        return self.node("Gemm", [x, w, b], name, alpha=1.0, beta=1.0, transB=1)


def _layer(g: _Builder, key: LayerKey) -> tuple[str, list[int]]:
    """Add the nodes of ``key``; return the output name and shape."""
    x = INPUT
    if key.part == "stem" or (key.part == "block" and key.op == "conv"):
        y = g.conv(x, "conv", "bn1.bias", key.in_chs, key.out_chs, key.kernel, key.stride)
        y = g.act(y, "act1", key.act)
    elif key.part == "block" and key.op in ("ds", "ir"):
        mid = key.in_chs
        y = x
        if key.op == "ir":
            mid = key.mid_chs
            y = g.conv(y, "conv_pw", "bn1.bias", key.in_chs, mid)
            y = g.act(y, "act1", key.act)
        bn, act = ("bn1", "act1") if key.op == "ds" else ("bn2", "act2")
        y = g.conv(y, "conv_dw", f"{bn}.bias", mid, mid, key.kernel, key.stride, groups=mid)
        y = g.act(y, act, key.act)
        if key.se_chs:
            y = g.se(y, mid, key.se_chs, key.se_gate)
        if key.op == "ir":
            y = g.conv(y, "conv_pwl", "bn3.bias", mid, key.out_chs)
        else:
            y = g.conv(y, "conv_pw", "bn2.bias", mid, key.out_chs)
    elif key.part == "head" and key.op in ("v2", "v3"):
        y = g.conv(x, "conv_head", "bn.bias", key.in_chs, key.out_chs)
        y = g.act(y, "act1", key.act)
        y = g.node("GlobalAveragePool", [y], "pool")
        feats = key.out_chs
        if key.op == "v3":
            y = g.conv(y, "conv_hidden", "conv_hidden.bias", key.out_chs, key.features)
            y = g.act(y, "act2", key.act)
            feats = key.features
        y = g.node("Flatten", [y], "flatten", axis=1)
        y = g.gemm(y, "classifier", feats, key.num_classes)
        return y, [1, key.num_classes]
    else:
        raise HwnasError(
            f"cannot build a graph for layer {key}: unknown part/op {key.part}/{key.op}"
        )
    if key.skip and key.part == "block":
        y = g.node("Add", [y, x], "skip")
    return y, [1, key.out_chs, key.out_res, key.out_res]


def _model(
    g: _Builder,
    in_shape: list[int],
    out: str,
    out_shape: list[int],
    name: str,
    out_type: int = TensorProto.FLOAT,
) -> onnx.ModelProto:
    for node in g.nodes:  # the last layer writes the graph output itself (no trailing Identity)
        node.output[:] = [OUTPUT if o == out else o for o in node.output]
    graph = g.graph
    graph.name = name
    graph.node.extend(g.nodes)
    graph.input.append(helper.make_tensor_value_info(INPUT, TensorProto.FLOAT, in_shape))
    graph.output.append(helper.make_tensor_value_info(OUTPUT, out_type, out_shape))
    model = g.model
    model.ir_version = IR_VERSION
    model.producer_name = "hwnas.latency.graphs"
    model.opset_import.append(helper.make_opsetid("", OPSET))
    return model


_OPS = {"stem": ("conv",), "block": ("conv", "ds", "ir"), "head": ("v2", "v3")}
_ACTS = ("relu", "relu6", "hswish", "swish")
_GATES = ("hsigmoid", "sigmoid")


def check_key(key: LayerKey) -> None:
    """Raise ``ValueError`` unless :func:`key_model` can build ``key``."""
    if key.op not in _OPS.get(key.part, ()):
        raise HwnasError(
            f"cannot build a graph for layer {key}: unknown part/op {key.part}/{key.op}"
        )
    if key.act not in _ACTS:
        raise HwnasError(f"activation must be relu, relu6, hswish or swish, got {key.act!r}")
    if key.se_chs and key.se_gate not in _GATES:
        raise HwnasError(f"SE gate must be hsigmoid or sigmoid, got {key.se_gate!r}")


def key_model(key: LayerKey, seed: int = 0) -> onnx.ModelProto:
    """The ONNX graph of the layer ``key`` alone: input ``[1, C, H, W]`` float32.

    Raises:
        ValueError: the key names a layer kind this module cannot build.
    """
    check_key(key)
    g = _Builder(seed)
    out, shape = _layer(g, key)
    return _model(g, [1, key.in_chs, key.res, key.res], out, shape, str(key))


def empty_model(in_chs: int, res: int) -> onnx.ModelProto:
    """A graph that does no work on an input ``[1, in_chs, res, res]``: the per-call overhead.

    Its only output is the input's shape (4 int64s), which onnxruntime folds to
    a constant, so a run costs the call itself and nothing that grows with the
    input (an ``Identity`` would copy the whole tensor).
    """
    if in_chs < 1 or res < 1:
        raise HwnasError(f"input channels and resolution must be >= 1, got {in_chs} and {res}")
    g = _Builder(0)
    out = g.node("Shape", [INPUT], "shape")
    return _model(
        g,
        [1, in_chs, res, res],
        out,
        [4],
        f"empty|{in_chs}x{res}x{res}",
        out_type=TensorProto.INT64,
    )

"""TFLite (LiteRT) models of single layers, built from their latency keys.

The ``.tflite`` counterpart of :mod:`hwnas.latency.graphs`: :func:`key_tflite`
is the layer of a :class:`~hwnas.latency.keys.LayerKey` alone, written with
the same operators :func:`hwnas.space.export_tflite` writes for the whole
network (``hwnas.space.tflite_export.LayerGraph``: folded BN, fused ReLU/ReLU6,
``HARD_SWISH``, SE as ``MEAN`` + two 1x1 convs + gate + ``MUL``, ``PAD`` where
TFLite's ``SAME`` differs from torch's padding, ``ADD``, ``FULLY_CONNECTED``),
so the interpreter and ``benchmark_model`` run a layer the way they run it in
the network. The weights are those of :func:`hwnas.latency.graphs.key_model`
with the same seed (read from its initializers, transposed to NHWC layouts),
so a key's ONNX and TFLite models compute the same function.

    >>> data = key_tflite(LayerKey.parse("ir_k3_s1_m96_c16_nre_skip|16x8x8"))
    >>> data[4:8]
    b'TFL3'
"""

from __future__ import annotations

import numpy as np
from onnx import numpy_helper

from hwnas.common.errors import HwnasError
from hwnas.space.tflite_export import LayerGraph

from .graphs import check_key, key_model
from .keys import LayerKey


def _weights(key: LayerKey, seed: int) -> dict[str, np.ndarray]:
    return {t.name: numpy_helper.to_array(t) for t in key_model(key, seed).graph.initializer}


def key_tflite(key: LayerKey, seed: int = 0) -> bytes:
    """The ``.tflite`` bytes of layer ``key`` alone: input NHWC ``[1, H, W, C]`` float32.

    Raises:
        ValueError: the key names a layer kind this module cannot build.
    """
    check_key(key)
    p = _weights(key, seed)
    g = LayerGraph(key.in_chs, key.res)

    def conv(x: int, name: str, bias: str, stride: int = 1, groups: int = 1,
             act: str | None = None) -> int:
        return g.conv(x, p[f"{name}.weight"], p[bias], name, stride=stride, groups=groups, act=act)

    x = g.input
    if key.part == "stem" or (key.part == "block" and key.op == "conv"):
        y = conv(x, "conv", "bn1.bias", key.stride, act=key.act)
    elif key.part == "block":  # ds, ir (check_key refused anything else)
        y, mid = x, key.in_chs
        if key.op == "ir":
            mid = key.mid_chs
            y = conv(y, "conv_pw", "bn1.bias", act=key.act)
        bn = "bn1" if key.op == "ds" else "bn2"
        y = conv(y, "conv_dw", f"{bn}.bias", key.stride, groups=mid, act=key.act)
        if key.se_chs:
            reduce = (p["se.conv_reduce.weight"], p["se.conv_reduce.bias"])
            expand = (p["se.conv_expand.weight"], p["se.conv_expand.bias"])
            y = g.se(y, reduce, expand, key.se_gate)
        pwl, bn = ("conv_pwl", "bn3") if key.op == "ir" else ("conv_pw", "bn2")
        y = conv(y, pwl, f"{bn}.bias")
    else:  # head v2 / v3
        y = conv(x, "conv_head", "bn.bias", act=key.act)
        y = g.mean(y, "pool")
        if key.op == "v3":
            y = conv(y, "conv_hidden", "conv_hidden.bias", act=key.act)
        y = g.fc(y, p["classifier.weight"], p["classifier.bias"])
    if key.skip and key.part == "block":
        y = g.add(y, x)
    return g.serialize(y, str(key))


def empty_tflite(in_chs: int, res: int) -> bytes:
    """A model that does no work on an input ``[1, res, res, in_chs]``: the per-call overhead.

    Its one op is ``SHAPE`` (the input's 4 dimensions as int32), the
    counterpart of :func:`hwnas.latency.graphs.empty_model`: a call costs the
    interpreter's dispatch, nothing that grows with the input.
    """
    if in_chs < 1 or res < 1:
        raise HwnasError(f"input channels and resolution must be >= 1, got {in_chs} and {res}")
    g = LayerGraph(in_chs, res)
    return g.serialize(g.shape_op(), f"empty|{in_chs}x{res}x{res}")

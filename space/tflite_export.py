"""Export an :class:`Arch` (and optionally trained weights) as a TFLite / LiteRT model.

The file is what TensorFlow Lite's converter writes for such a network,
float32, batch 1, NHWC input ``[1, H, W, 3]``, logits ``[1, classes]``:

- BatchNorm folded into the conv's weights and bias (eval mode);
- ``CONV_2D`` (weights OHWI) and ``DEPTHWISE_CONV_2D`` (weights ``1HW(C*1)``)
  with ReLU/ReLU6 fused into them; hard-swish as ``HARD_SWISH``, swish as
  ``LOGISTIC`` + ``MUL``;
- torch pads ``k // 2`` on every side, TFLite's ``SAME`` pads the extra
  pixel at the end: they differ for stride 2 on even sizes (SAME pads 0
  before, 1 after for k=3), and there an explicit ``PAD`` + ``VALID`` conv is
  written, as the converter does for a ``ZeroPadding2D`` + ``valid`` conv;
- squeeze-excite: ``MEAN`` (keep_dims) over H, W, two 1x1 ``CONV_2D``; the
  hard-sigmoid gate ``relu6(x + 3) / 6`` is the expand conv with ``+3`` in
  its bias and ReLU6 fused, then ``MUL`` by 1/6 (what the converter makes of
  Keras MobileNetV3's ``ReLU(6.)(x + 3.) * (1. / 6.)``: the add folds into
  the conv bias); sigmoid is ``LOGISTIC``; the rescale is a broadcast ``MUL``;
- residuals ``ADD``; the head's pool ``MEAN`` (keep_dims), the classifier
  ``FULLY_CONNECTED`` straight on ``[1, 1, 1, C]`` (it flattens).

:class:`LayerGraph` emits these ops from torch-layout weights; the whole
network (:func:`export_tflite`) and one layer of the latency table
(``hwnas.latency.tflite_graphs``) are both written with it.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
from torch import nn

from hwnas.common.atomic import atomic_write_bytes
from hwnas.common.errors import HwnasError

from .build import ConvBnAct, DepthwiseSeparable, Head, InvertedResidual, Net, SqueezeExcite, build
from .spec import Arch, check_resolution
from .tflite_schema import (
    INT32,
    Act,
    Op,
    Padding,
    TfliteWriter,
    add_options,
    conv_options,
    depthwise_options,
    fully_connected_options,
    mul_options,
    pad_options,
    reducer_options,
)

HSIGMOID_SHIFT = 3.0  # torch Hardsigmoid: relu6(x + 3) / 6
HSIGMOID_SCALE = 1.0 / 6.0
_FUSED = {"relu": Act.RELU, "relu6": Act.RELU6}  # fused into the op before them
ACTS = ("relu", "relu6", "hswish", "swish")
GATES = ("hsigmoid", "sigmoid")


def same_matches_torch(size: int, kernel: int, stride: int) -> bool:
    """Whether TFLite ``SAME`` padding equals torch's symmetric ``k // 2`` here.

    >>> same_matches_torch(112, 3, 2), same_matches_torch(7, 3, 2), same_matches_torch(56, 5, 1)
    (False, True, True)
    """
    pad = kernel // 2
    out_torch = (size + 2 * pad - kernel) // stride + 1
    out_same = -(-size // stride)
    total = max((out_same - 1) * stride + kernel - size, 0)
    return out_torch == out_same and total // 2 == pad


class LayerGraph:
    """A TFLite graph under construction, fed from torch-layout (OIHW) weights.

    Args:
        in_chs, res: the NHWC input ``[1, res, res, in_chs]``.
    """

    def __init__(self, in_chs: int, res: int) -> None:
        self.w = TfliteWriter()
        self.input = self.w.tensor([1, res, res, in_chs], "input")
        self._scalars: dict[float, int] = {}

    def shape(self, t: int) -> tuple[int, ...]:
        return self.w.shape(t)

    def _op(self, code: int, inputs: list[int], shape: tuple[int, ...], name: str,
            options: tuple[int, list] | None = None) -> int:
        out = self.w.tensor(shape, name)
        self.w.operator(code, inputs, [out], options)
        return out

    def _scalar(self, value: float) -> int:
        if value not in self._scalars:
            self._scalars[value] = self.w.const(np.array([value], dtype=np.float32), f"const_{value:g}")
        return self._scalars[value]

    def conv(self, x: int, weight: np.ndarray, bias: np.ndarray, name: str, stride: int = 1,
             groups: int = 1, act: str | None = None) -> int:
        """Conv (or depthwise conv when ``groups`` is the channel count) of torch ``weight`` OIHW."""
        _, h, w, cin = self.shape(x)
        cout, cin_g, k, _ = weight.shape
        if groups == 1 and cin_g == cin:
            kernel = self.w.const(np.ascontiguousarray(weight.transpose(0, 2, 3, 1)), f"{name}.weight")
            code, make = Op.CONV_2D, conv_options
        elif groups == cin == cout and cin_g == 1:
            kernel = self.w.const(np.ascontiguousarray(weight.transpose(1, 2, 3, 0)), f"{name}.weight")
            code, make = Op.DEPTHWISE_CONV_2D, depthwise_options
        else:
            raise HwnasError(f"{name}: only dense or depthwise convs export, got groups={groups} "
                             f"for {cin}->{cout} channels")
        padding = Padding.SAME
        if not (same_matches_torch(h, k, stride) and same_matches_torch(w, k, stride)):
            p = k // 2
            pads = self.w.const(np.array([[0, 0], [p, p], [p, p], [0, 0]], dtype=np.int32), f"{name}.pads")
            x = self._op(Op.PAD, [x, pads], (1, h + 2 * p, w + 2 * p, cin), f"{name}.pad", pad_options())
            padding = Padding.VALID
        b = self.w.const(np.asarray(bias, dtype=np.float32), f"{name}.bias")
        fused = _FUSED.get(act or "", Act.NONE)
        ho, wo = (h + 2 * (k // 2) - k) // stride + 1, (w + 2 * (k // 2) - k) // stride + 1
        y = self._op(code, [x, kernel, b], (1, ho, wo, cout), name, make(stride, fused, padding))
        return self.act(y, act, f"{name}.act") if act in ("hswish", "swish") else y

    def act(self, x: int, act: str | None, name: str) -> int:
        """An activation as its own op (ReLU/ReLU6 only when there is no op to fuse into)."""
        shape = self.shape(x)
        if act is None:
            return x
        if act == "hswish":
            return self._op(Op.HARD_SWISH, [x], shape, name)
        if act == "swish":
            s = self._op(Op.LOGISTIC, [x], shape, f"{name}.sigmoid")
            return self._op(Op.MUL, [x, s], shape, name, mul_options())
        if act == "relu":
            return self._op(Op.RELU, [x], shape, name)
        if act == "relu6":
            return self._op(Op.RELU6, [x], shape, name)
        raise HwnasError(f"activation must be one of {', '.join(ACTS)}, got {act!r}")

    def mean(self, x: int, name: str) -> int:
        """Global average pool over H, W, keeping them: ``[1, 1, 1, C]``."""
        axes = self.w.const(np.array([1, 2], dtype=np.int32), f"{name}.axes")
        c = self.shape(x)[3]
        return self._op(Op.MEAN, [x, axes], (1, 1, 1, c), name, reducer_options(True))

    def se(self, x: int, reduce: tuple[np.ndarray, np.ndarray], expand: tuple[np.ndarray, np.ndarray],
           gate: str, name: str = "se") -> int:
        """Squeeze-excite from the (weight, bias) of its two 1x1 convs."""
        s = self.mean(x, f"{name}.mean")
        s = self.conv(s, *reduce, f"{name}.conv_reduce", act="relu")
        if gate == "hsigmoid":
            s = self.conv(s, expand[0], expand[1] + np.float32(HSIGMOID_SHIFT),
                          f"{name}.conv_expand", act="relu6")
            s = self._op(Op.MUL, [s, self._scalar(HSIGMOID_SCALE)], self.shape(s), f"{name}.gate",
                         mul_options())
        elif gate == "sigmoid":
            s = self.conv(s, *expand, f"{name}.conv_expand")
            s = self._op(Op.LOGISTIC, [s], self.shape(s), f"{name}.gate")
        else:
            raise HwnasError(f"SE gate must be one of {', '.join(GATES)}, got {gate!r}")
        return self._op(Op.MUL, [x, s], self.shape(x), f"{name}.mul", mul_options())

    def add(self, a: int, b: int, name: str = "skip") -> int:
        return self._op(Op.ADD, [a, b], self.shape(a), name, add_options())

    def fc(self, x: int, weight: np.ndarray, bias: np.ndarray, name: str = "classifier") -> int:
        """``FULLY_CONNECTED`` with torch ``weight`` [out, in] (same layout); flattens ``x``."""
        cout = weight.shape[0]
        wt = self.w.const(np.ascontiguousarray(weight, dtype=np.float32), f"{name}.weight")
        b = self.w.const(np.asarray(bias, dtype=np.float32), f"{name}.bias")
        return self._op(Op.FULLY_CONNECTED, [x, wt, b], (1, cout), name, fully_connected_options())

    def shape_op(self) -> int:
        """The input's shape as an int32 vector (the empty graph: a call that does no work)."""
        from .tflite_schema import shape_options

        out = self.w.tensor([4], "shape", dtype=INT32)
        self.w.operator(Op.SHAPE, [self.input], [out], shape_options())
        return out

    def serialize(self, out: int, name: str) -> bytes:
        self.w.tensors[out].name = "output"
        return self.w.serialize([self.input], [out], name, description=f"hwnas: {name}")


# --- whole networks from a torch module ------------------------------------------------------

_ACT_MODULES = {nn.ReLU: "relu", nn.ReLU6: "relu6", nn.Hardswish: "hswish", nn.SiLU: "swish"}
_GATE_MODULES = {nn.Hardsigmoid: "hsigmoid", nn.Sigmoid: "sigmoid"}


def _act_name(m: nn.Module) -> str | None:
    if isinstance(m, nn.Identity):
        return None
    for cls, name in _ACT_MODULES.items():
        if type(m) is cls:
            return name
    raise HwnasError(f"cannot export activation {type(m).__name__} to TFLite")


def _np(t) -> np.ndarray:  # noqa: ANN001
    return t.detach().cpu().numpy().astype(np.float32)


def _folded(conv: nn.Conv2d, bn: nn.BatchNorm2d | None) -> tuple[np.ndarray, np.ndarray]:
    """``conv`` with ``bn`` (eval statistics) folded in: (weight OIHW, bias)."""
    w = conv.weight.detach().double()
    b = conv.bias.detach().double() if conv.bias is not None else w.new_zeros(w.shape[0])
    if bn is not None:
        scale = bn.weight.detach().double() / (bn.running_var.detach().double() + bn.eps).sqrt()
        w = w * scale[:, None, None, None]
        b = (b - bn.running_mean.detach().double()) * scale + bn.bias.detach().double()
    return _np(w), _np(b)


def _conv(g: LayerGraph, x: int, conv: nn.Conv2d, bn: nn.BatchNorm2d | None, name: str,
          act: nn.Module | None = None) -> int:
    w, b = _folded(conv, bn)
    return g.conv(x, w, b, name, stride=conv.stride[0], groups=conv.groups,
                  act=_act_name(act) if act is not None else None)


def _se(g: LayerGraph, x: int, se: nn.Module, name: str) -> int:
    if isinstance(se, nn.Identity):
        return x
    if not isinstance(se, SqueezeExcite):
        raise HwnasError(f"{name}: cannot export {type(se).__name__} to TFLite")
    gate = next((n for cls, n in _GATE_MODULES.items() if type(se.gate) is cls), None)
    if gate is None:
        raise HwnasError(f"{name}: cannot export SE gate {type(se.gate).__name__} to TFLite")
    return g.se(x, _folded(se.conv_reduce, None), _folded(se.conv_expand, None), gate, name)


def _block(g: LayerGraph, x: int, m: nn.Module, name: str) -> int:
    if isinstance(m, ConvBnAct):
        y = _conv(g, x, m.conv, m.bn1, f"{name}.conv", m.act1)
    elif isinstance(m, DepthwiseSeparable):
        y = _conv(g, x, m.conv_dw, m.bn1, f"{name}.conv_dw", m.act1)
        y = _se(g, y, m.se, f"{name}.se")
        y = _conv(g, y, m.conv_pw, m.bn2, f"{name}.conv_pw")
    elif isinstance(m, InvertedResidual):
        y = _conv(g, x, m.conv_pw, m.bn1, f"{name}.conv_pw", m.act1)
        y = _conv(g, y, m.conv_dw, m.bn2, f"{name}.conv_dw", m.act2)
        y = _se(g, y, m.se, f"{name}.se")
        y = _conv(g, y, m.conv_pwl, m.bn3, f"{name}.conv_pwl")
    else:
        raise HwnasError(f"{name}: cannot export {type(m).__name__} to TFLite")
    return g.add(y, x, f"{name}.skip") if m.has_skip else y


def _head(g: LayerGraph, x: int, h: Head) -> int:
    y = _conv(g, x, h.conv_head, h.bn, "head.conv_head", h.act1)
    y = g.mean(y, "head.pool")
    if isinstance(h.conv_hidden, nn.Conv2d):
        y = _conv(g, y, h.conv_hidden, None, "head.conv_hidden", h.act2)
    return g.fc(y, _np(h.classifier.weight), _np(h.classifier.bias), "head.classifier")


def network_tflite(model: Net, resolution: int = 224) -> bytes:
    """The ``.tflite`` bytes of a built network (its eval-mode computation)."""
    check_resolution(resolution)
    in_chs = model.stem.conv.weight.shape[1]
    g = LayerGraph(in_chs, resolution)
    x = _conv(g, g.input, model.stem.conv, model.stem.bn1, "stem.conv", model.stem.act1)
    for i, stage in enumerate(model.blocks):
        for j, block in enumerate(stage):
            x = _block(g, x, block, f"blocks.{i}.{j}")
    out = _head(g, x, model.head)
    arch = getattr(model, "arch", None)
    return g.serialize(out, arch.to_str() if isinstance(arch, Arch) else "hwnas network")


def export_tflite(arch: Arch, path: str | os.PathLike, model: nn.Module | None = None,
                  resolution: int = 224, num_classes: int = 1000) -> Path:
    """Write ``arch`` (or the given trained ``model`` of it) as a ``.tflite`` file; returns the path.

    Random weights when ``model`` is None (a fresh :func:`~hwnas.space.build`).
    The input is NHWC ``[1, resolution, resolution, in_chs]`` float32, the
    output the logits ``[1, num_classes]``. Written atomically: a failed
    export leaves nothing behind.

        >>> from hwnas.space import reference
        >>> export_tflite(reference("mobilenetv3_large"), "mnv3.tflite")  # doctest: +SKIP
    """
    net = model if model is not None else build(arch, num_classes=num_classes)
    if not isinstance(net, Net):
        raise HwnasError(f"model must be a network built by hwnas.space.build, got {type(net).__name__}")
    data = network_tflite(net, resolution)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    return atomic_write_bytes(path, data)


__all__ = ["LayerGraph", "export_tflite", "network_tflite", "same_matches_torch"]

"""The three Pixel-1 sources the cost model is fitted to, read from ``latency/data``.

All Google Pixel 1, TFLite fp32, one big core (see ``latency/data/NOTICE``):

1. ProxylessNAS's per-layer table (72 layers, TFLite of 2018),
2. nn-Meter's block table (1,788 hard-swish blocks with and without SE,
   a newer TFLite): only the *ratios* of the SE and hard-swish costs to the
   cost of writing activations are taken from it,
3. Table 3 of the MobileNetV3 paper (9 whole networks, TFLite of 2019):
   the scale the target is calibrated to, with its Pixel-2 and Pixel-3
   columns for the ``pixel2``/``pixel3`` targets,
4. the TensorFlow slim MobileNetV2 README (20 whole networks, widths
   0.35-1.0 at 96-224 px, the TFLite of 2018): the only source here that
   varies the network's input size, so it identifies the cost that does not
   shrink with it.

Used by ``bench/fit_pixel.py``; the runtime package only reads the fitted
``pixel1_costmodel.json``.
"""

from __future__ import annotations

import csv
import re
from functools import cache
from importlib import resources

import numpy as np

from hwnas.common.errors import HwnasError
from hwnas.latency.costmodel import LayerFeatures, layer_features
from hwnas.latency.keys import LayerKey, layer_keys
from hwnas.space.references import reference
from hwnas.space.spec import Arch

LUT_FILE = "pixel1_proxylessnas_lut.csv"
NNMETER_FILE = "pixel1_nnmeter_cnn_lut.csv"
TABLE3_FILE = "mobilenetv3_table3_pixel.csv"
SLIM_FILE = "mobilenetv2_slim_pixel1.csv"
PHONE_COLUMNS = {"pixel1": "pixel1_ms", "pixel2": "pixel2_ms", "pixel3": "pixel3_ms"}
# ProxylessNAS-Mobile as released: its first block has no expand conv (the
# table's ``expand:1``), so it is a depthwise-separable block here.
PROXYLESS_FIRST_BLOCK = ("ir_r1_k3_s1_e1_c16_nr6", "ds_r1_k3_s1_c16_nr6_noskip")

_LUT_BLOCK = re.compile(
    r"expanded_conv-input:(\d+)x\d+x(\d+)-output:\d+x\d+x(\d+)-expand:(\d+)"
    r"-kernel:(\d+)-stride:(\d+)-idskip:(\d)"
)
_LUT_STEM = "Conv-input:224x224x3-output:112x112x32"
_LUT_HEAD = ("Conv_1-input:7x7x320-output:7x7x1280", "Logits-input:7x7x1280-output:1000")


def _rows(name: str) -> list[dict[str, str]]:
    with resources.files("hwnas.latency").joinpath("data", name).open(newline="") as fh:
        return list(csv.DictReader(fh))


def lut_layer_key(text: str) -> LayerKey:
    """The :class:`LayerKey` of a ProxylessNAS table key (ReLU6 throughout)."""
    if text == _LUT_STEM:
        return LayerKey("stem", "conv", 3, 224, 32, 3, 2, act="relu6")
    m = _LUT_BLOCK.fullmatch(text)
    if m is None:
        raise HwnasError(f"unrecognised ProxylessNAS table key {text!r}")
    res, cin, cout, exp, k, s, skip = (int(g) for g in m.groups())
    op = "ds" if exp == 1 else "ir"
    return LayerKey(
        "block", op, cin, res, cout, k, s, mid_chs=cin * exp, act="relu6", skip=bool(skip)
    )


@cache
def load_lut() -> dict[LayerKey, float]:
    """ProxylessNAS table as {key: mean ms}; ``Conv_1`` + ``Logits`` make the v2 head."""
    rows = {r["key"]: float(r["mean_ms"]) for r in _rows(LUT_FILE)}
    head = LayerKey("head", "v2", 320, 7, 1280, act="relu6", num_classes=1000)
    out = {lut_layer_key(k): v for k, v in rows.items() if k not in _LUT_HEAD}
    out[head] = sum(rows[k] for k in _LUT_HEAD)
    return out


def nnmeter_features(text: str) -> LayerFeatures:
    """Counts of an nn-Meter ``conv_...`` block, its 1x1-conv shortcut included."""
    t = text.split("_")
    if t[0] != "conv" or t[6:8] != ["hard", "swish"]:
        raise HwnasError(f"not an nn-Meter hard-swish block key: {text!r}")
    res, cin, cout, exp, s = (int(v) for v in t[1:6])
    k, se = int(t[8]), t[9] == "se"
    mid = cin * exp
    key = LayerKey(
        "block",
        "ir" if exp > 1 else "ds",
        cin,
        res,
        cout,
        k,
        s,
        mid_chs=mid,
        se_chs=mid // 4 if se else 0,
        act="hswish",
        skip=s == 1 and cin == cout,
    )
    f = layer_features(key)
    if cin != cout:  # (2x2 avg pool when s=2) + 1x1 conv shortcut + add
        o2 = key.out_res**2
        pool = cin * o2 if s == 2 else 0
        f = f + LayerFeatures(
            pw=cin * cout * o2 / 1e6, el=(2 * cout * o2 + pool) / 1e6, wt=cin * cout / 1e6
        )
    return f


@cache
def load_nnmeter() -> tuple[tuple[str, ...], np.ndarray]:
    rows = [r for r in _rows(NNMETER_FILE) if r["key"].startswith("conv_")]
    return tuple(r["key"] for r in rows), np.array([float(r["ms"]) for r in rows])


@cache
def load_table3(phone: str = "pixel1") -> tuple[tuple[str, float, float], ...]:
    """(network, width, ms on ``phone``) of MobileNetV3 Table 3 (pixel1, pixel2 or pixel3)."""
    col = PHONE_COLUMNS[phone]
    return tuple((r["model"], float(r["width"]), float(r[col])) for r in _rows(TABLE3_FILE))


@cache
def load_slim() -> tuple[tuple[float, int, float], ...]:
    """(width, resolution, Pixel-1 ms) of MobileNetV2 in the TF slim README."""
    return tuple(
        (float(r["width"]), int(r["resolution"]), float(r["pixel1_ms"])) for r in _rows(SLIM_FILE)
    )


def slim_arch(width: float) -> Arch:
    return reference("mobilenetv2", width)


def proxyless_as_released() -> Arch:
    """ProxylessNAS-Mobile with its expand-free first block (see ``PROXYLESS_FIRST_BLOCK``)."""
    text = reference("proxyless_mobile").to_str()
    old, new = PROXYLESS_FIRST_BLOCK
    if old not in text:
        raise HwnasError(f"proxyless_mobile reference changed: {old!r} not in {text!r}")
    return Arch.from_str(text.replace(old, new, 1)).with_name("proxyless_mobile_released")


def table3_arch(name: str, width: float) -> Arch:
    """The network Table 3 measured: the reference, ProxylessNAS-Mobile as released."""
    return (
        proxyless_as_released()
        if (name, width) == ("proxyless_mobile", 1.0)
        else reference(name, width)
    )


def network_features(arch: Arch, resolution: int = 224) -> LayerFeatures:
    return sum((layer_features(k) for k in layer_keys(arch, resolution)), LayerFeatures())

"""Fit the Pixel-1 cost model to the shipped measurements, and check it.

Three sources, all Google Pixel 1, TFLite fp32, one big core (see
``latency/data/NOTICE``):

1. ProxylessNAS's per-layer table (72 layers, TFLite of 2018),
2. nn-Meter's block table (1,788 hard-swish blocks with and without SE,
   a newer TFLite): only the *ratios* of the SE and hard-swish costs to the
   cost of writing activations are taken from it,
3. Table 3 of the MobileNetV3 paper (9 whole networks, TFLite of 2019):
   the scale the target is calibrated to.

The joint fit shares the compute coefficients (``c_pw``, ``c_dw``,
``c_conv``) between the 2018 table and the 2019 networks and gives each
runtime its own cost of activation traffic (``c_el``): the same phone ran
the same GEMM and depthwise kernels, while the runtimes moved activations
at different speeds (nn-Meter's still newer runtime has about the same
``c_pw``/``c_dw`` and a smaller ``c_el`` again; docs/latency.md).
"""

from __future__ import annotations

import csv
import re
from dataclasses import asdict, dataclass, replace
from functools import cache
from importlib import resources

import numpy as np
from scipy.stats import spearmanr

from hwnas.common.errors import HwnasError
from hwnas.space.references import reference
from hwnas.space.spec import Arch

from .costmodel import CostModel, LayerFeatures, effective_el, layer_features, nnls_relative
from .keys import LayerKey, layer_keys

LUT_FILE = "pixel1_proxylessnas_lut.csv"
NNMETER_FILE = "pixel1_nnmeter_cnn_lut.csv"
TABLE3_FILE = "mobilenetv3_table3_pixel.csv"
# ProxylessNAS-Mobile measured end to end with TFLite's benchmark tool on the
# same phone and runtime as the per-layer table (shared/data/latency/README.md).
PROXYLESS_E2E_MS = 80.7
# ProxylessNAS-Mobile as released: its first block has no expand conv (the
# table's ``expand:1``), so it is a depthwise-separable block here.
PROXYLESS_FIRST_BLOCK = ("ir_r1_k3_s1_e1_c16_nr6", "ds_r1_k3_s1_c16_nr6_noskip")
# Each Table-3 network weighs as much as one table layer in the joint fit.
TABLE3_WEIGHT = 1.0

_LUT_BLOCK = re.compile(
    r"expanded_conv-input:(\d+)x\d+x(\d+)-output:\d+x\d+x(\d+)-expand:(\d+)"
    r"-kernel:(\d+)-stride:(\d+)-idskip:(\d)"
)
_LUT_STEM = "Conv-input:224x224x3-output:112x112x32"
_LUT_HEAD = ("Conv_1-input:7x7x320-output:7x7x1280", "Logits-input:7x7x1280-output:1000")


# --- data ------------------------------------------------------------------
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
        f = f + LayerFeatures(pw=cin * cout * o2 / 1e6, el=(2 * cout * o2 + pool) / 1e6)
    return f


@cache
def load_nnmeter() -> tuple[tuple[str, ...], np.ndarray]:
    rows = [r for r in _rows(NNMETER_FILE) if r["key"].startswith("conv_")]
    return tuple(r["key"] for r in rows), np.array([float(r["ms"]) for r in rows])


@cache
def load_table3() -> tuple[tuple[str, float, float], ...]:
    """(network, width, Pixel-1 ms) of MobileNetV3 Table 3."""
    return tuple((r["model"], float(r["width"]), float(r["pixel1_ms"])) for r in _rows(TABLE3_FILE))


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


def network_features(arch: Arch) -> LayerFeatures:
    return sum((layer_features(k) for k in layer_keys(arch)), LayerFeatures())


# --- fits ------------------------------------------------------------------
@dataclass(frozen=True)
class ActivationFactors:
    """Hard-swish and SE priced in elements written, from nn-Meter."""

    k_hs: float
    k_se: float
    k_se0: float
    coef: dict[str, float]
    mean_abs_err: float
    max_abs_err: float


def fit_activation_factors() -> ActivationFactors:
    """Fit ``ms = c_pw pw + c_dw dw + c_el el + c_hs hs + c_se se_el + c_se0 se`` to nn-Meter."""
    keys, y = load_nnmeter()
    feats = [nnmeter_features(k) for k in keys]
    names = ("pw", "dw", "el", "hs", "se_el", "se")
    x = np.array([[getattr(f, n) for n in names] for f in feats])
    c = nnls_relative(x, y)
    err = x @ c / y - 1
    coef = dict(zip(names, map(float, c), strict=True))
    return ActivationFactors(
        coef["hs"] / coef["el"],
        coef["se_el"] / coef["el"],
        coef["se"] / coef["el"],
        coef,
        float(np.abs(err).mean()),
        float(np.abs(err).max()),
    )


@dataclass(frozen=True)
class PixelFit:
    """Both views of the fitted model and the data it was fitted to."""

    table3: CostModel  # the 2019 runtime of MobileNetV3 Table 3: the target
    lut: CostModel  # the 2018 runtime of the ProxylessNAS table
    factors: ActivationFactors
    networks: tuple[str, ...]  # Table-3 rows used (``name@width``)

    def coefficients(self) -> dict[str, float]:
        d = asdict(self.table3)
        d["c_el_lut"] = self.lut.c_el
        return d


def _design(
    lut: dict[LayerKey, float],
    nets: list[tuple[Arch, float]],
    fac: ActivationFactors,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    def row(f: LayerFeatures, is_lut: bool) -> list[float]:
        el = effective_el(f, fac.k_hs, fac.k_se, fac.k_se0)
        return [f.pw, f.dw, f.conv, el if is_lut else 0.0, 0.0 if is_lut else el]

    x = [row(layer_features(k), True) for k in lut] + [
        row(network_features(a), False) for a, _ in nets
    ]
    y = list(lut.values()) + [ms for _, ms in nets]
    w = [1.0] * len(lut) + [TABLE3_WEIGHT] * len(nets)
    return np.array(x), np.array(y), np.array(w)


def fit_pixel(
    exclude_networks: tuple[int, ...] = (),
    exclude_keys: frozenset[LayerKey] = frozenset(),
    factors: ActivationFactors | None = None,
) -> PixelFit:
    """Joint relative-error NNLS on the table layers and the Table-3 networks.

    Args:
        exclude_networks: Table-3 row indices to leave out (leave-one-out).
        exclude_keys: table layers to leave out (held-out checks).
        factors: nn-Meter factors, fitted when not given.
    """
    fac = factors or fit_activation_factors()
    lut = {k: v for k, v in load_lut().items() if k not in exclude_keys}
    rows = [r for i, r in enumerate(load_table3()) if i not in exclude_networks]
    nets = [(table3_arch(n, w), ms) for n, w, ms in rows]
    x, y, w = _design(lut, nets, fac)
    c_pw, c_dw, c_conv, c_el_lut, c_el_t3 = map(float, nnls_relative(x, y, w))
    t3 = CostModel(c_pw, c_dw, c_conv, c_el_t3, fac.k_hs, fac.k_se, fac.k_se0)
    return PixelFit(t3, replace(t3, c_el=c_el_lut), fac, tuple(f"{n}@{w:g}" for n, w, _ in rows))


def calibrated_table(fit: PixelFit) -> dict[LayerKey, float]:
    """Table layers carried to the Table-3 runtime: ``measured * M_2019(k) / M_2018(k)``.

    The measurement keeps what the model misses about that exact layer; the
    model's ratio moves it from the 2018 runtime to the 2019 one.
    """
    lut = load_lut()
    keys = list(lut)
    ratio = fit.table3.predict(keys) / fit.lut.predict(keys)
    return {k: lut[k] * float(r) for k, r in zip(keys, ratio, strict=True)}


def predict_network(arch: Arch, model: CostModel, table: dict[LayerKey, float]) -> float:
    """What the target predicts: table layers where they exist, the model elsewhere."""
    keys = layer_keys(arch)
    ms = model.predict(keys)
    return float(sum(table.get(k, m) for k, m in zip(keys, ms, strict=True)))


# --- checks ----------------------------------------------------------------
def table3_errors(fit: PixelFit | None = None) -> list[dict]:
    """Per Table-3 network: in-sample and leave-one-out relative errors of the target."""
    fit = fit or fit_pixel()
    table = calibrated_table(fit)
    out = []
    for i, (name, width, ms) in enumerate(load_table3()):
        loo = fit_pixel(exclude_networks=(i,), factors=fit.factors)
        arch = table3_arch(name, width)
        pred = predict_network(arch, fit.table3, table)
        pred_loo = predict_network(arch, loo.table3, calibrated_table(loo))
        out.append(
            {
                "network": name,
                "width": width,
                "measured_ms": ms,
                "fit_ms": pred,
                "fit_err": pred / ms - 1,
                "loo_ms": pred_loo,
                "loo_err": pred_loo / ms - 1,
            }
        )
    return out


def lut_positions() -> dict[tuple, list[LayerKey]]:
    """Table layers grouped by position: same input, output, stride and skip."""
    groups: dict[tuple, list[LayerKey]] = {}
    for k in load_lut():
        groups.setdefault((k.part, k.in_chs, k.res, k.out_chs, k.stride, k.skip), []).append(k)
    return groups


def lut_holdout_errors(fit: PixelFit | None = None) -> dict:
    """Leave one table position out, refit, predict its layers on the 2018 runtime."""
    fit = fit or fit_pixel()
    lut = load_lut()
    errs: list[float] = []
    for keys in lut_positions().values():
        held = fit_pixel(exclude_keys=frozenset(keys), factors=fit.factors)
        errs += [float(p / lut[k] - 1) for k, p in zip(keys, held.lut.predict(keys), strict=True)]
    inside = fit.lut.predict(list(lut)) / np.array(list(lut.values())) - 1
    return {
        "n": len(errs),
        "holdout_mean_abs": float(np.mean(np.abs(errs))),
        "holdout_max_abs": float(np.max(np.abs(errs))),
        "fit_mean_abs": float(np.abs(inside).mean()),
        "fit_max_abs": float(np.abs(inside).max()),
    }


def proxyless_check(fit: PixelFit | None = None) -> dict:
    """ProxylessNAS-Mobile (as released) on the 2018 runtime and on Table 3's."""
    fit = fit or fit_pixel()
    arch = proxyless_as_released()
    keys = layer_keys(arch)
    lut = load_lut()
    missing = [str(k) for k in keys if k not in lut]
    if missing:
        raise HwnasError(f"table lacks layers of ProxylessNAS-Mobile: {missing}")
    table = calibrated_table(fit)
    return {
        "lut_sum_ms": sum(lut[k] for k in keys),
        "e2e_ms": PROXYLESS_E2E_MS,
        "model_2018_ms": float(fit.lut.predict(keys).sum()),
        "calibrated_sum_ms": sum(table[k] for k in keys),
    }


def ranking_check(fit: PixelFit | None = None) -> dict:
    """Spearman rho of predicted (2019) vs measured (2018) over the options at each position."""
    fit = fit or fit_pixel()
    lut = load_lut()
    rhos = []
    for keys in lut_positions().values():
        if len(keys) < 3:
            continue
        rho = spearmanr(fit.table3.predict(keys), [lut[k] for k in keys]).statistic
        rhos.append(float(rho))
    return {
        "positions": len(rhos),
        "mean_rho": float(np.mean(rhos)),
        "min_rho": float(np.min(rhos)),
        "perfect": int(sum(r > 1 - 1e-9 for r in rhos)),
    }

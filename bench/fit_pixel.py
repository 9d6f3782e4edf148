"""Fit the Pixel-1 cost model and write ``latency/data/pixel1_costmodel.json``.

Run from the repository root::

    .venv/bin/python bench/fit_pixel.py           # fit, check, write, print a report
    .venv/bin/python bench/fit_pixel.py --check   # fit and compare with the shipped file

The file holds the coefficients, the calibrated table entries, provenance
and the error numbers quoted in docs/latency.md. The sources are read by
``bench/pixel_sources.py``.

The joint fit shares the compute coefficients (``c_pw``, ``c_dw``,
``c_conv``) between the 2018 table and the 2019 networks and gives each
runtime its own cost of activation traffic (``c_el``): the same phone ran
the same GEMM and depthwise kernels, while the runtimes moved activations
at different speeds (nn-Meter's still newer runtime has about the same
``c_pw``/``c_dw`` and a smaller ``c_el`` again; docs/latency.md).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import math
import sys
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np
from scipy.stats import spearmanr

from hwnas.common.atomic import atomic_write_text
from hwnas.common.errors import HwnasError
from hwnas.latency.costmodel import (
    CostModel,
    LayerFeatures,
    effective_el,
    layer_features,
    nnls_relative,
)
from hwnas.latency.keys import LayerKey, layer_keys
from hwnas.latency.pixel import FORMAT_VERSION, MODEL_FILE
from hwnas.space.spec import Arch

sys.path.insert(0, str(Path(__file__).resolve().parent))  # pixel_sources, next to this file
from pixel_sources import (  # noqa: E402
    load_lut,
    load_nnmeter,
    load_table3,
    network_features,
    nnmeter_features,
    proxyless_as_released,
    table3_arch,
)

# ProxylessNAS-Mobile measured end to end with TFLite's benchmark tool on the
# same phone and runtime as the per-layer table (shared/data/latency/README.md).
PROXYLESS_E2E_MS = 80.7
# Each Table-3 network weighs as much as one table layer in the joint fit.
TABLE3_WEIGHT = 1.0
OUT = Path(__file__).resolve().parents[1] / "latency" / "data" / MODEL_FILE
ROUND = 6  # significant digits kept in the file


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


# --- the shipped file ------------------------------------------------------
def _r(x: float) -> float:
    return float(f"{x:.{ROUND}g}")


def build() -> dict:
    fit = fit_pixel()
    t3 = table3_errors(fit)
    fac = fit.factors
    coef = {k: _r(v) for k, v in fit.coefficients().items()}
    table3 = {k: coef[k] for k in ("c_pw", "c_dw", "c_conv", "c_el", "k_hs", "k_se", "k_se0")}
    return {
        "format_version": FORMAT_VERSION,
        "provenance": {
            "device": "Google Pixel 1 (Snapdragon 821)",
            "runtime": "TensorFlow Lite, fp32, batch 1",
            "threads": "1 (one big core)",
            "scale": "MobileNetV3 paper Table 3 (Howard et al., ICCV 2019): TFLite of 2019",
            "method": (
                "linear cost model (costmodel.py) fitted by relative-error NNLS to the "
                "ProxylessNAS layer table and Table 3 jointly; SE/hard-swish factors from "
                "nn-Meter; table layers are 'measured' x model(2019)/model(2018)"
            ),
            "sources": [
                "ProxylessNAS Pixel-1 latency table (MIT licence, (c) MIT HAN Lab)",
                "nn-Meter Pixel-1 CNN block table (MIT licence, (c) Microsoft)",
                "Searching for MobileNetV3, Table 3 (Howard et al., ICCV 2019)",
            ],
            "fitted": dt.date.today().isoformat(),
            "fitted_by": "bench/fit_pixel.py",
        },
        "coefficients": {"table3": table3, "c_el_lut": coef["c_el_lut"]},
        "nnmeter_fit": {
            "coef": {k: _r(v) for k, v in fac.coef.items()},
            "mean_abs_err": _r(fac.mean_abs_err),
            "max_abs_err": _r(fac.max_abs_err),
        },
        "table3_errors": [
            {k: (_r(v) if isinstance(v, float) else v) for k, v in row.items()} for row in t3
        ],
        "lut_holdout": {
            k: (_r(v) if isinstance(v, float) else v) for k, v in lut_holdout_errors(fit).items()
        },
        "proxyless": {k: _r(v) for k, v in proxyless_check(fit).items()},
        "ranking": {
            k: (_r(v) if isinstance(v, float) else v) for k, v in ranking_check(fit).items()
        },
        "measured_ms": {str(k): _r(v) for k, v in calibrated_table(fit).items()},
    }


def report(data: dict) -> str:
    lines = ["coefficients (ms per million):"]
    lines += [f"  {k:10s} {v:.4g}" for k, v in data["coefficients"]["table3"].items()]
    lines.append(f"  c_el_lut   {data['coefficients']['c_el_lut']:.4g}")
    lines.append("Table 3 (Pixel 1 ms): measured  fit  err  leave-one-out  err")
    for r in data["table3_errors"]:
        lines.append(
            f"  {r['network']:18s} {r['width']:<5g} {r['measured_ms']:6.1f} {r['fit_ms']:6.1f} "
            f"{r['fit_err']:+6.1%} {r['loo_ms']:6.1f} {r['loo_err']:+6.1%}"
        )
    for part in ("lut_holdout", "proxyless", "ranking", "nnmeter_fit"):
        lines.append(f"{part}: {json.dumps(data[part])}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument(
        "--check", action="store_true", help="compare with the shipped file, write nothing"
    )
    args = ap.parse_args(argv)
    data = build()
    print(report(data))
    if args.check:
        old = json.loads(OUT.read_text())
        same = all(
            math.isclose(old["coefficients"]["table3"][k], v, rel_tol=1e-4)
            for k, v in data["coefficients"]["table3"].items()
        )
        print("shipped coefficients reproduce" if same else "shipped coefficients DIFFER")
        return 0 if same else 1
    atomic_write_text(OUT, json.dumps(data, indent=1) + "\n")
    print(f"wrote {OUT}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Fit the Pixel-1 cost model and write ``latency/data/pixel1_costmodel.json``.

Run from the repository root::

    .venv/bin/python bench/fit_pixel.py           # fit, check, write, print a report
    .venv/bin/python bench/fit_pixel.py --check   # fit and compare with the shipped file

The file holds the coefficients, the calibrated table entries, provenance
(which data set each coefficient came from), the resolutions the data cover,
the ``pixel2``/``pixel3`` scales and the error numbers quoted in
docs/latency.md. The sources are read by ``bench/pixel_sources.py``.

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
    load_slim,
    load_table3,
    network_features,
    nnmeter_features,
    proxyless_as_released,
    slim_arch,
    table3_arch,
)

# ProxylessNAS-Mobile measured end to end with TFLite's benchmark tool on the
# same phone and runtime as the per-layer table (shared/data/latency/README.md).
PROXYLESS_E2E_MS = 80.7
# Each Table-3 network weighs as much as one table layer in the joint fit.
TABLE3_WEIGHT = 1.0
# Each TF-slim MobileNetV2 network (96-224 px) weighs as 3 table layers (the
# 71 table layers are all from 224-px networks and say nothing about input
# size). Tried 1, 3, 5, 10: 3 gave the lowest Table-3 leave-one-out error
# (3.7%; 5: 3.9%, 10: 4.2%) at about the same resolution-ratio error.
SLIM_WEIGHT = 3.0
# The per-layer table does not pay the weight cost (c_wt): with it shared,
# the held-out table-layer error rose from 8% to 13% and ProxylessNAS-Mobile
# on the 2018 runtime from +4.4% to +7.0% (docs/latency.md). Each table layer
# was timed alone, run after run, which may keep its weights ready; a whole
# network (TF-slim, Table 3) cannot.
PHONES = ("pixel2", "pixel3")
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
    slim: list[tuple[Arch, int, float]],
    fac: ActivationFactors,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    def row(f: LayerFeatures, source: int) -> list[float]:
        el = effective_el(f, fac.k_hs, fac.k_se, fac.k_se0)
        wt = 0.0 if source == 0 else f.wt  # the per-layer table: see SLIM_WEIGHT
        return [f.pw, f.dw, f.conv, wt] + [el if source == i else 0.0 for i in range(3)]

    x = (
        [row(layer_features(k), 0) for k in lut]
        + [row(network_features(a), 1) for a, _ in nets]
        + [row(network_features(a, r), 2) for a, r, _ in slim]
    )
    y = list(lut.values()) + [ms for _, ms in nets] + [ms for _, _, ms in slim]
    w = [1.0] * len(lut) + [TABLE3_WEIGHT] * len(nets) + [SLIM_WEIGHT] * len(slim)
    return np.array(x), np.array(y), np.array(w)


def fit_pixel(
    exclude_networks: tuple[int, ...] = (),
    exclude_keys: frozenset[LayerKey] = frozenset(),
    factors: ActivationFactors | None = None,
    exclude_slim_width: float | None = None,
) -> PixelFit:
    """Joint relative-error NNLS on the table layers, Table 3 and the TF-slim networks.

    Args:
        exclude_networks: Table-3 row indices to leave out (leave-one-out).
        exclude_keys: table layers to leave out (held-out checks).
        factors: nn-Meter factors, fitted when not given.
        exclude_slim_width: leave the TF-slim networks of this width out.
    """
    fac = factors or fit_activation_factors()
    lut = {k: v for k, v in load_lut().items() if k not in exclude_keys}
    rows = [r for i, r in enumerate(load_table3()) if i not in exclude_networks]
    nets = [(table3_arch(n, w), ms) for n, w, ms in rows]
    slim = [(slim_arch(w), r, ms) for w, r, ms in load_slim() if w != exclude_slim_width]
    x, y, w = _design(lut, nets, slim, fac)
    c_pw, c_dw, c_conv, c_wt, c_el_lut, c_el_t3, c_el_slim = map(float, nnls_relative(x, y, w))
    t3 = CostModel(c_pw, c_dw, c_conv, c_el_t3, fac.k_hs, fac.k_se, fac.k_se0, c_wt)
    return PixelFit(
        t3, replace(t3, c_el=c_el_lut, c_wt=0.0), fac, tuple(f"{n}@{w:g}" for n, w, _ in rows)
    )


def calibrated_table(fit: PixelFit) -> dict[LayerKey, float]:
    """Table layers carried to the Table-3 runtime: ``measured * M_2019(k) / M_2018(k)``.

    The measurement keeps what the model misses about that exact layer; the
    model's ratio moves it from the 2018 runtime to the 2019 one.
    """
    lut = load_lut()
    keys = list(lut)
    ratio = fit.table3.predict(keys) / fit.lut.predict(keys)
    return {k: lut[k] * float(r) for k, r in zip(keys, ratio, strict=True)}


def predict_network(
    arch: Arch, model: CostModel, table: dict[LayerKey, float], resolution: int = 224
) -> float:
    """What the target predicts: table layers where they exist, the model elsewhere."""
    keys = layer_keys(arch, resolution)
    ms = model.predict(keys)
    return float(sum(table.get(k, m) for k, m in zip(keys, ms, strict=True)))


# --- checks ----------------------------------------------------------------
def loo_fits(fit: PixelFit) -> list[PixelFit]:
    """The fit without each Table-3 network in turn."""
    return [
        fit_pixel(exclude_networks=(i,), factors=fit.factors) for i in range(len(load_table3()))
    ]


def _error_row(name: str, width: float, ms: float, pred: float, pred_loo: float) -> dict:
    """One Table-3 row: the published ms, the fit's and the leave-one-out prediction and errors."""
    return {"network": name, "width": width, "measured_ms": ms, "fit_ms": pred,
            "fit_err": pred / ms - 1, "loo_ms": pred_loo, "loo_err": pred_loo / ms - 1}

def table3_errors(fit: PixelFit | None = None, loos: list[PixelFit] | None = None) -> list[dict]:
    """Per Table-3 network: in-sample and leave-one-out relative errors of the target."""
    fit = fit or fit_pixel()
    loos = loos or loo_fits(fit)
    table = calibrated_table(fit)
    out = []
    for i, (name, width, ms) in enumerate(load_table3()):
        loo = loos[i]
        arch = table3_arch(name, width)
        pred = predict_network(arch, fit.table3, table)
        pred_loo = predict_network(arch, loo.table3, calibrated_table(loo))
        out.append(_error_row(name, width, ms, pred, pred_loo))
    return out


def slim_ratio_check(fit: PixelFit | None = None) -> dict:
    """Resolution scaling on TF-slim MobileNetV2: latency at R px / latency at 224 px.

    In-sample (the fit saw these networks) and with each width's five
    networks left out of the fit; predicted by the target (Table-3 scale),
    compared with the phone's own ratio.
    """
    fit = fit or fit_pixel()
    rows = load_slim()
    base = {w: ms for w, r, ms in rows if r == 224}

    def ratios(f: PixelFit, widths: set[float]) -> list[dict]:
        table = calibrated_table(f)
        out = []
        for w, r, ms in rows:
            if r == 224 or w not in widths:
                continue
            a = slim_arch(w)
            p = predict_network(a, f.table3, table, r) / predict_network(a, f.table3, table, 224)
            m = ms / base[w]
            out.append(
                {"width": w, "resolution": r, "measured": m, "predicted": p, "err": p / m - 1}
            )
        return out

    def summary(rs: list[dict]) -> dict:
        e = np.abs([r["err"] for r in rs])
        return {"n": len(rs), "mape": float(e.mean()), "max_abs": float(e.max())}

    inside = ratios(fit, set(base))
    held = [
        r
        for w in sorted(base)
        for r in ratios(fit_pixel(factors=fit.factors, exclude_slim_width=w), {w})
    ]
    return {"fit": summary(inside), "leave_width_out": summary(held), "rows": held}


def nnmeter_fixed_cost_check() -> dict:
    """Does nn-Meter (16-128 px blocks) show a cost that does not shrink with input size?

    Refits its blocks with two extra columns, conv weights (``wt``) and a
    constant per block, and reports both in units of the element cost
    (M elements) and the mean signed error of the plain fit by input size.
    """
    keys, y = load_nnmeter()
    feats = [nnmeter_features(k) for k in keys]
    names = ("pw", "dw", "el", "hs", "se_el", "se", "wt")
    x = np.array([[getattr(f, n) for n in names] + [1.0] for f in feats])
    c = nnls_relative(x, y)
    base = nnls_relative(x[:, :6], y)
    err = x[:, :6] @ base / y - 1
    res = np.array([int(k.split("_")[1]) for k in keys])
    small, large = res <= 28, res >= 96
    return {
        "wt_per_el": float(c[6] / c[2]),
        "per_block_per_el": float(c[7] / c[2]),
        "bias_16_28px": float(err[small].mean()),
        "bias_96_128px": float(err[large].mean()),
    }


def _parts(model: CostModel, arch: Arch) -> tuple[float, float]:
    """A network's predicted ms split into compute (MAdds, weights) and activation traffic."""
    t = model.terms(network_features(arch))
    return t["pw"] + t["dw"] + t["conv"] + t["weights"], t["el"] + t["hswish"] + t["se"]


def phone_scales(
    phone: str, model: CostModel, exclude: tuple[int, ...] = ()
) -> tuple[float, float]:
    """Scales of the compute and the traffic coefficients that fit ``phone``'s Table-3 column."""
    rows = [r for i, r in enumerate(load_table3(phone)) if i not in exclude]
    x = np.array([_parts(model, table3_arch(n, w)) for n, w, _ in rows])
    a, b = nnls_relative(x, np.array([ms for _, _, ms in rows]))
    return float(a), float(b)


def phone_model(model: CostModel, a: float, b: float) -> CostModel:
    return replace(
        model,
        c_pw=a * model.c_pw,
        c_dw=a * model.c_dw,
        c_conv=a * model.c_conv,
        c_wt=a * model.c_wt,
        c_el=b * model.c_el,
    )


def phone_fit(phone: str, fit: PixelFit, loos: list[PixelFit]) -> dict:
    """``phone`` (pixel2, pixel3): the Pixel-1 model with two scales fitted to its Table-3
    column; leave-one-out refits both the Pixel-1 model and the scales without the network."""
    a, b = phone_scales(phone, fit.table3)
    model = phone_model(fit.table3, a, b)
    errors = []
    for i, (name, width, ms) in enumerate(load_table3(phone)):
        arch = table3_arch(name, width)
        m_i = phone_model(loos[i].table3, *phone_scales(phone, loos[i].table3, (i,)))
        pred, pred_loo = predict_network(arch, model, {}), predict_network(arch, m_i, {})
        errors.append(_error_row(name, width, ms, pred, pred_loo))
    return {
        "scales": {"compute": a, "traffic": b},
        "coefficients": asdict(model),
        "table3_errors": errors,
    }


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


def _rd(d: dict) -> dict:
    return {k: (_r(v) if isinstance(v, float) else v) for k, v in d.items()}


def build() -> dict:
    fit = fit_pixel()
    loos = loo_fits(fit)
    t3 = table3_errors(fit, loos)
    fac = fit.factors
    coef = {k: _r(v) for k, v in fit.coefficients().items()}
    names = ("c_pw", "c_dw", "c_conv", "c_el", "k_hs", "k_se", "k_se0", "c_wt")
    table3 = {k: coef[k] for k in names}
    slim = slim_ratio_check(fit)
    res = [r for _, r, _ in load_slim()]
    joint = "joint NNLS: ProxylessNAS table (2018) + Table 3 (2019) + TF-slim MobileNetV2 (2018)"
    phones = {}
    for phone in PHONES:
        pf = phone_fit(phone, fit, loos)
        phones[phone] = {
            "provenance": {
                "device": {
                    "pixel2": "Google Pixel 2 (Snapdragon 835)",
                    "pixel3": "Google Pixel 3 (Snapdragon 845)",
                }[phone],
                "runtime": "TensorFlow Lite, fp32, batch 1",
                "threads": "1 (one big core)",
                "scale": f"MobileNetV3 paper Table 3, {phone} column (Howard et al., ICCV 2019)",
                "method": (
                    "the pixel model with its compute coefficients (c_pw, c_dw, c_conv, c_wt) "
                    "and its traffic coefficient (c_el) each scaled by one factor, fitted by "
                    f"relative-error NNLS to the 9 {phone} networks of Table 3; every layer "
                    "is modelled (the ProxylessNAS entries are Pixel-1 measurements)"
                ),
                "coefficient_sources": {
                    "shape": "the pixel fit (see pixel)",
                    "scales": f"MobileNetV3 Table 3, {phone} column",
                },
                "fitted": dt.date.today().isoformat(),
                "fitted_by": "bench/fit_pixel.py",
            },
            "scales": _rd(pf["scales"]),
            "coefficients": _rd(pf["coefficients"]),
            "table3_errors": [_rd(r) for r in pf["table3_errors"]],
        }
    return {
        "format_version": FORMAT_VERSION,
        "provenance": {
            "device": "Google Pixel 1 (Snapdragon 821)",
            "runtime": "TensorFlow Lite, fp32, batch 1",
            "threads": "1 (one big core)",
            "scale": "MobileNetV3 paper Table 3 (Howard et al., ICCV 2019): TFLite of 2019",
            "method": (
                "linear cost model (costmodel.py) fitted by relative-error NNLS to the "
                "ProxylessNAS layer table, Table 3 and the TF-slim MobileNetV2 networks at "
                "96-224 px jointly; SE/hard-swish factors from nn-Meter; table layers are "
                "'measured' x model(2019)/model(2018)"
            ),
            "sources": [
                "ProxylessNAS Pixel-1 latency table (MIT licence, (c) MIT HAN Lab)",
                "nn-Meter Pixel-1 CNN block table (MIT licence, (c) Microsoft)",
                "Searching for MobileNetV3, Table 3 (Howard et al., ICCV 2019)",
                "TF-slim MobileNetV2 README, Pixel-1 column (Apache 2.0, The TensorFlow Authors)",
            ],
            "coefficient_sources": {
                "c_pw, c_dw, c_conv": joint,
                "c_wt": joint + "; identified by the TF-slim networks, the only data that "
                "vary the network's input size (96-224 px)",
                "c_el": "Table 3 (the 2019 runtime's own traffic cost), in the joint NNLS",
                "c_el_lut": "ProxylessNAS table and TF-slim (the 2018 runtime), in the joint NNLS",
                "k_hs, k_se, k_se0": "nn-Meter Pixel-1 blocks (ratios to its element cost)",
            },
            "resolution_range": [min(res), max(res)],
            "fitted": dt.date.today().isoformat(),
            "fitted_by": "bench/fit_pixel.py",
        },
        "coefficients": {"table3": table3, "c_el_lut": coef["c_el_lut"]},
        "nnmeter_fit": {
            "coef": {k: _r(v) for k, v in fac.coef.items()},
            "mean_abs_err": _r(fac.mean_abs_err),
            "max_abs_err": _r(fac.max_abs_err),
        },
        "nnmeter_fixed_costs": _rd(nnmeter_fixed_cost_check()),
        "table3_errors": [_rd(r) for r in t3],
        "slim_ratio": {
            "fit": _rd(slim["fit"]),
            "leave_width_out": _rd(slim["leave_width_out"]),
            "rows": [_rd(r) for r in slim["rows"]],
        },
        "lut_holdout": _rd(lut_holdout_errors(fit)),
        "proxyless": {k: _r(v) for k, v in proxyless_check(fit).items()},
        "ranking": _rd(ranking_check(fit)),
        "phones": phones,
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
    loo = np.abs([r["loo_err"] for r in data["table3_errors"]])
    lines.append(f"  leave-one-out MAPE {loo.mean():.2%}, max {loo.max():.1%}")
    for phone, d in data["phones"].items():
        e = np.abs([r["loo_err"] for r in d["table3_errors"]])
        lines.append(
            f"{phone}: scales {d['scales']}, Table-3 leave-one-out MAPE {e.mean():.2%}, "
            f"max {e.max():.1%}"
        )
    lines.append(
        "TF-slim MobileNetV2 ratio R/224 px (96-192): "
        + json.dumps({k: data["slim_ratio"][k] for k in ("fit", "leave_width_out")})
    )
    for part in ("lut_holdout", "proxyless", "ranking", "nnmeter_fit", "nnmeter_fixed_costs"):
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

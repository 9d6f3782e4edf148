"""Fit the Pixel-1 cost model and write ``latency/data/pixel1_costmodel.json``.

Run from the repository root::

    .venv/bin/python bench/fit_pixel.py           # fit, check, write, print a report
    .venv/bin/python bench/fit_pixel.py --check   # fit and compare with the shipped file

The file holds the coefficients, the calibrated table entries, provenance
and the error numbers quoted in docs/latency.md.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import math
import sys
from pathlib import Path

from hwnas.latency import fit_pixel as fp
from hwnas.latency.pixel import FORMAT_VERSION, MODEL_FILE

OUT = Path(__file__).resolve().parents[1] / "latency" / "data" / MODEL_FILE
ROUND = 6  # significant digits kept in the file


def _r(x: float) -> float:
    return float(f"{x:.{ROUND}g}")


def build() -> dict:
    fit = fp.fit_pixel()
    t3 = fp.table3_errors(fit)
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
            k: (_r(v) if isinstance(v, float) else v) for k, v in fp.lut_holdout_errors(fit).items()
        },
        "proxyless": {k: _r(v) for k, v in fp.proxyless_check(fit).items()},
        "ranking": {
            k: (_r(v) if isinstance(v, float) else v) for k, v in fp.ranking_check(fit).items()
        },
        "measured_ms": {str(k): _r(v) for k, v in fp.calibrated_table(fit).items()},
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
    OUT.write_text(json.dumps(data, indent=1) + "\n")
    print(f"wrote {OUT}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

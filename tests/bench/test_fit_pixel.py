"""``bench/fit_pixel.py``: the shipped Pixel-1 fit reproduces from the raw data, errors stay
within the documented goals, and the shipped target predicts as the fit does."""

from __future__ import annotations

import importlib.util
import json
import math
import sys
from importlib import resources
from pathlib import Path

import pytest

from hwnas.latency.pixel import MODEL_FILE, load_pixel_target
from hwnas.latency.target import SOURCE_MEASURED_SCALED

BENCH = Path(__file__).resolve().parents[2] / "bench"
LOO_GOAL = 0.10  # docs/latency.md: each held-out Table-3 network within 10%
LOO_MAPE_GOAL = 0.051  # issue 13: no worse than the 5.1% before the weight term


def _load(name: str):
    spec = importlib.util.spec_from_file_location(f"bench_{name}", BENCH / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


fp = _load("fit_pixel")
sources = _load("pixel_sources")


@pytest.fixture(scope="module")
def shipped() -> dict:
    return json.loads(resources.files("hwnas.latency").joinpath("data", MODEL_FILE).read_text())


@pytest.fixture(scope="module")
def fit() -> fp.PixelFit:
    return fp.fit_pixel()


@pytest.fixture(scope="module")
def table3(fit: fp.PixelFit) -> list[dict]:
    return fp.table3_errors(fit)


def test_shipped_coefficients_reproduce_from_raw_data(shipped: dict, fit: fp.PixelFit) -> None:
    got = fit.coefficients()
    for k, v in shipped["coefficients"]["table3"].items():
        assert math.isclose(got[k], v, rel_tol=1e-4), k
    assert math.isclose(got["c_el_lut"], shipped["coefficients"]["c_el_lut"], rel_tol=1e-4)


def test_shipped_measured_entries_reproduce(shipped: dict, fit: fp.PixelFit) -> None:
    table = {str(k): v for k, v in fp.calibrated_table(fit).items()}
    assert table.keys() == shipped["measured_ms"].keys()
    for k, v in shipped["measured_ms"].items():
        assert math.isclose(table[k], v, rel_tol=1e-4), k


def test_leave_one_out_on_table3(table3: list[dict]) -> None:
    assert len(table3) == 9
    for row in table3:
        assert abs(row["loo_err"]) < LOO_GOAL, row
    assert sum(abs(r["loo_err"]) for r in table3) / len(table3) <= LOO_MAPE_GOAL


def test_shipped_errors_are_the_refitted_ones(shipped: dict, table3: list[dict]) -> None:
    for old, new in zip(shipped["table3_errors"], table3, strict=True):
        assert math.isclose(old["loo_ms"], new["loo_ms"], rel_tol=1e-4), new


def test_held_out_table_layers(fit: fp.PixelFit) -> None:
    held = fp.lut_holdout_errors(fit)
    assert held["n"] == 71
    assert held["holdout_mean_abs"] < 0.10


def test_proxyless_end_to_end_on_the_2018_runtime(fit: fp.PixelFit) -> None:
    check = fp.proxyless_check(fit)
    assert check["lut_sum_ms"] == pytest.approx(82.5, abs=0.05)  # README of the shared data
    assert abs(check["model_2018_ms"] / fp.PROXYLESS_E2E_MS - 1) < 0.06


def test_ranks_every_table_position_like_the_phone(fit: fp.PixelFit) -> None:
    check = fp.ranking_check(fit)
    assert check["positions"] == 12 and check["min_rho"] > 0.9


def test_the_shipped_target_predicts_table3_as_the_fit(shipped: dict) -> None:
    target = load_pixel_target("pixel")
    for row in shipped["table3_errors"]:
        arch = sources.table3_arch(row["network"], row["width"])
        assert target.predict(arch) == pytest.approx(row["fit_ms"], rel=1e-3), row["network"]


def test_proxyless_layers_are_all_measured_scaled() -> None:
    frame = load_pixel_target("pixel1").breakdown(sources.proxyless_as_released())
    assert set(frame.source) == {SOURCE_MEASURED_SCALED}  # 2018 numbers scaled by the model


# --- resolution scaling, pixel2/pixel3 (issue 13) --------------------------------
RATIO_MAPE_GOAL = 0.05  # issue 13: latency at R px / at 224 px, over 96-224 px
RATIO_MAX_GOAL = 0.12


def test_resolution_scaling_on_tf_slim_mobilenetv2(shipped: dict, fit: fp.PixelFit) -> None:
    check = fp.slim_ratio_check(fit)
    assert check["fit"]["n"] == 16  # 4 widths x 96/128/160/192 px
    assert check["fit"]["mape"] <= RATIO_MAPE_GOAL
    assert check["fit"]["max_abs"] <= RATIO_MAX_GOAL
    # each width left out of the fit: documented, slightly above the MAPE goal
    assert check["leave_width_out"]["mape"] <= 0.055
    assert check["leave_width_out"]["max_abs"] <= RATIO_MAX_GOAL
    assert check["leave_width_out"]["mape"] == pytest.approx(
        shipped["slim_ratio"]["leave_width_out"]["mape"], rel=1e-4
    )


def test_weight_cost_comes_from_multi_resolution_data(fit: fp.PixelFit) -> None:
    assert fit.table3.c_wt > 0 and fit.lut.c_wt == 0
    # without the networks that vary the input size the term is not identified
    nnm = fp.nnmeter_fixed_cost_check()
    assert nnm["wt_per_el"] == 0 and nnm["per_block_per_el"] == 0
    assert nnm["bias_16_28px"] > 0  # nn-Meter's smallest blocks: over-predicted, not under


@pytest.mark.parametrize("phone", fp.PHONES)
def test_phone_fits_reproduce(shipped: dict, fit: fp.PixelFit, phone: str) -> None:
    got = fp.phone_fit(phone, fit, fp.loo_fits(fit))
    want = shipped["phones"][phone]
    for k, v in want["coefficients"].items():
        assert math.isclose(got["coefficients"][k], v, rel_tol=1e-4), k
    for old, new in zip(want["table3_errors"], got["table3_errors"], strict=True):
        assert math.isclose(old["loo_ms"], new["loo_ms"], rel_tol=1e-4), new

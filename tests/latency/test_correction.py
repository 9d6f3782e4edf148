"""The learned correction: terms, the fit on synthetic data with known answers, the
round trip through the table's provenance, and its use by the measurer and every lookup."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from fakes import fake_ms

from hwnas.latency import correction as corr_mod
from hwnas.latency.correction import (
    CORRECTION,
    KINDS,
    TERMS,
    Correction,
    calibrate,
    calibration_archs,
    fit_correction,
    identity_coef,
    layer_terms,
    network_terms,
)
from hwnas.latency.keys import LayerKey, layer_keys
from hwnas.latency.measured_target import MeasuredTarget
from hwnas.latency.runners import Stats
from hwnas.latency.space_latency import space_keys
from hwnas.latency.table import LatencyTable
from hwnas.latency.target import SOURCE_MEASURED, SOURCE_MEASURED_SCALED
from hwnas.latency.validation import validation_archs
from hwnas.space.searchspace import get_space

RES = 32
SPACE = "mnasnet"
OVERHEAD = 0.02
# the "device" below: each kind's table time scaled, edges and skip adds cost extra
TRUE_COEF = np.array([0.8, 1.3, 0.95, 1.05, 1.1, 0.4, 0.7])
TRUE_CONST = 0.15
PANEL = len(corr_mod.anchor_panel())  # anchors measured once a round beside the networks


def _truth(keys: list[LayerKey]) -> float:
    """What the imaginary device measures for a whole network of ``keys``."""
    return float(network_terms(keys, [fake_ms(k) for k in keys]) @ TRUE_COEF + TRUE_CONST)


class Device(MeasuredTarget):
    """A measured target whose whole networks follow ``_truth`` (no export, no runner)."""

    def measure(self, arch, resolution=224, num_classes=1000, protocol="flushed"):
        self.measured = getattr(self, "measured", 0) + 1
        ms = _truth(layer_keys(arch, resolution, num_classes))
        return Stats(ms, ms, ms, 1)


def _device(tmp_path: Path) -> Device:
    table = LatencyTable.create(tmp_path / "dev", {"runner": {"kind": "local"}})
    keys = space_keys(SPACE, RES)
    stats = {k: Stats(fake_ms(k), fake_ms(k), fake_ms(k), 5) for k in keys}
    table = table.update(stats, defaults={"overhead_ms": OVERHEAD})
    return Device("dev", table)


def test_layer_terms_split_the_table_time_by_kind_and_count_edges() -> None:
    ir = LayerKey.parse("ir_k5_s2_m72_c40_se24h_nre_noskip|24x56x56")
    t = dict(zip(TERMS, layer_terms(ir, 2.0), strict=True))
    assert t["ms_ir_se"] == 2.0 and sum(t[f"ms_{k}"] for k in KINDS) == 2.0
    assert t["edge_melem"] == pytest.approx((24 * 56 * 56 + 40 * 28 * 28) * 1e-6)
    assert t["skip_melem"] == 0.0  # no residual add
    head = LayerKey.parse("head_v3_c960_f1280_nhs_cls1000|160x7x7")
    th = dict(zip(TERMS, layer_terms(head, 1.0), strict=True))
    assert th["ms_head"] == 1.0 and th["edge_melem"] == pytest.approx((160 * 49 + 1000) * 1e-6)
    # the identity leaves every layer as the table has it
    assert layer_terms(ir, 2.0) @ identity_coef() == pytest.approx(2.0)


def test_fit_recovers_known_coefficients() -> None:
    rng = np.random.default_rng(0)
    x = rng.uniform(0.1, 5.0, size=(40, len(TERMS)))
    x[:, TERMS.index("ms_conv")] = 0.0  # a kind no network has keeps its prior scale
    y = x @ TRUE_COEF + TRUE_CONST
    c = fit_correction(x, y, overhead_ms=OVERHEAD)
    want = TRUE_COEF.copy()
    want[TERMS.index("ms_conv")] = 1.0
    assert np.allclose(c.coef, want, rtol=0.02, atol=0.02)
    assert c.constant_ms == pytest.approx(TRUE_CONST, abs=0.05)
    assert c.fit["n"] == 40 and c.fit["mape"] < 0.002 and c.fit["cv_mape"] < 0.005
    assert c.fit["within"] == 1.0 and c.fit["ridge"] == min(corr_mod.RIDGES)
    # noise that is not in the terms: the fit says so in its cross-validated error
    noisy = y * rng.uniform(0.8, 1.2, size=y.size)
    assert fit_correction(x, noisy, OVERHEAD).fit["cv_mape"] > 0.05


def test_fit_refuses_bad_input() -> None:
    x = np.ones((10, len(TERMS)))
    with pytest.raises(ValueError, match="at least 8 measured networks"):
        fit_correction(x[:3], [1.0] * 3, 0.0)
    with pytest.raises(ValueError, match=r"terms must be \(n, 7\)"):
        fit_correction(x[:, :3], [1.0] * 10, 0.0)
    with pytest.raises(ValueError, match="finite and > 0"):
        fit_correction(x, [1.0] * 9 + [0.0], 0.0)


def test_round_trip_and_refusals() -> None:
    c = Correction(tuple(TRUE_COEF), TRUE_CONST, {"n": 9, "mape": 0.01, "cv_mape": 0.02},
                   ({"arch": "a", "resolution": 32, "num_classes": 10, "ms": 1.0, "space": "s"},),
                   "2026-12-02")
    back = Correction.from_dict(json.loads(json.dumps(c.to_dict())))
    assert back == c
    assert back.summary()["spaces"] == ["s"] and back.summary()["cv_mape"] == 0.02
    bad = c.to_dict()
    for field, value, msg in [
        ("terms", ["ms_x"], "are not this hwnas's"),
        ("coef", [1.0, float("nan")] + [0.0] * 5, "finite coefficients"),
        ("format", 99, "format 99"),
        ("nets", "x", "nets must be a list"),
    ]:
        with pytest.raises(ValueError, match=msg):
            Correction.from_dict({**bad, field: value}, "p.json")
    with pytest.raises(ValueError, match="p.json: correction must be a mapping"):
        Correction.from_dict([], "p.json")


def test_calibration_draws_networks_validate_never_draws() -> None:
    cal = {a.to_str() for a in calibration_archs(SPACE, 20, seed=0)}
    val = {a.to_str() for a in validation_archs(SPACE, 20, seed=0)}
    assert len(cal) == 20 and not cal & val
    again = [a.to_str() for a in calibration_archs(SPACE, 20, seed=0)]
    assert set(again) == cal  # deterministic


def test_calibrate_learns_stores_and_every_lookup_uses_it(tmp_path: Path) -> None:
    """The measurer (calibrate) and the lookup use one set of terms: after calibrating on
    the imaginary device, held-out networks are predicted as it measures them, on every path."""
    t = _device(tmp_path)
    held_out = validation_archs(SPACE, 6, seed=0)
    raw_err = max(abs(t.predict(a, RES) / _truth(layer_keys(a, RES)) - 1) for a in held_out)
    assert raw_err > 0.05  # the raw layer sum misses what the device does
    c = calibrate(t, SPACE, 16, resolution=RES, rounds=1)
    assert t.measured == 16 + PANEL and c.fit["n"] == 16 and c.fit["cv_mape"] < 0.01
    # stored with its networks; a fresh load from disk applies it
    loaded = Device("dev", LatencyTable.load(t.table.path))
    assert loaded.correction == c and len(loaded.table.provenance[CORRECTION]["nets"]) == 16
    truth = np.array([_truth(layer_keys(a, RES)) for a in held_out])
    one = np.array([loaded.predict(a, RES) for a in held_out])
    assert np.allclose(one, truth, rtol=0.01)
    assert np.allclose(loaded.predict_many(held_out, RES), one)
    sp = get_space(SPACE)  # the vectorised path over index rows agrees with predict
    idx = sp.sample_indices(np.random.default_rng(5), 4)
    decoded = [sp.decode(sp.from_indices(row)) for row in idx]
    fast = loaded.predict_many(idx, RES, space=SPACE)
    assert np.allclose(fast, [loaded.predict(a, RES) for a in decoded])
    assert np.allclose(fast, [_truth(layer_keys(a, RES)) for a in decoded], rtol=0.01)
    frame = loaded.breakdown(held_out[0], RES)
    assert frame["ms"].sum() == pytest.approx(one[0])
    assert set(frame["source"]) == {SOURCE_MEASURED_SCALED}
    assert loaded.describe()["correction"]["n"] == 16
    raw = MeasuredTarget("dev", loaded.table, corrected=False)
    assert raw.predict(held_out[0], RES) == pytest.approx(
        sum(fake_ms(k) for k in layer_keys(held_out[0], RES)) + OVERHEAD)
    assert set(raw.breakdown(held_out[0], RES)["source"]) == {SOURCE_MEASURED}
    # a second calibration adds its networks to the stored ones (same ones are replaced)
    calibrate(loaded, SPACE, 18, resolution=RES, rounds=1)
    assert loaded.correction is not None and loaded.correction.fit["n"] == 18


def test_scales_stay_within_bounds_and_the_stem_is_a_conv() -> None:
    """Data that would want a negative scale for a kind get the lower bound, not a sign flip."""
    rng = np.random.default_rng(1)
    x = rng.uniform(0.1, 5.0, size=(30, len(TERMS)))
    coef = TRUE_COEF.copy()
    coef[TERMS.index("ms_ds")] = -2.0  # impossible on a real device
    y = x @ coef + 40.0  # keep every network's time positive
    c = fit_correction(x, y, OVERHEAD)
    lo, hi = corr_mod.SCALE_BOUNDS
    scales = [v for t, v in zip(TERMS, c.coef, strict=True) if t.startswith("ms_")]
    assert all(lo - 1e-9 <= v <= hi + 1e-9 for v in scales) and c.constant_ms >= 0
    assert c.coef[TERMS.index("ms_ds")] == pytest.approx(lo)
    stem = LayerKey.parse("stem_k3_s2_c16_nhs|3x224x224")
    assert corr_mod.kind(stem) == "conv" and layer_terms(stem, 1.0)[TERMS.index("ms_conv")] == 1.0


def test_refit_uses_the_stored_networks_without_measuring(tmp_path: Path) -> None:
    t = _device(tmp_path)
    with pytest.raises(ValueError, match="no correction to refit"):
        corr_mod.refit(t)
    first = calibrate(t, SPACE, 12, resolution=RES, rounds=1)
    assert t.measured == 12 + PANEL and first.fit["floored_layers"] == 0  # + the anchors
    again = corr_mod.refit(t)
    assert t.measured == 12 + PANEL  # nothing measured
    assert again.nets == first.nets and np.allclose(again.coef, first.coef)


def test_calibrate_stores_the_anchor_panel_and_validate_finds_it(tmp_path: Path) -> None:
    """The level at calibration round-trips through the provenance (each anchor's median over
    its rounds); on a device whose level never moves, validate's level is exactly 1."""
    from hwnas.latency.correction import ANCHORS
    from hwnas.latency.validation import stored_anchors, validate

    t = _device(tmp_path)
    calibrate(t, SPACE, 8, resolution=RES, rounds=2)
    assert t.measured == 2 * (8 + PANEL)  # the panel once per round
    loaded = Device("dev", LatencyTable.load(t.table.path))
    panel = stored_anchors(loaded)
    assert panel is not None and panel == loaded.table.provenance[ANCHORS]
    assert panel["resolution"] == RES and panel["num_classes"] == 1000 and panel["date"]
    want = corr_mod.anchor_panel()
    assert [a["name"] for a in panel["nets"]] == [n for n, _ in want]
    for a, (_, arch) in zip(panel["nets"], want, strict=True):
        truth = _truth(layer_keys(arch, RES))
        assert a["arch"] == arch.to_str() and a["rounds_ms"] == pytest.approx([truth] * 2)
        assert a["then_ms"] == pytest.approx(truth)
    result = validate(loaded, SPACE, n=4, seed=0, resolution=RES, rounds=2)
    lv = result.summary()["level_corrected"]
    assert lv["level"] == 1.0 and lv["mape"] == pytest.approx(result.mape)
    assert loaded.measured == 2 * (4 + PANEL) and lv["anchors"] == PANEL


def test_the_anchors_are_fixed_span_the_range_and_are_never_validated_or_calibrated() -> None:
    """The panel is the same on every call, its networks differ from each other, and none
    of them is drawn by validate (seeds 0-4, 100 networks) or a calibration of either space."""
    names = [n for n, _ in corr_mod.anchor_panel()]
    texts = [a.to_str() for _, a in corr_mod.anchor_panel()]
    assert [a.to_str() for _, a in corr_mod.anchor_panel()] == texts
    assert 6 <= len(set(texts)) == len(texts) == PANEL and len(set(names)) == PANEL
    for space in corr_mod.ANCHOR_SPACES:
        drawn = {a.to_str() for seed in range(5) for a in validation_archs(space, 100, seed)}
        drawn |= {a.to_str() for a in calibration_archs(space, 100, 0)}
        assert not drawn & set(texts)
    madds = [a.madds(224) for _, a in corr_mod.anchor_panel()]
    assert max(madds) > 5 * min(madds)  # from MobileNetV3-Small to MobileNetV2 1.4

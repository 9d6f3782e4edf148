"""Validation: random networks measured end to end (a fake device) vs predicted."""

from __future__ import annotations

from pathlib import Path

import pytest
from fakes import OVERHEAD_MS, FakeRunner

from hwnas.latency.measured_target import MeasuredTarget
from hwnas.latency.pixel import load_pixel_target
from hwnas.latency.table import LatencyTable
from hwnas.latency.validation import record_validation, validate, write_validation

RES = 32


def _target(tmp_path: Path) -> MeasuredTarget:
    table = LatencyTable.create(
        tmp_path / "dev",
        {"runner": {"kind": "local"}, "protocol": {"threads": 1, "runs": 2, "warmup": 0}},
    )
    return MeasuredTarget("dev", table, FakeRunner())


@pytest.mark.filterwarnings("ignore:An input array is constant")  # the fake answers one value
def test_validate_compares_predictions_with_measurements(tmp_path: Path) -> None:
    t = _target(tmp_path)
    seen: list[int] = []
    result = validate(t, "mnasnet", n=3, seed=1, resolution=RES, progress=seen.append)
    rows = result.rows
    assert len(rows) == 3 and seen == [1, 1, 1]
    # the fake device answers a whole network with one overhead: measured == OVERHEAD_MS
    assert (rows.measured_ms == OVERHEAD_MS).all()
    assert rows.error.tolist() == pytest.approx((rows.predicted_ms / OVERHEAD_MS - 1).tolist())
    assert result.mape == pytest.approx(rows.error.abs().mean())
    assert result.max_error == pytest.approx(rows.error.abs().max())
    assert result.summary()["n"] == 3
    record_validation(t, result, space="mnasnet", seed=1)
    saved = LatencyTable.load(t.table.path).provenance["validation"]
    assert saved["space"] == "mnasnet" and saved["mape"] == result.mape and saved["date"]
    csv, png = write_validation(result, tmp_path / "out", "dev")
    assert csv.read_text().splitlines()[0].startswith("arch,predicted_ms,measured_ms")
    assert png.stat().st_size > 0


def test_validate_refuses_bad_input(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="'pixel' is a fitted model, not measured here"):
        validate(load_pixel_target("pixel"), "mnasnet", n=3)
    with pytest.raises(ValueError, match="at least 2 networks"):
        validate(_target(tmp_path), "mnasnet", n=1)

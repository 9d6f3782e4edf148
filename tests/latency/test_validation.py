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
    seen: list[float] = []
    result = validate(t, "mnasnet", n=3, seed=1, resolution=RES, progress=seen.append, rounds=2)
    rows = result.rows
    assert len(rows) == 3 and seen == [0.5] * 6  # 3 networks x 2 rounds
    assert result.summary()["rounds"] == 2 and (rows.round_spread == 0).all()
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


# --- the statistics, on synthetic data with known answers ----------------------
def test_fidelity_known_answers() -> None:
    from hwnas.latency.validation import fidelity

    measured = [10.0, 20.0, 30.0, 40.0, 50.0]
    predicted = [10.0, 22.0, 27.0, 48.0, 50.0]  # errors 0, +10%, -10%, +20%, 0
    r = fidelity(predicted, measured)
    assert r["n"] == 5
    assert r["within"] == pytest.approx(0.8)  # the band is inclusive: +-10% are inside
    assert r["mape"] == pytest.approx((0 + 0.1 + 0.1 + 0.2 + 0) / 5)
    assert r["max_error"] == pytest.approx(0.2)
    assert r["bias"] == pytest.approx((0.1 - 0.1 + 0.2) / 5)
    assert r["spearman"] == pytest.approx(1.0)  # same order
    rev = fidelity([5.0, 4.0, 3.0, 2.0, 1.0], [1.0, 2.0, 3.0, 4.0, 5.0])
    assert rev["spearman"] == pytest.approx(-1.0) and rev["within"] == pytest.approx(0.2)
    # one swapped pair of 5: rho = 1 - 6 * 2 / (5 * 24) = 0.9
    assert fidelity([1, 3, 2, 4, 5], [1, 2, 3, 4, 5])["spearman"] == pytest.approx(0.9)
    assert fidelity([1.05, 2.0], [1.0, 2.0], band=0.04)["within"] == pytest.approx(0.5)


def test_fidelity_refuses_bad_input() -> None:
    import math

    from hwnas.latency.validation import fidelity

    with pytest.raises(ValueError, match="equal-length"):
        fidelity([1.0, 2.0], [1.0])
    with pytest.raises(ValueError, match="at least 2"):
        fidelity([1.0], [1.0])
    with pytest.raises(ValueError, match="must be > 0 ms"):
        fidelity([1.0, 2.0], [0.0, 2.0])
    assert math.isnan(fidelity([1.0, 2.0], [3.0, 3.0])["spearman"])  # constant side


@pytest.mark.filterwarnings("ignore:An input array is constant")
def test_validate_with_the_flushed_protocol_beside(tmp_path: Path) -> None:
    t = _target(tmp_path)
    result = validate(t, "mnasnet", n=2, seed=0, resolution=RES, flushed=True, rounds=1)
    rows = result.rows
    assert {"flushed_ms", "flushed_p10_ms", "flushed_p90_ms", "flushed_error"} <= set(rows)
    assert (rows.flushed_ms == OVERHEAD_MS).all()
    assert result.flushed is not None and result.flushed["n"] == 2
    summary = result.summary()
    assert summary["measured_as"] == "standard" and summary["flushed"]["n"] == 2
    csv, png = write_validation(result, tmp_path / "out", "dev")
    assert "flushed_ms" in csv.read_text().splitlines()[0] and png.stat().st_size > 0


def test_least_disturbed_known_answers() -> None:
    from hwnas.latency.runners import Stats
    from hwnas.latency.validation import least_disturbed

    rounds = [Stats(12.0, 11.0, 14.0, 50), Stats(10.0, 9.0, 12.0, 50), Stats(11.0, 10.0, 13.0, 50)]
    best, spread = least_disturbed(rounds)
    assert best == rounds[1] and spread == pytest.approx(0.2)  # 12 / 10 - 1
    assert least_disturbed(rounds[:1]) == (rounds[0], 0.0)
    with pytest.raises(ValueError, match="at least one"):
        least_disturbed([])


def test_measure_networks_interleaves_rounds(tmp_path: Path) -> None:
    """Every network once per round (round-robin), the lowest median of its rounds counts."""
    from hwnas.latency.runners import Stats
    from hwnas.latency.validation import measure_networks, validation_archs

    archs = validation_archs("mnasnet", 3, seed=2)
    order: list[str] = []
    medians = iter([5.0, 7.0, 9.0, 4.0, 8.0, 10.0])  # round 1 then round 2

    class Recording(MeasuredTarget):
        def measure(self, arch, resolution=224, num_classes=1000, protocol="flushed"):
            order.append(arch.to_str())
            m = next(medians)
            return Stats(m, m, m, 1)

    t = Recording("dev", _target(tmp_path).table)
    got = measure_networks(t, archs, RES, rounds=2)
    names = [a.to_str() for a in archs]
    assert order == names + names
    assert [s.median for s, _ in got] == [4.0, 7.0, 9.0]
    assert [round(sp, 6) for _, sp in got] == [0.25, round(8 / 7 - 1, 6), round(10 / 9 - 1, 6)]
    with pytest.raises(ValueError, match="rounds must be >= 1"):
        measure_networks(t, archs, RES, rounds=0)

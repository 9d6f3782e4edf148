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


# --- the machine's level: a reference network measured in every round ----------
REF = {"arch": "mobilenetv3_large", "resolution": RES, "num_classes": 1000, "reference_ms": 2.0,
       "date": "2026-12-02T00:00:00+00:00"}


class _Clocked(MeasuredTarget):
    """A device whose networks and reference take scripted times (a fake clock): the
    reference ``ref_ms[round]``, network ``i`` ``(i + 1) * level[round]``."""

    def __init__(self, table: LatencyTable, ref_ms: list[float], level: list[float]) -> None:
        super().__init__("dev", table, FakeRunner())
        from hwnas.space.references import reference

        self.ref_text = reference("mobilenetv3_large").to_str()
        self.ref_ms, self.level, self.order = ref_ms, level, []
        self.nets: dict[str, int] = {}

    def measure(self, arch, resolution=224, num_classes=1000, protocol="flushed"):
        from hwnas.latency.runners import Stats

        text = arch.to_str()
        rnd = sum(o == "ref" for o in self.order) - 1  # rounds start with the reference
        if text == self.ref_text:
            self.order.append("ref")
            m = self.ref_ms[rnd + 1]
        else:
            self.order.append(text)
            m = (self.nets.setdefault(text, len(self.nets)) + 1) * self.level[rnd]
        return Stats(m, m, m, 1)


def test_measure_with_reference_measures_it_first_in_every_round(tmp_path: Path) -> None:
    from hwnas.latency.validation import measure_networks, measure_with_reference

    archs = validation_archs_("mnasnet", 3)
    t = _Clocked(_target(tmp_path).table, [3.0, 2.5, 2.8], [1.0, 1.0, 1.0])
    seen: list[float] = []
    got, ref = measure_with_reference(t, archs, RES, REF, rounds=3, progress=seen.append)
    names = [a.to_str() for a in archs]
    assert t.order == (["ref"] + names) * 3
    assert [r.median for r in ref] == [3.0, 2.5, 2.8] and len(seen) == 9  # networks only
    assert [s.median for s, _ in got] == [1.0, 2.0, 3.0]
    t.order.clear()  # without a reference nothing else is measured
    assert measure_networks(t, archs, RES, rounds=2) == measure_with_reference(
        t, archs, RES, None, rounds=2)[0]
    assert "ref" not in t.order


@pytest.mark.filterwarnings("ignore:An input array is constant")
def test_validate_scales_predictions_by_the_reference_exactly(tmp_path: Path) -> None:
    from hwnas.latency.validation import REFERENCE, fidelity

    table = _target(tmp_path).table.update(provenance={REFERENCE: REF})
    t = _Clocked(table, [2.6, 2.2], [1.3, 1.1])  # least disturbed reference 2.2: level 1.1
    result = validate(t, "mnasnet", n=3, seed=1, resolution=RES, rounds=2)
    rows, lv = result.rows, result.level
    assert t.order.count("ref") == 2 and t.order[0] == t.order[4] == "ref"
    assert lv is not None and lv["level"] == pytest.approx(1.1)
    assert rows.level_predicted_ms.tolist() == pytest.approx((rows.predicted_ms * 1.1).tolist())
    assert rows.measured_ms.tolist() == pytest.approx([1.1, 2.2, 3.3])
    # the existing numbers keep their meaning: raw predictions against the measurement
    raw = fidelity(rows.predicted_ms, rows.measured_ms)
    assert result.mape == pytest.approx(raw["mape"]) and result.stats == raw
    scaled = fidelity(rows.predicted_ms * 1.1, rows.measured_ms)
    assert lv["mape"] == pytest.approx(scaled["mape"]) and lv["bias"] == pytest.approx(
        scaled["bias"])
    assert lv["reference_ms"] == 2.2 and lv["reference_then_ms"] == 2.0
    assert lv["reference_rounds_ms"] == [2.6, 2.2] and lv["scaled"] == "predictions"
    assert lv["reference_round_spread"] == pytest.approx(2.6 / 2.2 - 1)
    summary = result.summary()
    assert summary["level_corrected"] is lv and summary["mape"] == result.mape
    record_validation(t, result, space="mnasnet", seed=1)
    saved = LatencyTable.load(t.table.path).provenance["validation"]
    assert saved["level_corrected"]["level"] == pytest.approx(1.1)
    csv, _ = write_validation(result, tmp_path / "out", "dev")
    assert "level_predicted_ms" in csv.read_text().splitlines()[0]


@pytest.mark.filterwarnings("ignore:An input array is constant")
def test_a_table_without_a_reference_validates_without_level_numbers(tmp_path: Path) -> None:
    from hwnas.latency.validation import REFERENCE, stored_reference

    t = _Clocked(_target(tmp_path).table, [9.0, 9.0], [1.0, 1.0])
    assert stored_reference(t) is None
    result = validate(t, "mnasnet", n=3, seed=1, resolution=RES, rounds=2)
    assert "ref" not in t.order and result.level is None
    assert "level_corrected" not in result.summary()
    assert not {"level_predicted_ms", "level_error"} & set(result.rows)
    for bad in ({"arch": "mobilenetv3_large"}, {"reference_ms": 0.0}, {"reference_ms": "x"}):
        t.table = t.table.update(provenance={REFERENCE: bad})
        assert stored_reference(t) is None


def validation_archs_(space: str, n: int) -> list:
    from hwnas.latency.validation import validation_archs

    return validation_archs(space, n, seed=2)

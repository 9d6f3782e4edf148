"""Validation: random networks measured end to end (a fake device) vs predicted."""

from __future__ import annotations

from pathlib import Path

import numpy as np
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


# --- the machine's level: a panel of anchor networks measured in every round ----------
def _panel(names: list[str], then_ms: list[float]) -> dict:
    """A stored anchor panel of published networks (as ``build --calibrate`` stores one)."""
    from hwnas.space.references import reference

    return {"format": 1, "resolution": RES, "num_classes": 1000, "date": "2026-12-02T00:00:00",
            "nets": [{"name": n, "arch": reference(n).to_str(), "then_ms": t}
                     for n, t in zip(names, then_ms, strict=True)]}


ANCHOR_NAMES = ["mobilenetv3_small", "mobilenetv3_large", "mnasnet_a1"]


class _Clocked(MeasuredTarget):
    """A device on a fake clock whose speed level is ``level[round]``: anchor ``a`` takes
    ``base[a] * level[round] * extra(a, round)``, validated network ``i`` ``(i + 1) *
    level[round]``; a round starts with the first anchor."""

    def __init__(self, table: LatencyTable, base: dict[str, float], level: list[float],
                 extra=lambda name, rnd: 1.0) -> None:
        super().__init__("dev", table, FakeRunner())
        from hwnas.space.references import reference

        self.anchor = {reference(n).to_str(): n for n in base}
        self.base, self.level, self.extra, self.order = base, level, extra, []
        self.rnd = -1
        self.nets: dict[str, int] = {}

    def measure(self, arch, resolution=224, num_classes=1000, protocol="flushed"):
        from hwnas.latency.runners import Stats

        text = arch.to_str()
        name = self.anchor.get(text)
        if name is not None:
            self.rnd += name == next(iter(self.base))
            self.order.append(name)
            m = self.base[name] * self.level[self.rnd] * self.extra(name, self.rnd)
        else:
            self.order.append(text)
            m = (self.nets.setdefault(text, len(self.nets)) + 1) * self.level[max(self.rnd, 0)]
        return Stats(m, m, m, 1)


def test_measure_with_anchors_measures_them_first_in_every_round(tmp_path: Path) -> None:
    from hwnas.latency.validation import measure_networks, measure_with_anchors

    archs = validation_archs_("mnasnet", 3)
    base = {"mobilenetv3_small": 2.0, "mnasnet_a1": 5.0}
    t = _Clocked(_target(tmp_path).table, base, [1.0, 1.2, 1.1])
    seen: list[float] = []
    panel = _panel(list(base), [2.0, 5.0])["nets"]
    got, anchors = measure_with_anchors(t, archs, RES, panel, rounds=3, progress=seen.append)
    names = [a.to_str() for a in archs]
    assert t.order == (list(base) + names) * 3 and len(seen) == 9  # progress: networks only
    assert [[s.median for s in a] for a in anchors] == [pytest.approx([2.0, 2.4, 2.2]),
                                                        pytest.approx([5.0, 6.0, 5.5])]
    assert [s.median for s, _ in got] == [1.0, 2.0, 3.0]  # least disturbed: the level-1 round
    t.order.clear()  # without anchors nothing else is measured
    assert measure_networks(t, archs, RES, rounds=2) == measure_with_anchors(
        t, archs, RES, None, rounds=2)[0]
    assert not set(base) & set(t.order)


def test_panel_level_follows_a_known_drift_through_noise() -> None:
    """Synthetic rounds: 8 anchors of 2-20 ms on a machine whose level drifts from 1.00 to
    0.95 over 5 blocks; contention adds 0-30% to a third of the rounds and one anchor is
    disturbed in every round. The median of medians recovers each block's level."""
    from hwnas.latency.validation import panel_level

    rng = np.random.default_rng(0)
    base = np.geomspace(2.0, 20.0, 8)
    drift = np.linspace(1.0, 0.95, 5)
    for d in drift:
        rounds = base[:, None] * d * np.ones((8, 6))
        hit = rng.random((8, 6)) < 1 / 3
        rounds *= 1 + hit * rng.uniform(0.0, 0.3, (8, 6))
        rounds[3] *= 1.25  # one anchor disturbed throughout
        level, ratios = panel_level(base.tolist(), rounds.tolist())
        assert level == pytest.approx(d, rel=0.02) and len(ratios) == 8
        assert ratios[3] > d * 1.2  # that anchor alone would have been 20% off
    # no drift and no noise: exactly 1; a level of 0.9 everywhere: exactly 0.9
    assert panel_level([2.0, 4.0], [[2.0, 2.0], [4.0, 4.0]]) == (1.0, [1.0, 1.0])
    assert panel_level([2.0, 4.0], [[1.8], [3.6]])[0] == pytest.approx(0.9)
    with pytest.raises(ValueError, match="rounds of each of 2 anchors"):
        panel_level([2.0, 4.0], [[2.0]])


@pytest.mark.filterwarnings("ignore:An input array is constant")
def test_validate_scales_predictions_by_the_panel_level_exactly(tmp_path: Path) -> None:
    from hwnas.latency.correction import ANCHORS
    from hwnas.latency.validation import fidelity

    base = dict(zip(ANCHOR_NAMES, [2.0, 6.0, 9.0], strict=True))
    table = _target(tmp_path).table.update(provenance={ANCHORS: _panel(ANCHOR_NAMES,
                                                                       [2.0, 6.0, 9.0])})
    # level 1.1 in both rounds; mnasnet_a1 disturbed by 40% in round 0 (its median 1.32)
    t = _Clocked(table, base, [1.1, 1.1], lambda n, r: 1.4 if (n, r) == ("mnasnet_a1", 0)
                 else 1.0)
    result = validate(t, "mnasnet", n=3, seed=1, resolution=RES, rounds=2)
    rows, lv = result.rows, result.level
    assert t.order[:3] == ANCHOR_NAMES and t.order[6:9] == ANCHOR_NAMES
    assert lv is not None and lv["level"] == pytest.approx(1.1) and lv["anchors"] == 3
    assert lv["anchor_levels"]["mnasnet_a1"] == pytest.approx(1.1 * 1.2)
    assert lv["anchor_rounds_ms"]["mobilenetv3_small"] == pytest.approx([2.2, 2.2])
    assert rows.level_predicted_ms.tolist() == pytest.approx((rows.predicted_ms * 1.1).tolist())
    assert rows.measured_ms.tolist() == pytest.approx([1.1, 2.2, 3.3])
    # the existing numbers keep their meaning: raw predictions against the measurement
    raw = fidelity(rows.predicted_ms, rows.measured_ms)
    assert result.mape == pytest.approx(raw["mape"]) and result.stats == raw
    scaled = fidelity(rows.predicted_ms * 1.1, rows.measured_ms)
    assert lv["mape"] == pytest.approx(scaled["mape"]) and lv["bias"] == pytest.approx(
        scaled["bias"])
    assert lv["scaled"] == "predictions" and lv["then_date"] == "2026-12-02T00:00:00"
    summary = result.summary()
    assert summary["level_corrected"] is lv and summary["mape"] == result.mape
    record_validation(t, result, space="mnasnet", seed=1)
    saved = LatencyTable.load(t.table.path).provenance["validation"]
    assert saved["level_corrected"]["level"] == pytest.approx(1.1)
    csv, _ = write_validation(result, tmp_path / "out", "dev")
    assert "level_predicted_ms" in csv.read_text().splitlines()[0]


@pytest.mark.filterwarnings("ignore:An input array is constant")
def test_an_anchor_that_is_a_validated_network_is_left_out(tmp_path: Path) -> None:
    """A network is never its own gauge: an anchor drawn again by validate is not measured
    as an anchor and does not count in the level."""
    from hwnas.latency.correction import ANCHORS
    from hwnas.latency.validation import apart, validation_archs

    drawn = validation_archs("mnasnet", 3, seed=1)
    panel = _panel(["mobilenetv3_small"], [2.0])
    panel["nets"].append({"name": "drawn", "arch": drawn[1].to_str(), "then_ms": 1.0})
    assert [a["name"] for a in apart(panel, drawn)] == ["mobilenetv3_small"]
    table = _target(tmp_path).table.update(provenance={ANCHORS: panel})
    t = _Clocked(table, {"mobilenetv3_small": 2.0}, [0.9, 0.9])
    result = validate(t, "mnasnet", n=3, seed=1, resolution=RES, rounds=2)
    assert t.order.count(drawn[1].to_str()) == 2  # measured as a network, once a round
    assert result.level is not None and result.level["anchors"] == 1
    assert result.level["level"] == pytest.approx(0.9)


@pytest.mark.filterwarnings("ignore:An input array is constant")
def test_a_table_without_anchors_validates_without_level_numbers(tmp_path: Path) -> None:
    """Older tables (none, or the one-network reference of before) load and validate as
    before; a damaged panel counts as none."""
    from hwnas.latency.correction import ANCHORS
    from hwnas.latency.validation import stored_anchors

    old = {"reference": {"arch": "mobilenetv3_large", "resolution": RES, "num_classes": 1000,
                         "reference_ms": 2.0, "date": "2026-12-02T00:00:00+00:00"}}
    table = _target(tmp_path).table.update(provenance=old)
    t = _Clocked(LatencyTable.load(table.path), {"mobilenetv3_large": 2.0}, [1.0, 1.0])
    assert stored_anchors(t) is None
    result = validate(t, "mnasnet", n=3, seed=1, resolution=RES, rounds=2)
    assert "mobilenetv3_large" not in t.order and result.level is None
    assert "level_corrected" not in result.summary()
    assert not {"level_predicted_ms", "level_error"} & set(result.rows)
    good = _panel(["mobilenetv3_small"], [2.0])
    for bad in ({**good, "nets": []}, {**good, "nets": [{"arch": "x", "then_ms": 0.0}]},
                {**good, "nets": [{"arch": 3, "then_ms": 1.0}]}, {**good, "resolution": "32"},
                ["not", "a", "mapping"]):
        t.table = t.table.update(provenance={ANCHORS: bad})
        assert stored_anchors(t) is None
    t.table = t.table.update(provenance={ANCHORS: good})
    assert stored_anchors(t) == good


def validation_archs_(space: str, n: int) -> list:
    from hwnas.latency.validation import validation_archs

    return validation_archs(space, n, seed=2)

"""Measured targets: on-demand fill (only missing keys), overhead, the worker pool, describe()."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from fakes import OVERHEAD_MS, FakeRunner, fake_ms

from hwnas.latency import measured_target as measured_mod
from hwnas.latency.keys import LayerKey, layer_keys
from hwnas.latency.measured_target import MeasuredTarget
from hwnas.latency.registry import load_target, target_path
from hwnas.latency.runners import Runner, RunnerError, Stats
from hwnas.latency.table import LatencyTable
from hwnas.latency.target import OVERHEAD_PART
from hwnas.space.references import reference
from hwnas.space.searchspace import get_space

RES = 64
SMALL = reference("mobilenetv3_small")
LARGE = reference("mobilenetv3_large")


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("HWNAS_HOME", str(tmp_path / "home"))
    return tmp_path / "home"


@pytest.fixture
def counted(monkeypatch: pytest.MonkeyPatch) -> list[LayerKey]:
    """Replace the measuring function by one that records the keys it is asked for."""
    asked: list[LayerKey] = []

    def fake_measure(keys, runner, runs, warmup, threads):
        asked.extend(keys)
        return {k: Stats(fake_ms(k), fake_ms(k), fake_ms(k), runs) for k in keys}, OVERHEAD_MS

    monkeypatch.setattr(measured_mod, "_measure", fake_measure)
    return asked


def _target(tmp_path: Path, runner: Runner | None = None) -> MeasuredTarget:
    proto = {"threads": 1, "key_runs": 5, "key_warmup": 1}
    table = LatencyTable.create(tmp_path / "dev", {"runner": {"kind": "local"}, "protocol": proto})
    return MeasuredTarget("dev", table, runner or FakeRunner())


def test_on_demand_fill_measures_only_missing_keys(tmp_path: Path, counted: list[LayerKey]) -> None:
    t = _target(tmp_path)
    small = layer_keys(SMALL, RES)
    ms = t.predict(SMALL, RES)
    assert sorted(map(str, counted)) == sorted(set(map(str, small)))
    assert ms == pytest.approx(sum(fake_ms(k) for k in small) + OVERHEAD_MS)
    counted.clear()
    t.predict(SMALL, RES)
    assert counted == []  # all cached
    large = layer_keys(LARGE, RES)
    t.predict(LARGE, RES)
    assert set(counted) == set(large) - set(small) and len(counted) == len(set(counted))
    # the fill reached the disk, with provenance of the first fill
    back = LatencyTable.load(t.table.path)
    assert set(back) == {str(k) for k in small + large}
    prov = back.provenance
    assert prov["overhead_ms"] == OVERHEAD_MS and prov["device"]["cpu"] == "imaginary"
    assert prov["runtime"] == "fake" and prov["threads"] == 1 and prov["first_fill"]
    assert prov["measurement"] == {"clock": "fake", "threads": 1}  # the runner's protocol


def test_fill_skips_keys_another_process_stored(tmp_path: Path, counted: list[LayerKey]) -> None:
    t = _target(tmp_path)
    keys = layer_keys(SMALL, RES)
    other = LatencyTable.load(t.table.path)  # "another process"
    other.update({k: Stats(9.0, 9.0, 9.0, 5) for k in keys[:5]})
    assert t.fill(keys) == len(set(keys)) - 5
    assert set(counted) == set(keys[5:])
    assert t.table[keys[0]].median == 9.0


def test_fill_skips_keys_stored_meanwhile(tmp_path: Path, monkeypatch) -> None:
    """Keys another process stores while a fill runs are not measured again."""
    monkeypatch.setattr(measured_mod, "FILL_CHUNK", 4)
    t = _target(tmp_path)
    keys = list(dict.fromkeys(layer_keys(LARGE, RES)))
    asked: list[LayerKey] = []

    def racing(chunk, runner, runs, warmup, threads):
        if not asked:  # meanwhile "another process" stores the next chunk
            LatencyTable.load(t.table.path).update({k: Stats(7.0, 7.0, 7.0, 5) for k in keys[4:8]})
        asked.extend(chunk)
        return {k: Stats(1.0, 1.0, 1.0, 5) for k in chunk}, OVERHEAD_MS

    monkeypatch.setattr(measured_mod, "_measure", racing)
    assert t.fill(keys) == len(keys) - 4
    assert not set(asked) & set(keys[4:8]) and t.table[keys[5]].median == 7.0


def test_breakdown_has_an_overhead_row_and_sums_to_predict(tmp_path: Path, counted) -> None:
    t = _target(tmp_path)
    frame = t.breakdown(SMALL, RES)
    assert frame.iloc[-1].part == OVERHEAD_PART and frame.iloc[-1].ms == OVERHEAD_MS
    assert frame.ms.sum() == pytest.approx(t.predict(SMALL, RES))
    assert set(frame.source) == {"measured"}
    assert t.predict_many([SMALL, LARGE], RES) == pytest.approx(
        [t.predict(SMALL, RES), t.predict(LARGE, RES)]
    )


def test_chunks_are_stored_as_they_finish(tmp_path: Path, monkeypatch) -> None:
    calls = []

    def flaky(keys, runner, runs, warmup, threads):
        calls.append(len(keys))
        if len(calls) == 2:
            raise RunnerError("device went away")
        return {k: Stats(1.0, 1.0, 1.0, runs) for k in keys}, OVERHEAD_MS

    monkeypatch.setattr(measured_mod, "_measure", flaky)
    monkeypatch.setattr(measured_mod, "FILL_CHUNK", 4)
    t = _target(tmp_path)
    keys = layer_keys(LARGE, RES)
    with pytest.raises(RunnerError):
        t.fill(keys)
    assert len(LatencyTable.load(t.table.path)) == 4  # the first chunk survived


def test_real_measure_keys_with_a_fake_runner(tmp_path: Path) -> None:
    """Through measure_keys: the runner sees only missing keys, overhead is subtracted."""
    runner = FakeRunner()
    t = _target(tmp_path, runner)
    small = layer_keys(SMALL, RES)
    ms = t.predict(SMALL, RES)
    assert sorted(runner.measured) == sorted(set(map(str, small)))
    assert ms == pytest.approx(sum(fake_ms(k) for k in small) + OVERHEAD_MS, rel=1e-6)
    runner.measured.clear()
    t.predict(LARGE, RES)
    assert set(runner.measured) == {str(k) for k in set(layer_keys(LARGE, RES)) - set(small)}


def test_predict_many_index_path_on_a_measured_target(tmp_path: Path, counted,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    # The space's ~5,700 keys in one chunk: each stored chunk re-reads the table, which
    # at 32 keys a chunk made this test 178 reads of a growing table (chunking is
    # checked in the tests above, with FILL_CHUNK = 4).
    monkeypatch.setattr(measured_mod, "FILL_CHUNK", 100_000)
    space = get_space("mnasnet")
    t = _target(tmp_path)
    idx = space.sample_indices(np.random.default_rng(0), 5)
    fast = t.predict_many(idx, space=space, resolution=RES)
    slow = [t.predict(space.decode(space.from_indices(r)), RES) for r in idx]
    np.testing.assert_allclose(fast, slow, rtol=0, atol=1e-9)


# --- real measurements on this machine (small) ---------------------------------
REAL_RES = 32  # tiny layers: each is timed for protocol.MIN_TIME_MS anyway


def test_host_fills_on_demand_with_the_local_runner(home: Path) -> None:
    t = load_target("host")
    arch = reference("mobilenetv3_small")
    ms = t.predict(arch, REAL_RES)
    layers = layer_keys(arch, REAL_RES)
    keys = set(layers)
    back = LatencyTable.load(target_path("host"))
    assert set(back) == {str(k) for k in keys}
    prov = back.provenance
    assert prov["overhead_ms"] == back.overhead_ms and prov["device"]["runtime"] == "onnxruntime"
    assert prov["runtime_version"] and prov["key_protocol"]["threads"] == 1
    assert ms == pytest.approx(sum(back[k].median for k in layers) + prov["overhead_ms"])
    assert all(back[k].n >= 1 and back[k].p10 <= back[k].median <= back[k].p90 for k in keys)


def test_parallel_fill_with_two_local_workers(home: Path) -> None:
    t = load_target("host")
    keys = list(dict.fromkeys(layer_keys(reference("mnasnet_small"), REAL_RES)))
    assert t.fill(keys, workers=2) == len(keys)
    assert set(LatencyTable.load(target_path("host"))) == {str(k) for k in keys}
    assert t.fill(keys, workers=2) == 0  # resumable: nothing left to do


def test_measured_target_answers_for_itself(tmp_path: Path, counted) -> None:
    t = _target(tmp_path)
    keys = layer_keys(SMALL, RES)
    assert t.can_measure and set(t.missing(keys)) == set(keys)
    row = t.describe()
    assert row["name"] == "dev" and row["kind"] == "measured" and row["entries"] == 0
    assert row["device"] == "not measured yet" and row["runner"] == "local"
    t.fill(keys)
    assert t.missing(keys) == []
    row = t.describe()
    assert row["entries"] == len(set(keys)) and row["overhead_ms"] == OVERHEAD_MS
    assert row["device"] == "imaginary" and row["runtime"] == "fake 0"
    assert row["path"] == str(t.table.path)


def test_parallel_fill_needs_the_local_runner(tmp_path: Path) -> None:
    table = LatencyTable.create(tmp_path / "b", {"runner": {"kind": "ssh", "host": "h"}})
    t = MeasuredTarget("b", table, FakeRunner())
    with pytest.raises(
        ValueError, match="--workers 2 needs the local runner; target 'b' uses 'ssh'"
    ):
        t.fill(layer_keys(SMALL, RES), workers=2)


class _Drifted(FakeRunner):
    """The same fake device after an upgrade of its runtime."""

    def __init__(self, **changes: str) -> None:
        super().__init__()
        self.changes = changes

    def device_info(self) -> dict:
        return {**super().device_info(), **self.changes}


@pytest.mark.parametrize(
    "changes, what",
    [({"runtime_version": "1"}, "runtime_version '0'"), ({"cpu": "other"}, "cpu 'imaginary'")],
)
def test_a_fill_refuses_another_runtime_or_device(
    tmp_path: Path, counted: list[LayerKey], changes: dict, what: str
) -> None:
    keys = layer_keys(SMALL, RES)
    t = _target(tmp_path)
    t.fill(keys[:3])
    prov = t.table.provenance
    assert prov["fingerprint"] == {"cpu": "imaginary", "runtime": "fake", "runtime_version": "0"}
    assert prov["fills"][0]["keys"] == 3
    before = (t.table.path / "provenance.json").read_text()
    other = MeasuredTarget("dev", LatencyTable.load(t.table.path), _Drifted(**changes))
    with pytest.raises(ValueError, match=rf"measured with {what}.*\(e\.g\. --target dev-2\)$"):
        other.fill(keys[3:6])
    assert (t.table.path / "provenance.json").read_text() == before
    assert len(LatencyTable.load(t.table.path)) == 3

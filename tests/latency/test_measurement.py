"""``measure_keys`` (overhead subtracted) and ``measure_arch``, with a fake and the local runner."""

from __future__ import annotations

import os

import pytest
from fakes import OVERHEAD_MS, FakeRunner, fake_ms, sane

from hwnas.latency import measurement
from hwnas.latency.keys import LayerKey
from hwnas.latency.measurement import measure_arch, measure_keys, subtract_overhead
from hwnas.latency.runners import LocalRunner, Stats
from hwnas.space import Arch, BlockSpec, HeadSpec, StemSpec

KEYS = [
    LayerKey.parse(t)
    for t in (
        "stem_k3_s2_c8_nhs|3x16x16",
        "ir_k3_s1_m24_c8_se8h_nhs_skip|8x8x8",
        "ds_k5_s2_c16_se2s_nre_noskip|8x8x8",
        "head_v3_c32_f48_nhs_cls10|16x4x4",
    )
]
FAST = {"flush_mb": 1.0, "min_time_ms": 0.0}  # tests check wiring, not timing quality


def test_subtract_overhead_floors_at_zero() -> None:
    assert subtract_overhead(Stats(1.0, 0.5, 2.0, 7), 0.75) == Stats(0.25, 0.0, 1.25, 7)


def test_measure_keys_subtracts_the_overhead(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(measurement, "CHUNK", 3)
    runner = FakeRunner()
    seen: list[int] = []
    stats, overhead = measure_keys(
        [*KEYS, KEYS[0]], runner, runs=4, warmup=2, threads=1, progress=seen.append
    )
    assert overhead == OVERHEAD_MS
    assert list(stats) == KEYS  # de-duplicated, in order
    assert seen == [3, 4]
    first = runner.calls[0]
    assert first["names"] == ["empty"] and first["runs"] == measurement.OVERHEAD_RUNS
    assert [c["names"] for c in runner.calls[1:]] == [[str(k) for k in KEYS[:3]], [str(KEYS[3])]]
    assert all(c["runs"] == 4 and c["warmup"] == 2 for c in runner.calls[1:])
    for key in KEYS:
        raw = fake_ms(key) + OVERHEAD_MS  # what the fake device reports
        assert stats[key].median == pytest.approx(raw - OVERHEAD_MS)
        assert stats[key].p10 == pytest.approx(max(0.0, raw * 0.95 - OVERHEAD_MS))
        assert stats[key].n == 4


def test_measure_keys_empty_and_unbuildable() -> None:
    assert measure_keys([], FakeRunner()) == ({}, 0.0)
    with pytest.raises(ValueError, match="cannot build a graph for layer"):
        measure_keys([LayerKey("block", "mb", 8, 8, 8)], FakeRunner(), runs=1, warmup=0)
    with pytest.raises(ValueError, match="runs must be >= 1"):
        measure_keys(KEYS, FakeRunner(), runs=0)


def test_measure_keys_with_the_local_runner() -> None:
    """Wiring only: real graphs through onnxruntime, statistics well formed."""
    seen: list[int] = []
    stats, overhead = measure_keys(
        KEYS, LocalRunner(**FAST), runs=3, warmup=1, progress=seen.append
    )
    assert list(stats) == KEYS and seen == [4] and isinstance(overhead, float)
    for s in stats.values():
        sane(s, 3)


ARCH = Arch(
    StemSpec(8, act="hswish"),
    ((BlockSpec("ir", 3, 2, 16, exp_ratio=3.0, se_ratio=0.25, act="hswish"),),),
    HeadSpec("v3", 32, 48, act="hswish"),
)


def test_measure_arch_hands_the_whole_network_to_the_runner() -> None:
    runner = FakeRunner()
    s = measure_arch(ARCH, resolution=32, runner=runner, runs=3, warmup=1, num_classes=10)
    assert s == Stats(OVERHEAD_MS, OVERHEAD_MS * 0.95, OVERHEAD_MS * 1.05, 3)  # not a layer key
    assert runner.calls == [{"names": ["net"], "runs": 3, "warmup": 1, "threads": 1}]
    with pytest.raises(ValueError, match="resolution must be >= 1"):
        measure_arch(ARCH, resolution=0)


def test_measure_arch_end_to_end_locally() -> None:
    s = measure_arch(
        ARCH, resolution=32, runner=LocalRunner(**FAST), runs=3, warmup=1, num_classes=10
    )
    sane(s, 3)


# --- the standard protocol (warm, repeated session.run) ------------------------
def test_time_session_runs_is_the_runtimes_own_loop() -> None:
    calls: list[dict] = []

    class Sess:
        def run(self, outputs, feeds):
            calls.append(feeds)

    ticks = iter(range(0, 10**9, 1_000_000))  # every clock read advances 1 ms
    times = measurement.time_session_runs(
        Sess(), {"x": 1}, runs=4, warmup=2, timer=lambda: next(ticks)
    )
    assert times == [1.0, 1.0, 1.0, 1.0]
    assert len(calls) == 6 and all(c == {"x": 1} for c in calls)  # same inputs, nothing between


def test_measure_arch_standard_locally_and_through_other_runners() -> None:
    s = measure_arch(ARCH, resolution=32, runs=5, warmup=1, num_classes=10, protocol="standard")
    assert s.n == 5 and 0 < s.p10 <= s.median <= s.p90
    runner = FakeRunner()  # not local: the runner times the runtime's own loop on its device
    s = measure_arch(ARCH, 32, runner, runs=3, warmup=1, num_classes=10, protocol="standard")
    assert s.median == OVERHEAD_MS and len(runner.calls) == 1
    with pytest.raises(ValueError, match="protocol must be one of standard, flushed"):
        measure_arch(ARCH, 32, runner, protocol="cold")


# --- reuse_exports: one export per network across a validation's rounds --------
class PathRecorder(FakeRunner):
    """The fake runner, also recording the file and its bytes it was handed."""

    def __init__(self) -> None:
        super().__init__()
        self.files: list[tuple[str, bytes]] = []

    def _measure(self, models, *, runs, warmup, threads):
        self.files += [(str(p), p.read_bytes()) for p in models.values()]
        return super()._measure(models, runs=runs, warmup=warmup, threads=threads)


def _count_exports(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    import hwnas.space

    seen: list[str] = []
    real = hwnas.space.export_onnx

    def counting(arch, path, **kw):
        seen.append(arch.to_str())
        return real(arch, path, **kw)

    monkeypatch.setattr(hwnas.space, "export_onnx", counting)
    return seen


def test_reuse_exports_exports_each_network_once(monkeypatch: pytest.MonkeyPatch) -> None:
    exports = _count_exports(monkeypatch)
    other = Arch(ARCH.stem, ARCH.stages, HeadSpec("v3", 32, 64, act="hswish"))
    runner = PathRecorder()
    kw = dict(runner=runner, runs=2, warmup=0, num_classes=10, protocol="standard")
    with measurement.reuse_exports():
        for _ in range(3):
            measure_arch(ARCH, 32, **kw)
            measure_arch(other, 32, **kw)
        with measurement.reuse_exports():  # nested: the outer block's files
            measure_arch(ARCH, 32, **kw)
        measure_arch(ARCH, 40, **kw)  # another resolution is another file
        kept = [p for p, _ in runner.files]
        assert all(os.path.exists(p) for p in kept)
    assert exports == [ARCH.to_str(), other.to_str(), ARCH.to_str()]
    paths = [p for p, _ in runner.files]
    assert paths[0] == paths[2] == paths[4] == paths[6] != paths[1] == paths[3] == paths[5]
    assert paths[7] not in paths[:7]
    assert runner.files[0][1] == runner.files[6][1]  # the same bytes each round
    assert not any(os.path.exists(p) for p in kept)  # removed with the block
    measure_arch(ARCH, 32, **kw)
    measure_arch(ARCH, 32, **kw)
    assert len(exports) == 5  # outside the block: one export per call, as before


def test_measure_networks_exports_once_and_rebuilds_per_round(
    monkeypatch: pytest.MonkeyPatch, tmp_path
) -> None:
    from hwnas.latency.measured_target import MeasuredTarget
    from hwnas.latency.table import LatencyTable
    from hwnas.latency.validation import measure_networks, validation_archs

    exports = _count_exports(monkeypatch)
    runner = PathRecorder()
    table = LatencyTable.create(
        tmp_path / "dev",
        {"runner": {"kind": "local"}, "protocol": {"threads": 1, "runs": 2, "warmup": 0}},
    )
    t = MeasuredTarget("dev", table, runner)
    archs = validation_archs("mnasnet", 2, seed=3)
    got = measure_networks(t, archs, 32, rounds=3)
    assert len(got) == 2 and len(runner.calls) == 6  # every round asks the runner again
    assert sorted(exports) == sorted(a.to_str() for a in archs)  # but exports once

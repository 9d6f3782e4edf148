"""Local measurement: the runner, per-key tables with the overhead subtracted, whole networks."""

from __future__ import annotations

import io
import json
import os
from collections.abc import Mapping
from pathlib import Path

import onnx
import pytest

from hwnas.latency import remote_measure as rm
from hwnas.latency.graphs import empty_model, key_model
from hwnas.latency.keys import LayerKey
from hwnas.latency.measure import LocalRunner, measure_arch, measure_keys
from hwnas.latency.runner import Runner, RunnerError, Stats
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
CAN_PIN_TWO = hasattr(os, "sched_getaffinity") and len(os.sched_getaffinity(0)) >= 2


def _sane(s: Stats, runs: int) -> None:
    assert s.n >= runs
    assert 0 <= s.p10 <= s.median <= s.p90


def test_local_runner_measures_paths_and_bytes(tmp_path: Path) -> None:
    path = tmp_path / "k.onnx"
    onnx.save(key_model(KEYS[1]), path)
    runner = LocalRunner(**FAST)
    before = os.sched_getaffinity(0) if hasattr(os, "sched_getaffinity") else None
    stats = runner.measure(
        {"file": path, "mem": key_model(KEYS[0]).SerializeToString()}, runs=3, warmup=1
    )
    assert set(stats) == {"file", "mem"}
    for s in stats.values():
        _sane(s, 3)
        assert s.median > 0
    if before is not None:
        assert os.sched_getaffinity(0) == before  # pinning is undone


def test_local_runner_runs_until_min_time_within_max_runs() -> None:
    model = empty_model(3, 8).SerializeToString()
    s = LocalRunner(flush_mb=0, min_time_ms=1e6, max_runs=40).measure(
        {"e": model}, runs=5, warmup=0
    )["e"]
    assert s.n == 40
    s = LocalRunner(flush_mb=0, min_time_ms=0, max_runs=40).measure({"e": model}, runs=5, warmup=0)[
        "e"
    ]
    assert s.n == 5


def test_local_runner_reports_its_protocol() -> None:
    info = LocalRunner(**FAST).device_info()
    assert info["runner"] == "local" and info["runtime"] == "onnxruntime"
    assert info["measurement"]["clock"] == "cpu" and info["measurement"]["flush_mb"] == 1.0
    assert LocalRunner(**FAST).protocol(threads=2)["clock"] == "wall"


def test_local_runner_errors(tmp_path: Path) -> None:
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"not a model")
    runner = LocalRunner(**FAST)
    with pytest.raises(RunnerError, match="local measurement of 'bad' failed") as e:
        runner.measure({"bad": bad}, runs=1, warmup=0)
    assert "\n" not in str(e.value)
    with pytest.raises(ValueError, match="no file"):
        runner.measure({"gone": tmp_path / "gone.onnx"}, runs=1, warmup=0)
    with pytest.raises(ValueError, match="runs must be >= 1"):
        runner.measure({}, runs=0)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"clock": "tsc"}, "clock must be one of auto, cpu, wall"),
        ({"flush_mb": -1}, "flush_mb and min_time_ms must be >= 0"),
        ({"cpus": [10_000]}, "cpus must be a non-empty subset"),
    ],
)
def test_local_runner_validates_arguments(kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        LocalRunner(**kwargs)


def test_cpu_clock_needs_one_thread_and_workers_need_cores() -> None:
    with pytest.raises(ValueError, match="clock 'cpu' times only the calling thread"):
        LocalRunner(clock="cpu").clock_for(2)
    runner = LocalRunner(**FAST)
    with pytest.raises(ValueError, match="workers x threads must be <="):
        runner.worker_cpus(len(runner.cpus) + 1, 1)
    cores = runner.worker_cpus(len(runner.cpus), 1)
    assert sorted(c for cs in cores for c in cs) == sorted(runner.cpus)


def test_measure_keys_in_process_subtracts_the_overhead() -> None:
    seen: list[int] = []
    runner = LocalRunner(**FAST)
    stats, overhead = measure_keys([*KEYS, KEYS[0]], runner, runs=3, warmup=1, progress=seen.append)
    assert list(stats) == KEYS  # de-duplicated, in order
    assert seen == [1, 2, 3, 4]
    assert 0 < overhead < min(s.median for s in stats.values())
    for s in stats.values():
        _sane(s, 3)


@pytest.mark.skipif(not CAN_PIN_TWO, reason="needs two usable cores")
def test_measure_keys_with_two_worker_processes() -> None:
    seen: list[int] = []
    stats, overhead = measure_keys(
        KEYS, LocalRunner(**FAST), runs=2, warmup=1, workers=2, progress=seen.append
    )
    assert set(stats) == set(KEYS) and seen == [1, 2, 3, 4] and overhead > 0
    for s in stats.values():
        _sane(s, 2)


def test_measure_keys_rejects_keys_it_cannot_build() -> None:
    with pytest.raises(ValueError, match="cannot build a graph for layer"):
        measure_keys([LayerKey("block", "mb", 8, 8, 8)], LocalRunner(**FAST), runs=1, warmup=0)


class FakeRunner(Runner):
    """Answers 0.5 ms for the empty graph and 0.1 ms per KB of model file for the others."""

    name = "fake"

    def __init__(self) -> None:
        self.calls: list[dict] = []

    def measure(
        self, models: Mapping[str, Path], *, runs: int = 1, warmup: int = 0, threads: int = 1
    ) -> dict[str, Stats]:
        self.calls.append(
            {"names": list(models), "runs": runs, "warmup": warmup, "threads": threads}
        )
        out = {}
        for name, path in models.items():
            model = onnx.load(path)  # a real ONNX file
            ms = 0.5 if name == "empty" else 0.1 * Path(path).stat().st_size / 1024
            assert (name == "empty") == (model.graph.node[0].op_type == "Shape")
            out[name] = Stats(ms, ms * 0.9, ms * 1.1, runs)
        return out

    def device_info(self) -> dict:
        return {"name": "fake"}


def test_measure_keys_with_any_runner_writes_files_and_subtracts(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr("hwnas.latency.measure.CHUNK", 3)
    runner = FakeRunner()
    seen: list[int] = []
    stats, overhead = measure_keys(KEYS, runner, runs=4, warmup=2, threads=1, progress=seen.append)
    assert overhead == 0.5
    assert seen == [3, 4]
    assert runner.calls[0]["names"] == ["empty"] and runner.calls[0]["runs"] >= 4
    assert [c["names"] for c in runner.calls[1:]] == [[str(k) for k in KEYS[:3]], [str(KEYS[3])]]
    for key in KEYS:
        size_kb = len(key_model(key).SerializeToString()) / 1024
        raw = 0.1 * size_kb
        assert stats[key].median == pytest.approx(max(0.0, raw - 0.5))
        assert stats[key].p10 == pytest.approx(max(0.0, raw * 0.9 - 0.5))
        assert stats[key].n == 4
    assert stats[KEYS[0]].median == 0.0  # a 2 KB stem: below the overhead, floored at 0


def test_measure_keys_other_runners_take_one_worker() -> None:
    with pytest.raises(ValueError, match="workers must be 1 for the 'fake' runner"):
        measure_keys(KEYS, FakeRunner(), workers=2)
    assert measure_keys([], FakeRunner()) == ({}, 0.0)


def test_measure_arch_end_to_end() -> None:
    arch = Arch(
        StemSpec(8, act="hswish"),
        ((BlockSpec("ir", 3, 2, 16, exp_ratio=3.0, se_ratio=0.25, act="hswish"),),),
        HeadSpec("v3", 32, 48, act="hswish"),
    )
    s = measure_arch(
        arch, resolution=32, runner=LocalRunner(**FAST), runs=3, warmup=1, num_classes=10
    )
    _sane(s, 3)
    assert s.median > 0
    with pytest.raises(ValueError, match="resolution must be >= 1"):
        measure_arch(arch, resolution=0)


def test_time_calls_protocol() -> None:
    calls: list[str] = []
    times = rm.time_calls(
        lambda: calls.append("run"), warmup=2, runs=3, before=lambda: calls.append("flush")
    )
    assert len(times) == 3
    assert calls == ["run", "run"] + ["flush", "run"] * 3  # warm-up runs are not flushed
    with pytest.raises(ValueError, match="clock must be one of wall, cpu"):
        rm.time_calls(lambda: None, warmup=0, runs=1, clock="tsc")
    assert rm.cache_flusher(0) is None
    with pytest.raises(ValueError, match="flush size must be >= 0 MB"):
        rm.cache_flusher(-1)


def test_serve_answers_each_model_and_errors_in_one_line() -> None:
    good = key_model(KEYS[1]).SerializeToString()
    bad = b"not a model"
    inp = io.BytesIO()
    for payload, runs in ((good, 3), (bad, None)):
        request = {"size": len(payload)} | ({"runs": runs} if runs else {})
        inp.write(json.dumps(request).encode() + b"\n" + payload)
    inp.seek(0)
    out = io.BytesIO()
    config = {"threads": 1, "warmup": 1, "runs": 2, "flush_mb": 1, "clock": "cpu", "cpus": []}
    assert rm.serve(config, inp, out) == 0
    first, second = (json.loads(line) for line in out.getvalue().decode().splitlines())
    _sane(Stats(**first), 3)
    assert second["error"].startswith(("InvalidProtobuf", "Fail", "RuntimeException"))
    assert "\n" not in second["error"]


def test_a_dead_worker_is_a_runner_error(monkeypatch: pytest.MonkeyPatch) -> None:
    code = "import sys; sys.stderr.write('first\\nboom\\n'); sys.exit(3)"
    monkeypatch.setattr("hwnas.latency.measure._WORKER_CODE", code)
    with pytest.raises(RunnerError, match="measuring worker exited 3: boom"):
        measure_keys(KEYS, LocalRunner(pin=False, **FAST), runs=1, warmup=0, workers=2)

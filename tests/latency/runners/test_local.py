"""``LocalRunner``: onnxruntime on this machine, through the protocol's code."""

from __future__ import annotations

import os
from pathlib import Path

import onnx
import pytest
from fakes import sane

from hwnas.latency.graphs import empty_model, key_model
from hwnas.latency.keys import LayerKey
from hwnas.latency.runners import LocalRunner, RunnerError, protocol

KEY = LayerKey.parse("ir_k3_s1_m24_c8_se8h_nhs_skip|8x8x8")
FAST = {"flush_mb": 1.0, "min_time_ms": 0.0}  # tests check wiring, not timing quality


def test_local_runner_measures_paths_and_bytes(tmp_path: Path) -> None:
    path = tmp_path / "k.onnx"
    onnx.save(key_model(KEY), path)
    runner = LocalRunner(**FAST)
    before = os.sched_getaffinity(0) if hasattr(os, "sched_getaffinity") else None
    stats = runner.measure(
        {"file": path, "mem": empty_model(3, 8).SerializeToString()}, runs=3, warmup=1
    )
    assert list(stats) == ["file", "mem"]
    for s in stats.values():
        sane(s, 3)
    assert stats["file"].n == 3  # min_time_ms 0: exactly the runs asked
    if before is not None:
        assert os.sched_getaffinity(0) == before  # pinning is undone


def test_local_runner_caps_runs_at_max_runs() -> None:
    model = empty_model(3, 8).SerializeToString()
    s = LocalRunner(flush_mb=0, min_time_ms=1e6, max_runs=40).measure(
        {"e": model}, runs=5, warmup=0
    )
    assert s["e"].n == 40


def test_local_runner_reports_its_protocol() -> None:
    runner = LocalRunner(**FAST)
    info = runner.device_info()
    assert info["runner"] == "local" and info["runtime"] == "onnxruntime"
    assert info["measurement"] == {
        "clock": "cpu",
        "flush_mb": 1.0,
        "min_time_ms": 0.0,
        "max_runs": protocol.MAX_RUNS,
        "io_binding": True,
        "pinned": True,
    }
    assert runner.protocol(threads=2)["clock"] == "wall"


def test_local_runner_errors(tmp_path: Path) -> None:
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"not a model")
    runner = LocalRunner(**FAST)
    with pytest.raises(RunnerError, match="local measurement of 'bad' failed") as e:
        runner.measure({"bad": bad}, runs=1, warmup=0)
    assert "\n" not in str(e.value)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"clock": "tsc"}, "clock must be one of auto, wall, cpu"),
        ({"flush_mb": -1}, "flush_mb and min_time_ms must be >= 0"),
        ({"max_runs": 0}, "max_runs >= 1"),
        ({"cpus": [10_000]}, "cpus must be a non-empty subset"),
    ],
)
def test_local_runner_validates_arguments(kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        LocalRunner(**kwargs)


def test_cpu_clock_needs_one_thread_and_workers_need_cores() -> None:
    with pytest.raises(ValueError, match="clock 'cpu' times only the calling thread"):
        LocalRunner(clock="cpu").protocol(2)
    runner = LocalRunner(**FAST)
    with pytest.raises(ValueError, match="workers x threads must be <="):
        runner.worker_cpus(len(runner.cpus) + 1, 1)
    with pytest.raises(ValueError, match="workers must be >= 1"):
        runner.worker_cpus(0, 1)
    cores = runner.worker_cpus(len(runner.cpus), 1)
    assert sorted(c for cs in cores for c in cs) == sorted(runner.cpus)
    assert LocalRunner(pin=False).worker_cpus(3, 1) == [[], [], []]


def test_host_pins_to_the_fastest_core_not_core_0(monkeypatch: pytest.MonkeyPatch) -> None:
    import os

    from hwnas.latency.runners import local, protocol

    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1, 2, 3})
    clocks = {0: 1800000, 1: 1800000, 2: 2400000, 3: 2900000}  # big.LITTLE: core 3 is the big one
    monkeypatch.setattr(protocol, "max_freq", lambda c: clocks[c])
    runner = local.LocalRunner()
    assert runner.cpus[0] == 3
    assert runner.worker_cpus(1, 1) == [[3]]
    assert runner.worker_cpus(2, 1) == [[3], [2]]

"""The measuring protocol: the program the ssh runner runs on a board, and its timing logic."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import onnxruntime
import pytest
from fakes import conv_model, sane

from hwnas.latency.runners import Stats, protocol


def _sane(s: Stats, runs: int) -> None:
    sane(s, runs)


class Ticks:
    """An injected clock: each reading is ``step_ns`` after the last."""

    def __init__(self, step_ns: int) -> None:
        self.now, self.step = 0, step_ns

    def __call__(self) -> int:
        self.now += self.step
        return self.now


def test_time_calls_protocol() -> None:
    calls: list[str] = []
    times = protocol.time_calls(
        lambda: calls.append("run"), warmup=2, runs=3, before=lambda: calls.append("flush")
    )
    assert len(times) == 3
    assert calls == ["run", "run"] + ["flush", "run"] * 3  # warm-up runs are not flushed
    with pytest.raises(ValueError, match="clock must be one of wall, cpu"):
        protocol.time_calls(lambda: None, warmup=0, runs=1, clock="tsc")


@pytest.mark.parametrize(
    "runs, min_time_ms, max_runs, expected",
    [(3, 10.0, 60, 10), (3, 0.0, 60, 3), (3, 1e6, 40, 40), (12, 10.0, 60, 12), (3, 10.0, None, 3)],
)
def test_time_calls_runs_until_min_time_within_max_runs(
    runs: int, min_time_ms: float, max_runs: int | None, expected: int
) -> None:
    """Each timed call reads 1 ms on the injected clock."""
    times = protocol.time_calls(
        lambda: None,
        warmup=0,
        runs=runs,
        min_time_ms=min_time_ms,
        max_runs=max_runs,
        timer=Ticks(1_000_000),
    )
    assert times == [1.0] * expected


def test_resolve_clock_and_flusher() -> None:
    assert protocol.resolve_clock("auto", 1) == "cpu"
    assert protocol.resolve_clock("auto", 2) == "wall"
    assert protocol.resolve_clock("wall", 1) == "wall"
    with pytest.raises(ValueError, match="clock 'cpu' times only the calling thread"):
        protocol.resolve_clock("cpu", 2)
    with pytest.raises(ValueError, match="clock must be one of auto, wall, cpu"):
        protocol.resolve_clock("tsc", 1)
    assert protocol.cache_flusher(0) is None
    with pytest.raises(ValueError, match="flush size must be >= 0 MB"):
        protocol.cache_flusher(-1)


def test_measure_models_takes_paths_and_bytes(tmp_path: Path) -> None:
    path = conv_model(tmp_path / "a.onnx", 4, 8, 0)
    stats = protocol.measure_models(
        {"file": path, "mem": path.read_bytes()},
        threads=1,
        warmup=1,
        runs=3,
        flush_mb=1,
        min_time_ms=0,
    )
    assert set(stats) == {"file", "mem"}
    for raw in stats.values():
        _sane(Stats(**raw), 3)


def test_summarize_uses_linear_percentiles() -> None:
    assert protocol.summarize([5.0, 1.0, 4.0, 2.0, 3.0]) == {
        "median": 3.0,
        "p10": 1.4,
        "p90": 4.6,
        "n": 5,
    }
    with pytest.raises(ValueError, match="no timed runs"):
        protocol.summarize([])


def test_protocol_program_measures_a_folder(tmp_path: Path) -> None:
    folder = tmp_path / "m"
    folder.mkdir()
    conv_model(folder / "m0000.onnx", 8, 16, 0)
    conv_model(folder / "m0001.onnx", 4, 32, 1)
    done = subprocess.run(
        [
            sys.executable,
            protocol.__file__,
            "--threads",
            "1",
            "--warmup",
            "2",
            "--runs",
            "7",
            "--min-time-ms",
            "0",
            str(folder),
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    doc = json.loads(done.stdout)
    assert doc["format"] == protocol.FORMAT_VERSION
    assert set(doc["results"]) == {"m0000", "m0001"}
    for raw in doc["results"].values():
        _sane(Stats(**raw), 7)
    assert doc["device"]["runtime_version"] == onnxruntime.__version__
    assert doc["protocol"] == {
        "threads": 1,
        "warmup": 2,
        "runs": 7,
        "batch": 1,
        "clock": "cpu",  # auto with one thread
        "flush_mb": protocol.FLUSH_MB,
        "min_time_ms": 0.0,
        "max_runs": protocol.MAX_RUNS,
        "runtime": "onnxruntime",
        "io_binding": True,
        "pinned_cpus": doc["protocol"]["pinned_cpus"],
    }
    if hasattr(os, "sched_setaffinity"):
        assert len(doc["protocol"]["pinned_cpus"]) == 1
        assert set(doc["protocol"]["pinned_cpus"]) <= os.sched_getaffinity(0)


@pytest.mark.parametrize(
    "content, message",
    [
        (None, "no .onnx files in"),
        (b"not a protobuf", "protocol.py: "),
    ],
)
def test_protocol_program_fails_in_one_line(
    tmp_path: Path, content: bytes | None, message: str
) -> None:
    if content is not None:
        (tmp_path / "broken.onnx").write_bytes(content)
    done = subprocess.run(
        [sys.executable, protocol.__file__, "--runs", "2", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 1
    assert done.stdout == ""
    assert message in done.stderr and len(done.stderr.strip().splitlines()) == 1


def test_protocol_program_measures_only_named_models(tmp_path: Path) -> None:
    for i in range(3):
        conv_model(tmp_path / f"m{i:04d}.onnx", 4, 8, i)
    argv = [
        sys.executable,
        protocol.__file__,
        "--runs",
        "2",
        "--warmup",
        "0",
        "--no-pin",
        str(tmp_path),
    ]
    done = subprocess.run(
        [*argv, "--names", "m0002,m0000"], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    doc = json.loads(done.stdout)
    assert set(doc["results"]) == {"m0000", "m0002"} and doc["protocol"]["pinned_cpus"] == []
    done = subprocess.run([*argv, "--names", "m0009"], capture_output=True, text=True, timeout=60)
    assert done.returncode == 1 and "no m0009.onnx in" in done.stderr


def test_protocol_reads_itself_from_stdin_for_info() -> None:
    done = subprocess.run(
        [sys.executable, "-", "--info"],
        input=Path(protocol.__file__).read_text(),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    device = json.loads(done.stdout)["device"]
    assert device["runtime"] == "onnxruntime" and device["cpu"]
    assert device["os"].split()[0] == os.uname().sysname


@pytest.mark.parametrize(
    "cpuinfo, name",
    [
        (
            "processor\t: 0\nvendor_id\t: GenuineIntel\n"
            "model name\t: Intel(R) Xeon(R) CPU @ 2.20GHz\n",
            "Intel(R) Xeon(R) CPU @ 2.20GHz",
        ),
        (
            "processor\t: 0\nBogoMIPS\t: 38.40\nCPU part\t: 0xd05\n\n"
            "Hardware\t: Qualcomm Technologies, Inc SM8150\n",
            "Qualcomm Technologies, Inc SM8150",
        ),
        (
            "processor\t: 0\nCPU implementer\t: 0x41\nCPU part\t: 0xd08\n",
            "arm implementer 0x41 part 0xd08",
        ),
        ("", ""),
    ],
)
def test_cpu_model_from_cpuinfo(cpuinfo: str, name: str) -> None:
    assert protocol.cpu_model_from(cpuinfo) == name

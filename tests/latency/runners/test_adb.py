"""``AdbRunner`` against ``fake_adb``, which plays a phone: a file system,
``getprop``, ``taskset`` and ``onnxruntime_perf_test`` with the real tool's
options and result-file format.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
from pathlib import Path

import pytest
from fakes import NAMES

from hwnas.common.errors import HwnasError
from hwnas.latency.keys import LayerKey
from hwnas.latency.runners import AdbRunner, RunnerError, Stats, parse_perf_test_results, protocol
from hwnas.latency.tflite_graphs import key_tflite

FAKE_ADB = Path(__file__).with_name("fake_adb")
SERIAL = "R58M41ABCDE"
# Per-run seconds the fake benchmark reports: three slow cold runs, then steady ones.
TIMES_S = [0.009, 0.008, 0.007, 0.0020, 0.0022, 0.0019, 0.0023, 0.0021]
BIG_LITTLE = {
    **{str(c): 1804800 for c in range(4)},
    **{str(c): 2419200 for c in (4, 5, 6)},
    "7": 2841600,
}
PIXEL_PROPS = {
    "ro.product.manufacturer": "Google",
    "ro.product.model": "Pixel 4",
    "ro.product.device": "flame",
    "ro.build.version.release": "13",
    "ro.build.version.sdk": "33",
    "ro.product.cpu.abi": "arm64-v8a",
    "ro.soc.manufacturer": "Qualcomm",
    "ro.soc.model": "SM8150",
}


class FakeAdb:
    """Configures ``fake_adb`` and reads what it was asked."""

    def __init__(self, home: Path) -> None:
        self.home = home
        self.config: dict = {
            "devices": {SERIAL: "device"},
            "props": PIXEL_PROPS,
            "taskset": True,
            "times_s": TIMES_S,
            "installed": [],
            "cpuinfo": "processor\t: 0\nCPU part\t: 0xd0d\nHardware\t: Qualcomm SM8150\n",
        }
        self.tool = home / "onnxruntime_perf_test"  # the host copy that gets pushed
        self.tool.write_bytes(b"\x7fELF not really\n")
        self.write(max_freq=BIG_LITTLE)

    def write(self, **changes: object) -> None:
        self.config.update(changes)
        (self.home / "config.json").write_text(json.dumps(self.config))
        cpu = self.home / "fs/sys/devices/system/cpu"
        shutil.rmtree(cpu, ignore_errors=True)
        for core, khz in self.config.get("max_freq", {}).items():
            (cpu / f"cpu{core}/cpufreq").mkdir(parents=True)
            (cpu / f"cpu{core}/cpufreq/cpuinfo_max_freq").write_text(f"{khz}\n")
        (self.home / "fs/proc").mkdir(parents=True, exist_ok=True)
        (self.home / "fs/proc/cpuinfo").write_text(self.config["cpuinfo"])

    def runner(self, **kw: object) -> AdbRunner:
        return AdbRunner(
            kw.pop("serial", SERIAL),
            adb=str(FAKE_ADB),  # type: ignore[arg-type]
            perf_test=kw.pop("perf_test", str(self.tool)),
            **kw,
        )  # type: ignore[arg-type]

    def calls(self) -> list[dict]:
        path = self.home / "calls.jsonl"
        return [json.loads(ln) for ln in path.read_text().splitlines()] if path.exists() else []

    def perf_runs(self) -> list[dict]:
        return [c for c in self.calls() if "perf_test" in c]

    def device_path(self, path: str) -> Path:
        return self.home / "fs" / path.lstrip("/")


@pytest.fixture
def fake(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> FakeAdb:
    home = tmp_path / "phone"
    home.mkdir()
    monkeypatch.setenv("FAKE_ADB_DIR", str(home))
    # the fake (#!/usr/bin/env python3) runs models with this interpreter's onnxruntime/LiteRT
    monkeypatch.setenv("PATH", f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}")
    return FakeAdb(home)


REMOTE = "/data/local/tmp/hwnas"
TOOL = f"{REMOTE}/bin/onnxruntime_perf_test"


def pushes(fake: FakeAdb) -> list[list[str]]:
    return [c["argv"] for c in fake.calls() if "push" in c.get("argv", [])]


def test_adb_runner_pushes_runs_perf_test_and_drops_warmup(
    fake: FakeAdb, models: dict[str, Path]
) -> None:
    stats = fake.runner().measure(models, runs=5, warmup=3)
    expected = Stats(**protocol.summarize([t * 1000 for t in TIMES_S[3:8]]))
    assert stats == {NAMES[0]: expected, NAMES[1]: expected}
    assert expected.median == pytest.approx(2.1)
    runs = fake.perf_runs()
    assert len(runs) == 2
    for run, stem in zip(runs, ("m0000", "m0001"), strict=True):
        assert run["taskset"] == "80"  # cpu7, the prime core
        assert run["perf_test"] == [
            TOOL, "-e", "cpu", "-m", "times", "-r", "8", "-x", "1", "-y", "1", "-o", "99",
            "-I", "-s", f"{stem}.onnx", f"{stem}.csv",
        ]
    assert [p[-1] for p in pushes(fake)] == [f"{REMOTE}/bin/", f"{REMOTE}/work/"]
    assert all(
        c["argv"][:2] == ["-s", SERIAL]
        for c in fake.calls()
        if "argv" in c and c["argv"] != ["devices"]
    )
    # the models are gone, the tool and the runner's mark stay for the next build
    assert sorted(p.name for p in fake.device_path(REMOTE).rglob("*")) == [
        ".hwnas-runner", "bin", "onnxruntime_perf_test", "work"
    ]


def test_adb_runner_pushes_the_tool_once_across_builds(
    fake: FakeAdb, models: dict[str, Path]
) -> None:
    fake.runner().measure(models, runs=2, warmup=0)
    fake.runner().measure(models, runs=2, warmup=0)  # a second build: a new runner
    tool_pushes = [p for p in pushes(fake) if p[-1].endswith("/bin/")]
    assert len(tool_pushes) == 1
    fake.tool.write_bytes(b"\x7fELF a newer build\n")  # a new binary is pushed again
    fake.runner().measure(models, runs=2, warmup=0)
    assert len([p for p in pushes(fake) if p[-1].endswith("/bin/")]) == 2


def test_adb_runner_uses_the_kept_tool_without_perf_test(
    fake: FakeAdb, models: dict[str, Path]
) -> None:
    with pytest.raises(RunnerError, match=r"no onnxruntime_perf_test in .*--perf-test PATH"):
        fake.runner(perf_test=None).measure(models, runs=2, warmup=0)
    fake.runner().measure(models, runs=2, warmup=0)
    stats = fake.runner(perf_test=None).measure(models, runs=2, warmup=0)
    assert [s.n for s in stats.values()] == [2, 2]


def test_adb_runner_measures_with_onnxruntime_behind_the_fake(
    fake: FakeAdb, models: dict[str, Path]
) -> None:
    fake.write(times_s=None)  # the fake's onnxruntime times the models for real
    stats = fake.runner().measure(models, runs=3, warmup=1)
    assert all(s.n == 3 and 0 < s.p10 <= s.median <= s.p90 for s in stats.values())


def _tflite_models(folder: Path) -> dict[str, Path]:
    folder.mkdir()
    out = {}
    for i, name in enumerate(NAMES):
        out[name] = folder / f"{i}.tflite"
        out[name].write_bytes(key_tflite(LayerKey.parse(name), seed=i))
    return out


def test_adb_runner_measures_tflite_with_benchmark_model(fake: FakeAdb, tmp_path: Path) -> None:
    """benchmark_model with its own flags; the timed phase is the fake's runs 4-8 of TIMES_S."""
    stats = fake.runner(runtime="tflite").measure(
        _tflite_models(tmp_path / "tfl"), runs=5, warmup=3
    )
    # runs of 2000, 2200, 1900, 2300, 2100 us: the tool's median 2100, mean 2100, std 141
    expected = Stats(2.1, 1.919294, 2.280706, 5)
    assert stats == {NAMES[0]: expected, NAMES[1]: expected}
    runs = fake.perf_runs()
    assert [r["taskset"] for r in runs] == ["80", "80"]  # cpu7, the prime core
    assert runs[0]["perf_test"] == [
        f"{REMOTE}/bin/benchmark_model", "--graph=m0000.tflite", "--num_threads=1",
        "--warmup_runs=3", "--warmup_min_secs=0", "--num_runs=5", "--min_secs=0",
        "--max_secs=150",
    ]
    fake.write(times_s=None)  # LiteRT's own timings behind the fake tool
    for s in fake.runner(runtime="tflite").measure(
        _tflite_models(tmp_path / "tfl2"), runs=3, warmup=1
    ).values():
        assert s.n == 3 and 0 < s.p10 <= s.median <= s.p90


def test_adb_tflite_failure_names_benchmark_models_error(fake: FakeAdb, tmp_path: Path) -> None:
    bad = tmp_path / "bad.tflite"
    bad.write_bytes(b"not a flatbuffer")
    with pytest.raises(
        RunnerError, match=r"benchmark_model exited 1: ERROR: Failed to load model m0000\.tflite"
    ) as e:
        fake.runner(runtime="tflite").measure({"x": bad}, runs=2, warmup=0)
    assert "\n" not in str(e.value)


@pytest.mark.parametrize(
    "remote_dir",
    ["/sdcard", "/sdcard/hwnas", "/data/local/tmp", "/data/local/tmp/../x", "/data",
     "/data/local/tmp/hw nas; rm -rf x", "relative", "/"],
)
def test_adb_runner_refuses_folders_it_may_not_own(remote_dir: str) -> None:
    with pytest.raises(HwnasError, match=r"remote_dir must be a folder under /data/local/tmp/"):
        AdbRunner(SERIAL, remote_dir=remote_dir)


def test_adb_runner_never_touches_a_folder_it_did_not_make(
    fake: FakeAdb, models: dict[str, Path]
) -> None:
    mine = fake.device_path(f"{REMOTE}/users_file")
    mine.parent.mkdir(parents=True)
    mine.write_text("keep me")
    with pytest.raises(RunnerError, match=r"exists but was not made by hwnas .*move it away"):
        fake.runner().measure(models, runs=2, warmup=0)
    assert mine.read_text() == "keep me"
    assert sorted(p.name for p in mine.parent.iterdir()) == ["users_file"]
    assert not any("rm" in " ".join(c.get("argv", [])) for c in fake.calls())


@pytest.mark.parametrize(
    "threads, cpus, mask", [(2, None, "c0"), (4, None, "f0"), (1, [4], "10"), (2, [0, 1], "3")]
)
def test_adb_runner_pins_to_the_fastest_cores(
    fake: FakeAdb, models: dict[str, Path], threads: int, cpus: list[int] | None, mask: str
) -> None:
    fake.runner(cpus=cpus).measure({NAMES[0]: models[NAMES[0]]}, runs=2, warmup=0, threads=threads)
    [run] = fake.perf_runs()
    assert run["taskset"] == mask
    assert run["perf_test"][run["perf_test"].index("-x") + 1] == str(threads)


def test_adb_runner_without_taskset_runs_unpinned(fake: FakeAdb, models: dict[str, Path]) -> None:
    fake.write(taskset=False)
    stats = fake.runner().measure(models, runs=2, warmup=1)
    assert [s.n for s in stats.values()] == [2, 2]
    assert [r["taskset"] for r in fake.perf_runs()] == [None, None]


def test_adb_runner_uses_a_tool_already_on_the_device(
    fake: FakeAdb, models: dict[str, Path]
) -> None:
    fake.write(installed=["onnxruntime_perf_test"])
    fake.runner(perf_test="onnxruntime_perf_test").measure(models, runs=2, warmup=0)
    assert [r["perf_test"][0] for r in fake.perf_runs()] == ["onnxruntime_perf_test"] * 2
    assert [p[-1] for p in pushes(fake)] == [f"{REMOTE}/work/"]


@pytest.mark.parametrize(
    "setup, kw, pattern",
    [
        (
            {},
            {"serial": "NOSUCH1"},
            rf"^adb device NOSUCH1 not found \(adb devices lists: {SERIAL}\)$",
        ),
        ({"devices": {}}, {}, rf"^adb device {SERIAL} not found \(adb devices lists: none\)$"),
        (
            {"devices": {SERIAL: "unauthorized"}},
            {},
            rf"^adb device {SERIAL} is unauthorized, not ready$",
        ),
        (
            {},
            {"perf_test": "onnxruntime_perf_test"},
            rf"^adb device {SERIAL} failed: onnxruntime_perf_test exited 127: "
            r".*inaccessible or not found$",
        ),
        (
            {"perf_error": "Load model from m0000.onnx failed:Protobuf parsing failed."},
            {},
            r"failed: onnxruntime_perf_test exited 1: "
            r"Load model from m0000.onnx failed:Protobuf parsing failed\.$",
        ),
        ({}, {"adb": "/nonexistent/adb"}, r"failed: cannot run /nonexistent/adb"),
    ],
)
def test_adb_failures_are_one_line_runner_errors(
    fake: FakeAdb, models: dict[str, Path], setup: dict, kw: dict, pattern: str
) -> None:
    fake.write(**setup)
    runner = fake.runner(**{k: v for k, v in kw.items() if k != "adb"})
    if "adb" in kw:
        runner.adb = kw["adb"]
    with pytest.raises(RunnerError, match=pattern) as e:
        runner.measure(models, runs=2, warmup=0)
    assert "\n" not in str(e.value)


@pytest.mark.timeout(60)
def test_adb_hung_device_times_out(fake: FakeAdb, models: dict[str, Path]) -> None:
    fake.write(hang=True)
    with pytest.raises(
        RunnerError, match=rf"^adb device {SERIAL} failed: no answer within 1.5 s \(looking at"
    ):
        fake.runner(timeout=1.5).measure(models, runs=2, warmup=0)


def test_adb_device_info(fake: FakeAdb) -> None:
    (fake.home / "fs/sys/devices/system/cpu/cpu7/cpufreq/scaling_governor").write_text(
        "schedutil\n"
    )
    info = fake.runner(runtime_version="1.18.0").device_info()
    assert info == {
        "transport": "adb",
        "serial": SERIAL,
        "manufacturer": "Google",
        "model": "Pixel 4",
        "device": "flame",
        "os": "Android 13 (SDK 33)",
        "abi": "arm64-v8a",
        "soc": "Qualcomm SM8150",
        "cpu": "Qualcomm SM8150",
        "big_cores": [7],
        "big_core_max_khz": 2841600,
        "governor": "schedutil",
        "runtime": "onnxruntime (onnxruntime_perf_test)",
        "runtime_version": "1.18.0",
    }


def test_parse_perf_test_results_reads_the_real_result_file_format() -> None:
    text = (
        "hwnas,0.00912,25423872,98,0\nhwnas,0.0021,25423872,98,1\nhwnas,0.0019,25423872,98,2\n\n"
        "Min Latency: 0.0019 s\nMax Latency: 0.00912 s\n"
        "P50 Latency: 0.0021 s\nP90 Latency: 0.00912 s\nP95 Latency: 0.00912 s\n"
        "P99 Latency: 0.00912 s\nP999 Latency: 0.00912 s\n"
    )
    assert parse_perf_test_results(text, warmup=1) == pytest.approx([2.1, 1.9])
    assert parse_perf_test_results(text, warmup=0) == pytest.approx([9.12, 2.1, 1.9])
    assert parse_perf_test_results("P50 Latency: 0.0021 s\n", warmup=0) == []


@pytest.mark.parametrize(
    "kw, message",
    [
        ({"serial": "-d"}, "serial must be"),
        ({"timeout": 0}, "timeout"),
        ({"remote_dir": "/data/local/tmp"}, "remote_dir must be a folder under"),
        ({"runtime": "tensorrt"}, "runtime must be one of onnxruntime, tflite"),
        ({"cpus": [-1]}, "cpus"),
    ],
)
def test_adb_runner_validates_arguments(kw: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        AdbRunner(**{"serial": SERIAL, **kw})


def test_adb_protocol_is_the_tools_own(fake: FakeAdb) -> None:
    assert fake.runner().protocol(1)["io_binding"] is False


def test_measure_validates_protocol_and_models(
    fake: FakeAdb, models: dict[str, Path], tmp_path: Path
) -> None:
    runner = fake.runner()
    with pytest.raises(ValueError, match="runs must be >= 1"):
        runner.measure(models, runs=0)
    with pytest.raises(ValueError, match="no file"):
        runner.measure({"x": tmp_path / "missing.onnx"})
    assert runner.measure({}) == {}
    assert fake.calls() == []  # nothing reached the device

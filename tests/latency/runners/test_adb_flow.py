"""The documented phone flow (docs/devices.md), step by step, against the fake phone.

The fake adb plays a phone whose ``onnxruntime_perf_test`` runs the pushed
models with onnxruntime on this machine; the user only has the binary on the
host, as the docs say.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pytest

from hwnas.latency import commands
from hwnas.latency.cli import main
from hwnas.latency.keys import layer_keys
from hwnas.space import reference
from tests.latency.runners.test_adb import SERIAL, FakeAdb

REMOTE_TOOL = "/data/local/tmp/hwnas/bin/onnxruntime_perf_test"
RES = 32


@pytest.fixture
def phone(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> FakeAdb:
    home = tmp_path / "phone"
    home.mkdir()
    monkeypatch.setenv("FAKE_ADB_DIR", str(home))
    monkeypatch.setenv("HWNAS_HOME", str(tmp_path / "hwnas"))
    bin_dir = tmp_path / "bin"  # adb on the PATH, as platform-tools installs it
    bin_dir.mkdir()
    (bin_dir / "adb").symlink_to(Path(__file__).with_name("fake_adb"))
    path = os.pathsep.join([str(bin_dir), str(Path(sys.executable).parent), os.environ["PATH"]])
    monkeypatch.setenv("PATH", path)
    fake = FakeAdb(home)
    fake.write(times_s=None)  # real onnxruntime timings behind the fake tool
    # a small space: the layers of MobileNetV3-Small at 32 px
    keys = list(dict.fromkeys(layer_keys(reference("mobilenetv3_small"), RES)))
    monkeypatch.setattr(commands, "space_keys", lambda space, res: keys)
    return fake


def tool_pushes(fake: FakeAdb) -> int:
    return sum(1 for c in fake.calls() if "push" in c.get("argv", []) and
               c["argv"][-1].endswith("/bin/"))


@pytest.mark.timeout(600)
def test_documented_adb_flow(phone: FakeAdb, capsys: pytest.CaptureFixture[str]) -> None:
    tool = str(phone.tool)  # 1. the benchmark binary, downloaded/built on the host
    # 2. doctor: everything the build needs
    assert main(["doctor", "--runner", "adb", "--device", SERIAL, "--perf-test", tool]) == 0
    out = capsys.readouterr().out
    assert out.count("ok   ") == 6 and "FIX" not in out
    # 3. build (the small space)
    assert main(["build", "--target", "phone", "--runner", "adb", "--device", SERIAL,
                 "--perf-test", tool, "--resolution", str(RES)]) == 0
    assert tool_pushes(phone) == 1
    prov = json.loads((Path(os.environ["HWNAS_HOME"]) / "targets/phone/provenance.json")
                      .read_text())
    assert prov["runner"] == {"kind": "adb", "serial": SERIAL}  # no program path saved
    assert prov["device"]["model"] == "Pixel 4" and prov["device"]["big_core_max_khz"] == 2841600
    # 4. validate and predict: no --perf-test needed any more, the kept binary is used
    assert main(["validate", "--target", "phone", "--n", "2", "--resolution", str(RES),
                 "--space", "mobilenetv3"]) == 0
    assert main(["predict", "--target", "phone", "--arch", "mobilenetv3_small",
                 "--resolution", str(RES)]) == 0
    assert "mobilenetv3_small on phone" in capsys.readouterr().out
    assert phone.device_path(REMOTE_TOOL).is_file()  # still there
    # 5. a second build pushes nothing it already pushed
    calls_before = len(phone.calls())
    assert main(["build", "--target", "phone", "--perf-test", tool,
                 "--resolution", str(RES)]) == 0
    assert tool_pushes(phone) == 1
    assert not any("push" in c.get("argv", []) for c in phone.calls()[calls_before:])
    assert phone.device_path(REMOTE_TOOL).is_file()


def test_doctor_says_what_to_fix(phone: FakeAdb, capsys: pytest.CaptureFixture[str]) -> None:
    phone.write(devices={SERIAL: "unauthorized"})
    with pytest.raises(SystemExit, match="1"):
        main(["doctor", "--runner", "adb", "--device", SERIAL])
    out = capsys.readouterr().out.strip().splitlines()
    assert out[-1].startswith("FIX  adb device") and "Allow USB debugging" in out[-1]
    phone.write(devices={SERIAL: "device"}, taskset=False, free_kb=1024)
    with pytest.raises(SystemExit, match="1"):
        main(["doctor", "--runner", "adb", "--device", SERIAL])
    out = capsys.readouterr().out
    assert "FIX  taskset: missing" in out and "FIX  free space" in out
    assert "FIX  onnxruntime_perf_test: not given" in out


def test_doctor_runs_benchmark_model_for_tflite(
    phone: FakeAdb, capsys: pytest.CaptureFixture[str]
) -> None:
    """The tflite flow's doctor: the binary pushed as benchmark_model, its log read as upstream's."""
    assert main(["doctor", "--runner", "adb", "--device", SERIAL, "--runtime", "tflite",
                 "--perf-test", str(phone.tool)]) == 0
    out = capsys.readouterr().out
    assert "FIX" not in out and "ok   benchmark_model: runs on the phone" in out
    assert phone.device_path("/data/local/tmp/hwnas/bin/benchmark_model").is_file()
    ran = phone.perf_runs()[-1]["perf_test"]
    assert ran[0].endswith("/benchmark_model") and ran[1] == "--graph=m0000.tflite"

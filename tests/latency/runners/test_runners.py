"""The runner registry and the ``Runner.measure`` template, run over every runner."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from hwnas.latency.runners import (
    RUNNER_KINDS,
    RUNNERS,
    AdbRunner,
    LocalRunner,
    Runner,
    SshRunner,
    make_runner,
    runner_settings,
)

# one factory per registered runner; none of them reaches a device here
MAKERS: dict[str, Callable[[], Runner]] = {
    "local": lambda: LocalRunner(flush_mb=0, min_time_ms=0),
    "adb": lambda: AdbRunner("SERIAL1", adb="/nonexistent/adb"),
    "ssh": lambda: SshRunner("board.invalid", ssh="/nonexistent/ssh"),
}


def test_every_registered_runner_has_a_maker_and_its_name() -> None:
    assert set(MAKERS) == set(RUNNER_KINDS)
    assert all(cls.name == kind for kind, cls in RUNNERS.items())


@pytest.mark.parametrize("kind", RUNNER_KINDS)
def test_measure_template_checks_before_the_device(kind: str, tmp_path: Path) -> None:
    runner = MAKERS[kind]()
    assert runner.measure({}) == {}
    with pytest.raises(ValueError, match="runs must be >= 1"):
        runner.measure({"x": tmp_path / "x.onnx"}, runs=0)
    with pytest.raises(ValueError, match="warmup must be >= 0"):
        runner.measure({"x": tmp_path / "x.onnx"}, warmup=-1)
    with pytest.raises(ValueError, match="threads must be >= 1"):
        runner.measure({"x": tmp_path / "x.onnx"}, threads=0)
    with pytest.raises(ValueError, match=r"model 'x': no file"):
        runner.measure({"x": tmp_path / "x.onnx"})
    if not runner.accepts_bytes:
        with pytest.raises(ValueError, match="takes .onnx files, not bytes"):
            runner.measure({"x": b"model"})


def test_make_runner_from_saved_settings(tmp_path: Path) -> None:
    assert isinstance(make_runner({"kind": "local", "pin": False}), LocalRunner)
    ssh = make_runner({"kind": "ssh", "host": "h", "identity": str(tmp_path / "k"), "port": 2222})
    assert isinstance(ssh, SshRunner) and ssh.identity == tmp_path / "k" and ssh.port == 2222
    adb = make_runner({"kind": "adb", "serial": "S1", "timeout": 5.0})
    assert isinstance(adb, AdbRunner) and adb.timeout == 5.0
    with pytest.raises(ValueError, match="runner kind must be one of local, adb, ssh, got 'usb'"):
        make_runner({"kind": "usb"})
    with pytest.raises(ValueError, match="port must be"):
        make_runner({"kind": "ssh", "host": "h", "port": 0})
    with pytest.raises(ValueError, match="runner setting 'colour' is not one runner 'adb' takes"):
        make_runner({"kind": "adb", "serial": "S1", "colour": "red"})


def test_runner_settings_from_build_options(tmp_path: Path) -> None:
    key = tmp_path / "id"
    key.write_text("k")
    assert runner_settings(None) is None
    assert runner_settings("local") == {"kind": "local"}
    assert runner_settings("adb", device="S1", timeout=30) == {
        "kind": "adb",
        "serial": "S1",
        "timeout": 30.0,
    }
    assert runner_settings("ssh", host="h", user="pi", port=22, identity=key, device=None) == {
        "kind": "ssh",
        "host": "h",
        "user": "pi",
        "port": 22,
        "identity": str(key.resolve()),
    }
    settings = runner_settings("ssh", host="h", runtime="tflite")  # the runtime choice is saved
    assert settings == {"kind": "ssh", "host": "h", "runtime": "tflite"}
    assert make_runner(settings).runtime == "tflite"


@pytest.mark.parametrize(
    "kind, options, message",
    [
        (None, {"host": "h"}, "--host needs --runner ssh"),
        (None, {"timeout": 3}, "--timeout needs --runner adb or --runner ssh"),
        ("usb", {}, "runner kind must be one of"),
        ("local", {"host": "h"}, "--host does not apply to --runner local"),
        ("adb", {}, "--runner adb needs --device"),
        ("ssh", {"user": "pi"}, "--runner ssh needs --host"),
        ("ssh", {"host": "h", "timeout": 0}, "--timeout must be a positive number"),
        ("ssh", {"host": "h", "identity": "/nonexistent/key"}, "no such file"),
        ("ssh", {"host": "h", "runtime": "tensorrt"}, "--runtime must be one of"),
    ],
)
def test_runner_settings_refuse_in_one_line(kind: str | None, options: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message) as e:
        runner_settings(kind, **options)
    assert "\n" not in str(e.value)

"""The target store: names, $HWNAS_HOME, user targets and their runners, listings."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from hwnas.common.errors import HwnasError
from hwnas.common.home import hwnas_home
from hwnas.latency.keys import LayerKey
from hwnas.latency.measured_target import MeasuredTarget
from hwnas.latency.pixel import PixelTarget
from hwnas.latency.registry import (
    create_target,
    describe_targets,
    load_target,
    target_for_build,
    target_names,
    target_path,
    user_target_names,
)
from hwnas.latency.runners import AdbRunner, RunnerError, SshRunner
from hwnas.latency.table import META_FILE, TableError


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("HWNAS_HOME", str(tmp_path / "home"))
    return tmp_path / "home"


def test_builtin_names(home: Path) -> None:
    assert target_names()[:3] == ("host", "pixel", "pixel1")
    assert isinstance(load_target("pixel"), PixelTarget)
    assert load_target("PIXEL1").name == "pixel1"
    with pytest.raises(ValueError, match="not offered"):
        load_target("pixel4")


def test_unknown_target_lists_known_ones(home: Path) -> None:
    with pytest.raises(ValueError, match=r"unknown target 'nope': known are host, pixel, pixel1, .*host-tflite "):
        load_target("nope")
    create_target("board", {"kind": "ssh", "host": "rpi.invalid"}, check=False)
    with pytest.raises(ValueError, match="known are host, pixel, pixel1, .*host-tflite, board"):
        load_target("nope")
    with pytest.raises(ValueError, match="unknown target"):
        load_target("../etc")


def test_hwnas_home_is_respected(home: Path) -> None:
    assert hwnas_home() == home
    t = load_target("host")
    assert isinstance(t, MeasuredTarget) and t.table.path == home / "targets" / "host"
    assert (home / "targets" / "host" / META_FILE).is_file()
    assert t.provenance["runner"] == {"kind": "local"} and len(t.table) == 0


def test_default_home(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("HWNAS_HOME", raising=False)
    assert hwnas_home() == Path("~/.cache/hwnas").expanduser()


def test_user_targets_keep_their_runner(home: Path) -> None:
    ident = home.parent / "id_test"
    ident.write_text("key")
    settings = {
        "kind": "ssh",
        "host": "rpi.invalid",
        "user": "pi",
        "port": 2222,
        "identity": str(ident),
    }
    create_target("rpi4", settings, check=False)
    assert user_target_names() == ("rpi4",)
    t = load_target("rpi4")
    assert isinstance(t, MeasuredTarget) and t.provenance["runner"] == settings
    r = t.runner
    assert isinstance(r, SshRunner) and (r.host, r.user, r.port, r.identity) == (
        "rpi.invalid",
        "pi",
        2222,
        ident,
    )
    create_target("phone", {"kind": "adb", "serial": "R58M41ABCDE"}, check=False)
    assert isinstance(load_target("phone").runner, AdbRunner)
    with pytest.raises(ValueError, match="exists already"):
        create_target("phone", {"kind": "adb", "serial": "X"}, check=False)


@pytest.mark.parametrize(
    ("name", "match"),
    [("host", "built in"), ("Pixel", "built in"), ("a b", "must be lower-case"), ("-x", "must be")],
)
def test_bad_user_names(home: Path, name: str, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        create_target(name, {"kind": "adb", "serial": "X"}, check=False)


def test_unreachable_device_leaves_nothing(home: Path) -> None:
    with pytest.raises(RunnerError):
        create_target(
            "phone", {"kind": "adb", "serial": "X"}, programs={"adb": "/nonexistent/adb"}
        )
    assert not target_path("phone").exists()


def test_corrupt_user_table(home: Path) -> None:
    create_target("board", {"kind": "ssh", "host": "h.invalid"}, check=False)
    (target_path("board") / META_FILE).write_text("{")
    with pytest.raises(TableError, match="corrupt JSON"):
        load_target("board")


def test_describe_targets_asks_each_target(home: Path) -> None:
    create_target("board", {"kind": "ssh", "host": "rpi.invalid"}, check=False)
    create_target("broken", {"kind": "ssh", "host": "h.invalid"}, check=False)
    (target_path("broken") / META_FILE).write_text("{")
    rows = {r["name"]: r for r in describe_targets()}
    names = list(rows)
    assert names[:2] == ["host", "pixel"] and "pixel1" not in names  # pixel1: an alias
    assert names[-3:] == ["host-tflite", "board", "broken"]
    assert rows["host"]["device"] == "this machine (no table yet)"
    assert rows["pixel"] == load_target("pixel").describe()
    assert rows["board"] == load_target("board").describe()
    assert rows["board"]["runner"] == "ssh rpi.invalid"
    assert rows["broken"]["kind"] == "?" and "corrupt JSON" in rows["broken"]["error"]


def test_target_for_build(home: Path) -> None:
    assert target_for_build("host", None).name == "host"
    with pytest.raises(ValueError, match="host is measured with the local runner"):
        target_for_build("host", {"kind": "ssh", "host": "h"})
    with pytest.raises(ValueError, match="'pixel' is a fitted model, not measured here"):
        target_for_build("pixel", None)
    with pytest.raises(ValueError, match="to create 'board' give --runner"):
        target_for_build("board", None)
    settings = {"kind": "ssh", "host": "h.invalid"}
    create_target("board", settings, check=False)
    assert target_for_build("board", settings).name == "board"
    with pytest.raises(ValueError, match="exists with runner"):
        target_for_build("board", {"kind": "ssh", "host": "other.invalid"})


def test_planted_program_in_provenance_is_refused_not_run(home: Path, tmp_path: Path) -> None:
    """A target folder must not choose what runs here: ``adb``/``ssh`` paths there are refused."""
    witness = tmp_path / "ran"
    evil = tmp_path / "evil.sh"
    evil.write_text(f"#!/bin/sh\ntouch {witness}\n")
    evil.chmod(0o755)
    for kind, settings in (
        ("adb", {"kind": "adb", "serial": "X", "adb": str(evil)}),
        ("ssh", {"kind": "ssh", "host": "h", "ssh": str(evil)}),
        ("adb", {"kind": "adb", "serial": "X", "perf_test": str(evil)}),
    ):
        create_target("planted", {"kind": kind, **{k: v for k, v in settings.items() if k in (
            "serial", "host")}}, check=False)
        meta = target_path("planted") / META_FILE
        doc = json.loads(meta.read_text())
        doc["runner"] = settings
        meta.write_text(json.dumps(doc))
        target = load_target("planted")
        key = LayerKey.parse("stem_k3_s2_c16_nhs|3x32x32")
        with pytest.raises(HwnasError, match=r"provenance.json: runner settings name the program"):
            target.fill([key])
        assert not witness.exists()
        shutil.rmtree(target_path("planted"))


def test_programs_come_from_the_user_config(home: Path, tmp_path: Path) -> None:
    home.mkdir(parents=True, exist_ok=True)
    tool = tmp_path / "benchmark_model"
    tool.write_bytes(b"\x7fELF")
    (home / "config.yaml").write_text(
        f"programs:\n  adb: /opt/adb\ntargets:\n  phone:\n    perf_test: {tool}\n"
    )
    create_target("phone", {"kind": "adb", "serial": "X"}, check=False)
    runner = load_target("phone").runner
    assert runner.adb == "/opt/adb"
    assert runner.host_tool == tool
    with pytest.raises(HwnasError, match="--ssh does not apply to --runner adb"):
        target_for_build("phone", None, {"ssh": "/usr/bin/ssh"})

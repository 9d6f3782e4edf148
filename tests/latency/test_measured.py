"""Measured targets: on-demand fill (only missing keys), overhead, registry, $HWNAS_HOME."""

from __future__ import annotations

import zlib
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import pytest

from hwnas.latency import measured as measured_mod
from hwnas.latency.keys import LayerKey, layer_keys
from hwnas.latency.measured import MeasuredTarget, make_runner
from hwnas.latency.pixel import PixelTarget
from hwnas.latency.registry import (
    create_target,
    hwnas_home,
    load_target,
    target_names,
    target_path,
    user_target_names,
)
from hwnas.latency.remote import AdbRunner, SshRunner
from hwnas.latency.runner import Runner, RunnerError, Stats
from hwnas.latency.table import META_FILE, LatencyTable, TableError
from hwnas.latency.target import OVERHEAD_PART
from hwnas.space.references import reference
from hwnas.space.searchspace import get_space

OVERHEAD_MS = 0.25  # what the fake runtime charges per call
RES = 64
SMALL = reference("mobilenetv3_small")
LARGE = reference("mobilenetv3_large")


def fake_ms(key: LayerKey) -> float:
    """A made-up, deterministic latency per key."""
    return 0.05 + (zlib.crc32(str(key).encode()) % 1000) / 1000


class FakeRunner(Runner):
    """A runner on an imaginary device: each model costs its key's fake_ms plus the overhead."""

    name = "fake"

    def __init__(self) -> None:
        self.measured: list[str] = []

    def measure(
        self, models: Mapping[str, Path], *, runs: int = 50, warmup: int = 10, threads: int = 1
    ) -> dict[str, Stats]:
        out = {}
        for name in models:
            try:
                ms = fake_ms(LayerKey.parse(name)) + OVERHEAD_MS
                self.measured.append(name)
            except ValueError:  # the empty model that prices the per-call overhead
                ms = OVERHEAD_MS
            out[name] = Stats(ms, ms * 0.95, ms * 1.05, runs)
        return out

    def device_info(self) -> dict:
        return {"cpu": "imaginary", "runtime": "fake", "runtime_version": "0"}


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
    """Through hwnas.latency.measure: the runner sees only missing keys, overhead is subtracted."""
    runner = FakeRunner()
    t = _target(tmp_path, runner)
    small = layer_keys(SMALL, RES)
    ms = t.predict(SMALL, RES)
    assert sorted(runner.measured) == sorted(set(map(str, small)))
    assert ms == pytest.approx(sum(fake_ms(k) for k in small) + OVERHEAD_MS, rel=1e-6)
    runner.measured.clear()
    t.predict(LARGE, RES)
    assert set(runner.measured) == {str(k) for k in set(layer_keys(LARGE, RES)) - set(small)}


# --- registry ------------------------------------------------------------------
def test_builtin_names(home: Path) -> None:
    assert target_names()[:3] == ("host", "pixel", "pixel1")
    assert isinstance(load_target("pixel"), PixelTarget)
    assert load_target("PIXEL1").name == "pixel1"
    with pytest.raises(ValueError, match="not offered"):
        load_target("pixel4")


def test_unknown_target_lists_known_ones(home: Path) -> None:
    with pytest.raises(ValueError, match=r"unknown target 'nope': known are host, pixel, pixel1 "):
        load_target("nope")
    create_target("board", {"kind": "ssh", "host": "rpi.invalid"}, check=False)
    with pytest.raises(ValueError, match="known are host, pixel, pixel1, board"):
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


def test_bad_runner_settings() -> None:
    with pytest.raises(ValueError, match="runner kind must be one of local, adb, ssh"):
        make_runner({"kind": "usb"})
    with pytest.raises(ValueError, match="port must be"):
        make_runner({"kind": "ssh", "host": "h", "port": 0})


def test_unreachable_device_leaves_nothing(home: Path) -> None:
    with pytest.raises(RunnerError):
        create_target("phone", {"kind": "adb", "serial": "X", "adb": "/nonexistent/adb"})
    assert not target_path("phone").exists()


def test_corrupt_user_table(home: Path) -> None:
    create_target("board", {"kind": "ssh", "host": "h.invalid"}, check=False)
    (target_path("board") / META_FILE).write_text("{")
    with pytest.raises(TableError, match="corrupt JSON"):
        load_target("board")


def test_predict_many_index_path_on_a_measured_target(tmp_path: Path, counted) -> None:
    space = get_space("mnasnet")
    t = _target(tmp_path)
    idx = space.sample_indices(np.random.default_rng(0), 5)
    fast = t.predict_many(idx, space=space, resolution=RES)
    slow = [t.predict(space.decode(space.from_indices(r)), RES) for r in idx]
    np.testing.assert_allclose(fast, slow, rtol=0, atol=1e-9)


# --- real measurements on this machine (small) ---------------------------------
REAL_RES = 32  # tiny layers: each is timed for measure.MIN_TIME_MS anyway


def test_host_fills_on_demand_with_the_local_runner(home: Path) -> None:
    t = load_target("host")
    arch = reference("mobilenetv3_small")
    ms = t.predict(arch, REAL_RES)
    layers = layer_keys(arch, REAL_RES)
    keys = set(layers)
    back = LatencyTable.load(target_path("host"))
    assert set(back) == {str(k) for k in keys}
    prov = back.provenance
    assert prov["overhead_ms"] > 0 and prov["device"]["runtime"] == "onnxruntime"
    assert prov["runtime_version"] and prov["key_protocol"]["threads"] == 1
    assert ms == pytest.approx(sum(back[k].median for k in layers) + prov["overhead_ms"])
    assert all(back[k].n >= 1 and back[k].p10 <= back[k].median <= back[k].p90 for k in keys)


def test_parallel_fill_with_two_local_workers(home: Path) -> None:
    t = load_target("host")
    keys = list(dict.fromkeys(layer_keys(reference("mnasnet_small"), REAL_RES)))
    assert t.fill(keys, workers=2) == len(keys)
    assert set(LatencyTable.load(target_path("host"))) == {str(k) for k in keys}
    assert t.fill(keys, workers=2) == 0  # resumable: nothing left to do

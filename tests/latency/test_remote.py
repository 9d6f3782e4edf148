"""Remote runners: the on-device measuring program, ssh against a real sshd, adb against a fake.

The ssh tests start a throwaway ``sshd`` on 127.0.0.1 with keys made in a
temp dir and use this venv's Python as the board's; they skip where sshd is
missing (``tests/setup/install_sshd.sh`` installs it) but fail under
``CI=true``. The adb tests drive ``tests/latency/fake_adb``, which plays a
phone: a file system, ``getprop``, ``taskset`` and ``onnxruntime_perf_test``
with the real tool's options and result-file format.
"""

from __future__ import annotations

import getpass
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
import onnxruntime
import pytest
from onnx import TensorProto, helper
from servers import free_port, skip_or_fail

from hwnas.latency import remote_measure
from hwnas.latency.remote import AdbRunner, SshRunner, parse_perf_test_results
from hwnas.latency.remote import ssh as remote_ssh
from hwnas.latency.runner import RunnerError, Stats

FAKE_ADB = Path(__file__).with_name("fake_adb")
SSHD = "/usr/sbin/sshd"
SSHD_START_S = 30
SERIAL = "R58M41ABCDE"
# Block names as the latency table writes them: "|" must not reach a remote path.
NAMES = ("ir_k3_s1_m48_c8_nre_noskip|8x16x16", "conv_k3_s1_c16_nre_noskip|16x8x8")


# --- tiny models ----------------------------------------------------------
def _conv_model(path: Path, chs: int, res: int, seed: int) -> Path:
    """A 3x3 convolution with a free batch dimension, built with onnx.helper."""
    rng = np.random.default_rng(seed)
    w = helper.make_tensor(
        "w",
        TensorProto.FLOAT,
        [chs, chs, 3, 3],
        rng.standard_normal(chs * chs * 9).astype(np.float32).tolist(),
    )
    node = helper.make_node("Conv", ["x", "w"], ["y"], pads=[1, 1, 1, 1])
    graph = helper.make_graph(
        [node, helper.make_node("Relu", ["y"], ["z"])],
        "block",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", chs, res, res])],
        [helper.make_tensor_value_info("z", TensorProto.FLOAT, ["N", chs, res, res])],
        [w],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8  # readable by older onnxruntime builds too
    onnx.checker.check_model(model)
    onnx.save(model, path)
    return path


@pytest.fixture
def models(tmp_path: Path) -> dict[str, Path]:
    folder = tmp_path / "models"
    folder.mkdir()
    return {
        NAMES[0]: _conv_model(folder / "a.onnx", 8, 16, 0),
        NAMES[1]: _conv_model(folder / "b.onnx", 16, 8, 1),
    }


def _sane(s: Stats, runs: int) -> None:
    assert s.n == runs
    assert 0 < s.p10 <= s.median <= s.p90


# --- remote_measure.py: the program that runs on the board ----------------
def test_summarize_uses_linear_percentiles() -> None:
    assert remote_measure.summarize([5.0, 1.0, 4.0, 2.0, 3.0]) == {
        "median": 3.0,
        "p10": 1.4,
        "p90": 4.6,
        "n": 5,
    }
    with pytest.raises(ValueError, match="no timed runs"):
        remote_measure.summarize([])


def test_remote_measure_program_measures_a_folder(tmp_path: Path) -> None:
    folder = tmp_path / "m"
    folder.mkdir()
    _conv_model(folder / "m0000.onnx", 8, 16, 0)
    _conv_model(folder / "m0001.onnx", 4, 32, 1)
    done = subprocess.run(
        [
            sys.executable,
            remote_measure.__file__,
            "--threads",
            "1",
            "--warmup",
            "2",
            "--runs",
            "7",
            str(folder),
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    doc = json.loads(done.stdout)
    assert doc["format"] == remote_measure.FORMAT_VERSION
    assert set(doc["results"]) == {"m0000", "m0001"}
    for raw in doc["results"].values():
        _sane(Stats(**raw), 7)
    assert doc["device"]["runtime_version"] == onnxruntime.__version__
    assert doc["protocol"] == {
        "threads": 1,
        "warmup": 2,
        "runs": 7,
        "batch": 1,
        "pinned_cpus": doc["protocol"]["pinned_cpus"],
    }
    if hasattr(os, "sched_setaffinity"):
        assert len(doc["protocol"]["pinned_cpus"]) == 1
        assert set(doc["protocol"]["pinned_cpus"]) <= os.sched_getaffinity(0)


@pytest.mark.parametrize(
    "content, message",
    [
        (None, "no .onnx files in"),
        (b"not a protobuf", "remote_measure: "),
    ],
)
def test_remote_measure_program_fails_in_one_line(
    tmp_path: Path, content: bytes | None, message: str
) -> None:
    if content is not None:
        (tmp_path / "broken.onnx").write_bytes(content)
    done = subprocess.run(
        [sys.executable, remote_measure.__file__, "--runs", "2", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 1
    assert done.stdout == ""
    assert message in done.stderr and len(done.stderr.strip().splitlines()) == 1


def test_remote_measure_program_measures_only_named_models(tmp_path: Path) -> None:
    for i in range(3):
        _conv_model(tmp_path / f"m{i:04d}.onnx", 4, 8, i)
    argv = [
        sys.executable,
        remote_measure.__file__,
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


def test_remote_measure_reads_itself_from_stdin_for_info() -> None:
    done = subprocess.run(
        [sys.executable, "-", "--info"],
        input=Path(remote_measure.__file__).read_text(),
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
    assert remote_measure.cpu_model_from(cpuinfo) == name


# --- ssh against a real sshd on 127.0.0.1 --------------------------------------
@dataclass(frozen=True)
class Sshd:
    port: int
    user: str
    identity: Path
    known_hosts: Path
    host_key: str  # the public key blob sshd presents

    def runner(self, **kw: object) -> SshRunner:
        opts: dict = {
            "user": self.user,
            "port": self.port,
            "identity": self.identity,
            "python": sys.executable,
            "known_hosts": self.known_hosts,
            "timeout": 60,
            "connect_timeout": 5,
            **kw,
        }
        return SshRunner("127.0.0.1", **opts)


def _keygen(path: Path) -> None:
    subprocess.run(
        ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "hwnas-test", "-f", str(path)],
        check=True,
        capture_output=True,
        timeout=30,
    )


def _listening(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(1)
        return s.connect_ex(("127.0.0.1", port)) == 0


@pytest.fixture(scope="module")
def sshd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sshd]:
    if not Path(SSHD).exists() or not shutil.which("ssh") or not shutil.which("ssh-keygen"):
        skip_or_fail("OpenSSH server/client not installed (run tests/setup/install_sshd.sh)")
    base = tmp_path_factory.mktemp("sshd")
    _keygen(base / "host_key")
    _keygen(base / "user_key")
    shutil.copyfile(base / "user_key.pub", base / "authorized_keys")
    if os.geteuid() == 0:
        Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)  # Debian's privilege-separation dir
    port = free_port()
    (base / "sshd_config").write_text(
        "\n".join(
            [
                f"Port {port}",
                "ListenAddress 127.0.0.1",
                f"HostKey {base / 'host_key'}",
                f"PidFile {base / 'sshd.pid'}",
                f"AuthorizedKeysFile {base / 'authorized_keys'}",
                "PubkeyAuthentication yes",
                "PasswordAuthentication no",
                "KbdInteractiveAuthentication no",
                "PermitRootLogin prohibit-password",
                "UsePAM no",
                "StrictModes no",
                "LogLevel ERROR",
                "",
            ]
        )
    )
    log = open(base / "sshd.log", "wb")  # noqa: SIM115 (closed in finally)
    proc = subprocess.Popen(
        [SSHD, "-D", "-e", "-f", str(base / "sshd_config")], stdout=log, stderr=log
    )
    try:
        deadline = time.monotonic() + SSHD_START_S
        while not _listening(port):
            if proc.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"sshd did not start: {(base / 'sshd.log').read_text()[-500:]}")
            time.sleep(0.05)
        host_key = (base / "host_key.pub").read_text().split()[1]
        yield Sshd(port, getpass.getuser(), base / "user_key", base / "known_hosts", host_key)
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()


def test_ssh_runner_measures_on_a_real_sshd(
    sshd: Sshd, models: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(remote_ssh, "SSH_BATCH", 1)  # one measuring step per model
    board = tmp_path / "board"
    runner = sshd.runner(remote_dir=str(board))
    stats = runner.measure(models, runs=5, warmup=1)
    assert set(stats) == set(NAMES)
    for s in stats.values():
        _sane(s, 5)
    assert list(board.iterdir()) == []  # the temp folder was removed
    info = runner.device_info()
    assert info["transport"] == "ssh" and info["host"] == f"{sshd.user}@127.0.0.1"
    assert info["runtime_version"] == onnxruntime.__version__ and info["cpu"]
    assert sshd.host_key in sshd.known_hosts.read_text()  # accept-new recorded the host key


def test_ssh_device_info_before_any_measurement(sshd: Sshd) -> None:
    info = sshd.runner().device_info()
    assert info["os"].split()[0] == os.uname().sysname
    assert info["python"] == ".".join(map(str, sys.version_info[:3]))


def test_ssh_remote_program_failure_is_one_line_and_cleans_up(
    sshd: Sshd, models: dict[str, Path], tmp_path: Path
) -> None:
    board = tmp_path / "board"
    runner = sshd.runner(python="/nonexistent/python3", remote_dir=str(board))
    with pytest.raises(
        RunnerError, match=r"^ssh to .*@127\.0\.0\.1 failed: measuring m0000\.\.m0001 exited 127: "
    ) as e:
        runner.measure(models, runs=2, warmup=0)
    assert "\n" not in str(e.value)
    assert list(board.iterdir()) == []


def test_ssh_wrong_key_is_refused_without_prompting(sshd: Sshd, tmp_path: Path) -> None:
    _keygen(tmp_path / "stranger")
    runner = sshd.runner(identity=tmp_path / "stranger")
    with pytest.raises(RunnerError, match=r"failed: .*Permission denied") as e:
        runner.device_info()
    assert "\n" not in str(e.value)


def test_ssh_closed_port_is_a_runner_error(tmp_path: Path) -> None:
    if shutil.which("ssh") is None:
        skip_or_fail("ssh client not installed (run tests/setup/install_sshd.sh)")
    runner = SshRunner(
        "127.0.0.1", port=free_port(), timeout=20, connect_timeout=5, known_hosts=tmp_path / "kh"
    )
    with pytest.raises(
        RunnerError, match=r"^ssh to 127\.0\.0\.1 failed: .*[Cc]onnection refused"
    ) as e:
        runner.device_info()
    assert "\n" not in str(e.value)


@pytest.mark.timeout(60)
def test_ssh_silent_host_times_out(tmp_path: Path) -> None:
    """A port that accepts TCP but never speaks SSH: the step's timeout ends it."""
    if shutil.which("ssh") is None:
        skip_or_fail("ssh client not installed (run tests/setup/install_sshd.sh)")
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(4)  # never accepts: the kernel completes the handshake, nobody answers
        runner = SshRunner(
            "127.0.0.1",
            port=silent.getsockname()[1],
            timeout=2,
            connect_timeout=30,
            known_hosts=tmp_path / "kh",
        )
        with pytest.raises(RunnerError, match=r"^ssh to 127\.0\.0\.1 failed: no answer within 2 s"):
            runner.device_info()


@pytest.mark.parametrize(
    "kw, message",
    [
        ({"host": "-oProxyCommand=x"}, "host must be"),
        ({"host": "a b"}, "host must be"),
        ({"port": 0}, "port must be"),
        ({"host_key_checking": "maybe"}, "host_key_checking"),
        ({"remote_dir": "tmp"}, "absolute"),
    ],
)
def test_ssh_runner_validates_arguments(kw: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        SshRunner(**{"host": "board", **kw})


# --- adb against tests/latency/fake_adb -----------------------------------------
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
    return FakeAdb(home)


def test_adb_runner_pushes_runs_perf_test_and_drops_warmup(
    fake: FakeAdb, models: dict[str, Path]
) -> None:
    stats = fake.runner().measure(models, runs=5, warmup=3)
    expected = Stats(**remote_measure.summarize([t * 1000 for t in TIMES_S[3:8]]))
    assert stats == {NAMES[0]: expected, NAMES[1]: expected}
    assert expected.median == pytest.approx(2.1)
    runs = fake.perf_runs()
    assert len(runs) == 2
    for run, stem in zip(runs, ("m0000", "m0001"), strict=True):
        assert run["taskset"] == "80"  # cpu7, the prime core
        assert run["perf_test"] == [
            "/data/local/tmp/hwnas/onnxruntime_perf_test",
            "-e",
            "cpu",
            "-m",
            "times",
            "-r",
            "8",
            "-x",
            "1",
            "-y",
            "1",
            "-o",
            "99",
            "-I",
            "-s",
            f"{stem}.onnx",
            f"{stem}.csv",
        ]
    pushes = [c["argv"] for c in fake.calls() if "push" in c.get("argv", [])]
    assert len(pushes) == 1 and pushes[0][-1] == "/data/local/tmp/hwnas/"
    assert all(
        c["argv"][:2] == ["-s", SERIAL]
        for c in fake.calls()
        if "argv" in c and c["argv"] != ["devices"]
    )
    assert not fake.device_path("/data/local/tmp/hwnas").exists()  # cleaned up


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


def test_adb_runner_quotes_remote_paths(fake: FakeAdb, models: dict[str, Path]) -> None:
    stats = fake.runner(remote_dir="/data/local/tmp/hw nas; rm -rf x").measure(
        models, runs=3, warmup=0
    )
    assert [s.n for s in stats.values()] == [3, 3]
    assert (
        fake.perf_runs()[0]["perf_test"][0]
        == "/data/local/tmp/hw nas; rm -rf x/onnxruntime_perf_test"
    )


def test_adb_runner_uses_a_tool_already_on_the_device(
    fake: FakeAdb, models: dict[str, Path]
) -> None:
    fake.write(installed=["onnxruntime_perf_test"])
    fake.runner(perf_test="onnxruntime_perf_test").measure(models, runs=2, warmup=0)
    assert [r["perf_test"][0] for r in fake.perf_runs()] == ["onnxruntime_perf_test"] * 2
    assert not any(
        "push" in c.get("argv", []) and "onnxruntime_perf_test" in c["argv"][-2]
        for c in fake.calls()
    )


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
        RunnerError, match=rf"^adb device {SERIAL} failed: no answer within 1.5 s \(preparing"
    ):
        fake.runner(timeout=1.5).measure(models, runs=2, warmup=0)


def test_adb_device_info(fake: FakeAdb) -> None:
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
        "runtime": "onnxruntime (onnxruntime_perf_test)",
        "runtime_version": "1.18.0",
    }


def test_parse_perf_test_results_reads_the_real_result_file_format() -> None:
    text = (
        "hwnas,0.00912,25423872,98,0\nhwnas,0.0021,25423872,98,1\nhwnas,0.0019,25423872,98,2\n\n"
        "Min Latency: 0.0019 s\nMax Latency: 0.00912 s\n"
        "P50 Latency: 0.0021 s\nP90 Latency: 0.00912 s\n"
    )
    assert parse_perf_test_results(text, warmup=1) == pytest.approx([2.1, 1.9])
    assert parse_perf_test_results(text, warmup=0) == pytest.approx([9.12, 2.1, 1.9])
    assert parse_perf_test_results("P50 Latency: 0.0021 s\n", warmup=0) == []


@pytest.mark.parametrize(
    "kw, message",
    [
        ({"serial": "-d"}, "serial must be"),
        ({"timeout": 0}, "timeout"),
        ({"remote_dir": "/data/local/tmp"}, "dedicated"),
        ({"cpus": [-1]}, "cpus"),
    ],
)
def test_adb_runner_validates_arguments(kw: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        AdbRunner(**{"serial": SERIAL, **kw})


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

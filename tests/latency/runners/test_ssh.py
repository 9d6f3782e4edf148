"""``SshRunner`` against a real sshd on 127.0.0.1.

The tests start a throwaway ``sshd`` with keys made in a temp dir and use
this venv's Python as the board's; they skip where sshd is missing
(``tests/setup/install_sshd.sh`` installs it) but fail under ``CI=true``.
"""

from __future__ import annotations

import getpass
import os
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

import onnxruntime
import pytest
from fakes import NAMES, conv_model, sane
from servers import free_port, skip_or_fail

from hwnas.latency.keys import LayerKey
from hwnas.latency.measurement import measure_keys
from hwnas.latency.runners import RunnerError, SshRunner, litert, protocol
from hwnas.latency.runners import ssh as remote_ssh
from hwnas.latency.tflite_graphs import key_tflite

SSHD = "/usr/sbin/sshd"
SSHD_START_S = 30


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


def protocol_record(threads: int) -> dict:
    return {
        "clock": "cpu" if threads == 1 else "wall",
        "flush_mb": 1.0,
        "min_time_ms": 0.0,
        "max_runs": protocol.MAX_RUNS,
        "io_binding": True,
    }


def test_ssh_runner_measures_on_a_real_sshd(
    sshd: Sshd, models: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(remote_ssh, "SSH_BATCH", 1)  # one measuring step per model
    board = tmp_path / "board"
    runner = sshd.runner(remote_dir=str(board), flush_mb=1.0, min_time_ms=0.0)
    stats = runner.measure(models, runs=5, warmup=1)
    assert set(stats) == set(NAMES)
    for s in stats.values():
        sane(s, 5)
    assert list(board.iterdir()) == []  # the temp folder was removed
    # the local runner's protocol: IO binding, cache flush, CPU clock with one thread
    assert runner.protocol(1) == {**protocol_record(1), "pinned": True}
    info = runner.device_info()
    assert info["transport"] == "ssh" and info["host"] == f"{sshd.user}@127.0.0.1"
    assert info["runtime_version"] == onnxruntime.__version__ and info["cpu"]
    assert sshd.host_key in sshd.known_hosts.read_text()  # accept-new recorded the host key


def _board_python_without_hwnas(folder: Path) -> Path:
    """This venv's Python as a board that has numpy and the runtimes but no hwnas.

    A stub ``hwnas`` package first on ``PYTHONPATH`` makes ``import hwnas`` fail,
    so the protocol program can only use the ``litert.py`` uploaded beside it.
    """
    stub = folder / "stub" / "hwnas"
    stub.mkdir(parents=True)
    (stub / "__init__.py").write_text('raise ImportError("no hwnas on this board")\n')
    wrapper = folder / "board-python"
    wrapper.write_text(
        f'#!/bin/sh\nPYTHONPATH={shlex.quote(str(stub.parent))} exec {shlex.quote(sys.executable)} "$@"\n'
    )
    wrapper.chmod(0o755)
    return wrapper


def test_ssh_runner_measures_tflite_on_a_board_without_hwnas(sshd: Sshd, tmp_path: Path) -> None:
    folder = tmp_path / "tflite"
    folder.mkdir()
    models = {}
    for i, name in enumerate(NAMES):
        models[name] = folder / f"{i}.tflite"
        models[name].write_bytes(key_tflite(LayerKey.parse(name), seed=i))
    board = tmp_path / "board"
    runner = sshd.runner(
        python=str(_board_python_without_hwnas(tmp_path)),
        remote_dir=str(board),
        runtime="tflite",
        flush_mb=1.0,
        min_time_ms=0.0,
    )
    stats = runner.measure(models, runs=3, warmup=1)
    assert list(stats) == list(NAMES)
    for s in stats.values():
        sane(s, 3)
    assert list(board.iterdir()) == []  # the temp folder was removed
    info = runner.device_info()
    assert info["runtime"] == litert.RUNTIME_NAME
    assert info["runtime_version"] == metadata.version("ai-edge-litert")
    assert info["pinned_cpus"] == protocol.fastest_cpus(1)  # the board's fastest core
    assert runner.protocol(1)["io_binding"] is False
    # what a table fill does: .tflite layer models and the empty model's overhead, over ssh
    key = LayerKey.parse(NAMES[1])
    measured, overhead = measure_keys([key], runner, runs=2, warmup=0)
    assert overhead > 0 and list(measured) == [key] and measured[key].n >= 2
    with pytest.raises(ValueError, match=r"the tflite runtime takes \.tflite files"):
        runner.measure({"x": conv_model(folder / "x.onnx", 8, 8, 0)}, runs=1)


def test_ssh_device_info_before_any_measurement(sshd: Sshd) -> None:
    info = sshd.runner().device_info()
    assert info["os"].split()[0] == os.uname().sysname
    assert info["pinned_cpus"] == protocol.fastest_cpus(1)  # where a measurement will pin
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
        ({"clock": "tsc"}, "clock must be one of auto, wall, cpu"),
        ({"flush_mb": -1}, "flush_mb and min_time_ms must be >= 0"),
    ],
)
def test_ssh_runner_validates_arguments(kw: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        SshRunner(**{"host": "board", **kw})

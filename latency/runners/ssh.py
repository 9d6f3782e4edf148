"""``SshRunner``: measure on a Linux board over ssh with the protocol program (``protocol.py``).

Either runtime: ``onnxruntime`` (``.onnx`` models) or ``tflite`` (``.tflite``
models, the LiteRT interpreter from ``ai-edge-litert``), timed on the board by
the same code as the local runner times them here.
"""

from __future__ import annotations

import contextlib
import io
import json
import shlex
import tarfile
from collections.abc import Mapping
from pathlib import Path
from typing import ClassVar

from hwnas.common.errors import HwnasError

from . import litert, protocol
from ._remote import DEFAULT_TIMEOUT_S, call, check_word, neutral_names, one_line, to_stats
from .base import DEFAULT_RUNTIME, DEFAULT_THREADS, RUNTIMES, OrtTiming, Runner, RunnerError, Stats

DEFAULT_CONNECT_TIMEOUT_S = 10  # ssh's ConnectTimeout
PROGRAM = "protocol.py"  # the protocol program's name in the board's temp folder
LITERT = "hwnas_litert.py"  # litert.py on the board, where protocol.py imports it (tflite)
SUFFIX = {"onnxruntime": ".onnx", "tflite": ".tflite"}  # model files per runtime
# The device description as protocol.py --info prints it, plus the cores a one-thread
# measurement pins to (argv: folder, runtime, pin 1/0).
_INFO = (
    "import json, sys; sys.path.insert(0, sys.argv[1]); import protocol as p; "
    "print(json.dumps({'format': p.FORMAT_VERSION, 'device': {**p.device_info(sys.argv[2]), "
    "'pinned_cpus': p.fastest_cpus(1) if sys.argv[3] == '1' else []}}))"
)
SSH_BATCH = 16  # models per remote measuring step, so that each step's timeout stays meaningful


class SshRunner(Runner):
    """Measures on a Linux board reachable by ssh that has Python 3, numpy and the runtime
    (``onnxruntime``, or ``ai-edge-litert`` for ``runtime="tflite"``).

    It times exactly as the local runner does: each :meth:`measure` packs
    :mod:`~hwnas.latency.runners.protocol` (``protocol.py``; for tflite also
    :mod:`~hwnas.latency.runners.litert`) and the models into a tar stream,
    unpacks it into a fresh ``mktemp -d`` folder under ``remote_dir``, runs
    the program there (pinned to the board's fastest cores, by cpufreq's
    maximum clock), parses its JSON and removes the folder. The device
    description records the runtime, its version and the cores pinned to.
    ssh runs non-interactively (``BatchMode``): keys only, no prompts.

    Args:
        host: host name or address.
        user: login name (default: ssh's choice).
        port: ssh port.
        identity: private key file (``-i``), used alone (``IdentitiesOnly``).
        python: Python 3 interpreter on the board.
        timeout: seconds allowed to each step (upload, measurement, clean-up).
        remote_dir: folder on the board under which the temp folder is made.
        connect_timeout: seconds for the TCP connection and handshake.
        host_key_checking: ssh's ``StrictHostKeyChecking``: ``accept-new``
            (trust on first use), ``yes`` or ``no``.
        known_hosts: ``UserKnownHostsFile`` (default: ssh's).
        pin: pin the measuring process to the fastest cores of the board.
        ssh: the ssh client program.
        clock, flush_mb, min_time_ms, max_runs: see :class:`OrtTiming`.
        runtime: ``onnxruntime`` or ``tflite`` (LiteRT interpreter).
    """

    name: ClassVar[str] = "ssh"
    options: ClassVar[Mapping[str, str]] = {
        "host": "host",
        "user": "user",
        "port": "port",
        "identity": "identity",
        "timeout": "timeout",
        "runtime": "runtime",
    }
    required: ClassVar[tuple[str, ...]] = ("host",)

    def __init__(
        self,
        host: str,
        user: str | None = None,
        port: int = 22,
        identity: Path | None = None,
        python: str = "python3",
        timeout: float = DEFAULT_TIMEOUT_S,
        remote_dir: str = "/tmp",
        *,
        connect_timeout: int = DEFAULT_CONNECT_TIMEOUT_S,
        host_key_checking: str = "accept-new",
        known_hosts: Path | None = None,
        pin: bool = True,
        ssh: str = "ssh",
        clock: str = "auto",
        flush_mb: float = protocol.FLUSH_MB,
        min_time_ms: float = protocol.MIN_TIME_MS,
        max_runs: int = protocol.MAX_RUNS,
        runtime: str = DEFAULT_RUNTIME,
    ) -> None:
        if runtime not in RUNTIMES:
            raise HwnasError(f"runtime must be one of {', '.join(RUNTIMES)}, got {runtime!r}")
        self.runtime = runtime
        self.timing = OrtTiming(clock, flush_mb, min_time_ms, max_runs)
        self.host = check_word("host", host)
        self.user = check_word("user", user) if user is not None else None
        if not 0 < port < 65536:
            raise HwnasError(f"port must be in 1..65535, got {port}")
        if host_key_checking not in ("accept-new", "yes", "no"):
            raise HwnasError(
                f"host_key_checking must be accept-new, yes or no, got {host_key_checking!r}"
            )
        if timeout <= 0 or connect_timeout <= 0:
            raise HwnasError(f"timeouts must be > 0, got {timeout} and {connect_timeout}")
        if not remote_dir.startswith("/"):
            raise HwnasError(f"remote_dir must be an absolute path, got {remote_dir!r}")
        self.port, self.python, self.timeout, self.remote_dir = (
            port,
            python,
            timeout,
            remote_dir.rstrip("/") or "/",
        )
        self.identity = Path(identity).expanduser() if identity is not None else None
        self.connect_timeout, self.host_key_checking = connect_timeout, host_key_checking
        self.known_hosts, self.pin, self.ssh = known_hosts, pin, ssh
        self._device: dict | None = None

    @property
    def destination(self) -> str:
        return f"{self.user}@{self.host}" if self.user else self.host

    def _argv(self, remote_command: str) -> list[str]:
        argv = [
            self.ssh,
            "-T",
            "-p",
            str(self.port),
            "-o",
            "BatchMode=yes",
            "-o",
            f"ConnectTimeout={self.connect_timeout}",
            "-o",
            f"StrictHostKeyChecking={self.host_key_checking}",
            "-o",
            "ServerAliveInterval=5",
            "-o",
            "ServerAliveCountMax=3",  # notice a dead link
            "-o",
            "LogLevel=ERROR",
        ]
        if self.known_hosts is not None:
            argv += ["-o", f"UserKnownHostsFile={self.known_hosts}"]
        if self.identity is not None:
            argv += ["-i", str(self.identity), "-o", "IdentitiesOnly=yes"]
        return [*argv, "--", self.destination, remote_command]

    def _ssh(self, remote_command: str, step: str, stdin: bytes | None = None) -> str:
        fail = f"ssh to {self.destination} failed"
        done = call(
            self._argv(remote_command), timeout=self.timeout, fail=fail, step=step, stdin=stdin
        )
        if done.returncode == 255:  # ssh's own failure: resolve, connect, auth, host key
            raise RunnerError(f"{fail}: {one_line(done.stderr)}")
        if done.returncode != 0:
            raise RunnerError(f"{fail}: {step} exited {done.returncode}: {one_line(done.stderr)}")
        return done.stdout

    def _upload(self, models: Mapping[str, Path], names: Mapping[str, str]) -> str:
        """A fresh folder on the board holding the program(s) and ``models/`` (named stems)."""
        buf = io.BytesIO()
        with tarfile.open(fileobj=buf, mode="w") as tar:
            tar.add(protocol.__file__, arcname=PROGRAM)
            if self.runtime == "tflite":
                tar.add(litert.__file__, arcname=LITERT)
            tar.addfile(_folder_entry("models"))
            for stem, name in names.items():
                tar.add(str(models[name]), arcname=f"models/{stem}{SUFFIX[self.runtime]}")
        parent = shlex.quote(self.remote_dir)
        script = (
            f"umask 077 && mkdir -p {parent} && d=$(mktemp -d {parent}/hwnas.XXXXXX) "
            f'&& tar -xf - -C "$d" && printf "%s\\n" "$d"'
        )
        out = self._ssh(
            shlex.join(["sh", "-c", script]), "upload", stdin=buf.getvalue()
        )  # any login shell
        folder = out.strip().splitlines()[-1] if out.strip() else ""
        if not folder.startswith(f"{self.remote_dir.rstrip('/')}/hwnas."):
            raise RunnerError(
                f"ssh to {self.destination} failed: upload printed {folder!r}, not a folder"
            )
        return folder

    def protocol(self, threads: int = DEFAULT_THREADS) -> dict:
        rec = {**self.timing.record(threads), "pinned": self.pin}
        if self.runtime == "tflite":  # as the local runner records it
            rec.update(io_binding=False, tool="LiteRT interpreter (ai-edge-litert), XNNPACK")
        return rec

    def _measure(
        self, models: Mapping[str, Path], *, runs: int, warmup: int, threads: int
    ) -> dict[str, Stats]:
        t = self.timing
        clock = t.clock_for(threads)
        for name, path in models.items():
            if Path(path).suffix != SUFFIX[self.runtime]:
                raise HwnasError(
                    f"model {name!r}: the {self.runtime} runtime takes {SUFFIX[self.runtime]} "
                    f"files, got {path}"
                )
        names = neutral_names(models)
        folder = self._upload(models, names)
        fail = f"ssh to {self.destination} failed"
        stats: dict[str, Stats] = {}
        try:
            stems = list(names)
            for i in range(0, len(stems), SSH_BATCH):
                batch = stems[i : i + SSH_BATCH]
                cmd = [
                    self.python,
                    f"{folder}/{PROGRAM}",
                    *("--threads", str(threads), "--warmup", str(warmup), "--runs", str(runs)),
                    *("--clock", clock, "--flush-mb", str(t.flush_mb)),
                    *("--min-time-ms", str(t.min_time_ms), "--max-runs", str(t.max_runs)),
                    *("--runtime", self.runtime),
                    "--names",
                    ",".join(batch),
                ]
                out = self._ssh(
                    shlex.join([*cmd, *([] if self.pin else ["--no-pin"]), f"{folder}/models"]),
                    f"measuring {batch[0]}..{batch[-1]}"
                    if len(batch) > 1
                    else f"measuring {batch[0]}",
                )
                doc = self._parse(out)
                results = doc.get("results", {})
                if set(results) != set(batch):
                    raise RunnerError(f"{fail}: results for {sorted(results)}, expected {batch}")
                stats.update({names[stem]: to_stats(results[stem], runs, fail) for stem in batch})
                pinned = (doc.get("protocol") or {}).get("pinned_cpus")
                self._device = {**self._describe(doc), "pinned_cpus": pinned}
        finally:
            with contextlib.suppress(
                RunnerError
            ):  # best effort: the board's /tmp is cleared anyway
                self._ssh(shlex.join(["rm", "-rf", "--", folder]), "clean-up")
        return stats

    def _parse(self, out: str) -> dict:
        try:
            doc = json.loads(out)
        except json.JSONDecodeError:
            raise RunnerError(
                f"ssh to {self.destination} failed: measuring printed no JSON "
                f"({one_line(out)[:200]})"
            ) from None
        if not isinstance(doc, dict) or doc.get("format") != protocol.FORMAT_VERSION:
            raise RunnerError(
                f"ssh to {self.destination} failed: {PROGRAM} format "
                f"{doc.get('format') if isinstance(doc, dict) else None!r}, "
                f"expected {protocol.FORMAT_VERSION}"
            )
        return doc

    def _describe(self, doc: dict) -> dict:
        return {**doc.get("device", {}), "transport": "ssh", "host": self.destination}

    def device_info(self) -> dict:
        """uname, CPU, Python/numpy/runtime versions of the board and ``pinned_cpus``, the
        cores a measurement pins to (cached, and replaced by what a measurement reports).

        The protocol's code runs from an uploaded folder, as for a measurement
        (for tflite it needs ``litert.py`` beside it), which is removed after.
        """
        if self._device is None:
            folder = self._upload({}, {})
            try:
                cmd = [self.python, "-c", _INFO, folder, self.runtime, "1" if self.pin else "0"]
                self._device = self._describe(self._parse(self._ssh(shlex.join(cmd), "device info")))
            finally:
                with contextlib.suppress(RunnerError):
                    self._ssh(shlex.join(["rm", "-rf", "--", folder]), "clean-up")
        return dict(self._device)


def _folder_entry(name: str) -> tarfile.TarInfo:
    """A tar member for an empty folder (``models/`` exists even with no model)."""
    info = tarfile.TarInfo(name)
    info.type, info.mode = tarfile.DIRTYPE, 0o700
    return info

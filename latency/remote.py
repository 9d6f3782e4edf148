"""Runners that measure on another machine: a board over ssh, a phone over adb.

Both follow the protocol of :mod:`hwnas.latency.runner` and turn every
failure of the link (no such host or device, refused, timed out, a remote
program that failed) into a one-line :class:`RunnerError`. Every step runs
``ssh``/``adb`` as an argument list with a timeout. Both tools hand the
remote command to the device's shell as one string, so each remote word is
quoted with :func:`shlex.quote` before it is joined.

Models travel under neutral names (``m0000.onnx``, ...): block names contain
``|``, which no remote path should.

Example::

    runner = SshRunner("rpi4.local", user="pi", identity=Path("~/.ssh/id_ed25519"))
    stats = runner.measure({"ir_k3_s1_m96_c24_nre_noskip|24x56x56": path}, runs=50)
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import tarfile
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path

from . import remote_measure
from .runner import DEFAULT_RUNS, DEFAULT_THREADS, DEFAULT_WARMUP, Runner, RunnerError, Stats

DEFAULT_TIMEOUT_S = 600.0  # one step (upload, a measurement, clean-up); generous for slow boards
DEFAULT_CONNECT_TIMEOUT_S = 10  # ssh's ConnectTimeout
SSH_BATCH = 16  # models per remote measuring step, so that each step's timeout stays meaningful
KILL_GRACE_S = 5.0  # after killing a timed-out tool, how long to wait for its pipes to close
ADB_REMOTE_DIR = "/data/local/tmp/hwnas"  # the one folder apps-less shells may write on Android
ADB_PUSH_CHUNK = 64  # files per ``adb push`` call
PERF_TEST = "onnxruntime_perf_test"
_RC_MARK = "__HWNAS_RC__="
_CPUFREQ_GLOB = "/sys/devices/system/cpu/cpu*/cpufreq/cpuinfo_max_freq"


# --- shared ---------------------------------------------------------------
def _one_line(text: str) -> str:
    """The last non-empty line of ``text``, whitespace collapsed (tools put the cause last)."""
    lines = [" ".join(ln.split()) for ln in text.splitlines() if ln.strip()]
    return lines[-1] if lines else "no output"


def _call(argv: Sequence[str], *, timeout: float, fail: str, step: str,
          stdin: bytes | None = None) -> subprocess.CompletedProcess[str]:
    """Run ``argv`` (no shell) within ``timeout`` seconds; raise ``RunnerError(fail + ...)``.

    The tool runs in its own process group, killed whole on timeout or
    interrupt, so a stuck ``ssh`` or ``adb`` never outlives the step.
    """
    try:
        proc = subprocess.Popen(list(argv), stdin=subprocess.PIPE if stdin is not None else subprocess.DEVNULL,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True)
    except OSError as e:
        raise RunnerError(f"{fail}: cannot run {argv[0]} ({e.strerror})") from None
    try:
        out, err = proc.communicate(stdin, timeout=timeout)
    except BaseException as e:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        try:
            proc.communicate(timeout=KILL_GRACE_S)
        except subprocess.TimeoutExpired:  # a daemon it started still holds the pipes
            for pipe in (proc.stdout, proc.stderr):
                if pipe is not None:
                    pipe.close()
            proc.wait()
        if isinstance(e, subprocess.TimeoutExpired):
            raise RunnerError(f"{fail}: no answer within {timeout:g} s ({step})") from None
        raise
    return subprocess.CompletedProcess(proc.args, proc.returncode, out.decode(errors="replace"),
                                       err.decode(errors="replace"))


def _check_protocol(runs: int, warmup: int, threads: int) -> None:
    if runs < 1:
        raise ValueError(f"runs must be >= 1, got {runs}")
    if warmup < 0:
        raise ValueError(f"warmup must be >= 0, got {warmup}")
    if threads < 1:
        raise ValueError(f"threads must be >= 1, got {threads}")


def _check_word(what: str, value: str) -> str:
    if not value or value.startswith("-") or any(c.isspace() for c in value):
        raise ValueError(f"{what} must be a non-empty word not starting with '-', got {value!r}")
    return value


def _neutral_names(models: Mapping[str, Path]) -> dict[str, str]:
    """``{remote stem: model name}``; checks that every model file exists."""
    for name, path in models.items():
        if not Path(path).is_file():
            raise ValueError(f"model {name!r}: no file {path}")
    return {f"m{i:04d}": name for i, name in enumerate(models)}


def _stats(raw: object, runs: int, fail: str) -> Stats:
    try:
        s = Stats(float(raw["median"]), float(raw["p10"]), float(raw["p90"]), int(raw["n"]))  # type: ignore[index]
    except (TypeError, KeyError, ValueError):
        raise RunnerError(f"{fail}: malformed statistics {raw!r}") from None
    if s.n != runs:
        raise RunnerError(f"{fail}: {s.n} timed runs reported, {runs} asked")
    return s


# --- ssh ------------------------------------------------------------------
class SshRunner(Runner):
    """Measures on a Linux board reachable by ssh that has Python 3, numpy and onnxruntime.

    Each :meth:`measure` packs ``remote_measure.py`` and the models into a
    tar stream, unpacks it into a fresh ``mktemp -d`` folder under
    ``remote_dir``, runs the program there, parses its JSON and removes the
    folder. ssh runs non-interactively (``BatchMode``): keys only, no prompts.

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
    """

    name = "ssh"

    def __init__(self, host: str, user: str | None = None, port: int = 22, identity: Path | None = None,
                 python: str = "python3", timeout: float = DEFAULT_TIMEOUT_S, remote_dir: str = "/tmp",
                 *, connect_timeout: int = DEFAULT_CONNECT_TIMEOUT_S, host_key_checking: str = "accept-new",
                 known_hosts: Path | None = None, pin: bool = True, ssh: str = "ssh") -> None:
        self.host = _check_word("host", host)
        self.user = _check_word("user", user) if user is not None else None
        if not 0 < port < 65536:
            raise ValueError(f"port must be in 1..65535, got {port}")
        if host_key_checking not in ("accept-new", "yes", "no"):
            raise ValueError(f"host_key_checking must be accept-new, yes or no, got {host_key_checking!r}")
        if timeout <= 0 or connect_timeout <= 0:
            raise ValueError(f"timeouts must be > 0, got {timeout} and {connect_timeout}")
        if not remote_dir.startswith("/"):
            raise ValueError(f"remote_dir must be an absolute path, got {remote_dir!r}")
        self.port, self.python, self.timeout, self.remote_dir = port, python, timeout, remote_dir.rstrip("/") or "/"
        self.identity = Path(identity).expanduser() if identity is not None else None
        self.connect_timeout, self.host_key_checking = connect_timeout, host_key_checking
        self.known_hosts, self.pin, self.ssh = known_hosts, pin, ssh
        self._device: dict | None = None

    @property
    def destination(self) -> str:
        return f"{self.user}@{self.host}" if self.user else self.host

    def _argv(self, remote_command: str) -> list[str]:
        argv = [self.ssh, "-T", "-p", str(self.port),
                "-o", "BatchMode=yes",
                "-o", f"ConnectTimeout={self.connect_timeout}",
                "-o", f"StrictHostKeyChecking={self.host_key_checking}",
                "-o", "ServerAliveInterval=5", "-o", "ServerAliveCountMax=3",  # notice a dead link
                "-o", "LogLevel=ERROR"]
        if self.known_hosts is not None:
            argv += ["-o", f"UserKnownHostsFile={self.known_hosts}"]
        if self.identity is not None:
            argv += ["-i", str(self.identity), "-o", "IdentitiesOnly=yes"]
        return [*argv, "--", self.destination, remote_command]

    def _ssh(self, remote_command: str, step: str, stdin: bytes | None = None) -> str:
        fail = f"ssh to {self.destination} failed"
        done = _call(self._argv(remote_command), timeout=self.timeout, fail=fail, step=step, stdin=stdin)
        if done.returncode == 255:  # ssh's own failure: resolve, connect, auth, host key
            raise RunnerError(f"{fail}: {_one_line(done.stderr)}")
        if done.returncode != 0:
            raise RunnerError(f"{fail}: {step} exited {done.returncode}: {_one_line(done.stderr)}")
        return done.stdout

    def _upload(self, models: Mapping[str, Path], names: Mapping[str, str]) -> str:
        buf = io.BytesIO()
        with tarfile.open(fileobj=buf, mode="w") as tar:
            tar.add(remote_measure.__file__, arcname="remote_measure.py")
            for stem, name in names.items():
                tar.add(str(models[name]), arcname=f"models/{stem}.onnx")
        parent = shlex.quote(self.remote_dir)
        script = (f'umask 077 && mkdir -p {parent} && d=$(mktemp -d {parent}/hwnas.XXXXXX) '
                  f'&& tar -xf - -C "$d" && printf "%s\\n" "$d"')
        out = self._ssh(shlex.join(["sh", "-c", script]), "upload", stdin=buf.getvalue())  # any login shell
        folder = out.strip().splitlines()[-1] if out.strip() else ""
        if not folder.startswith(f"{self.remote_dir.rstrip('/')}/hwnas."):
            raise RunnerError(f"ssh to {self.destination} failed: upload printed {folder!r}, not a folder")
        return folder

    def measure(self, models: Mapping[str, Path], *, runs: int = DEFAULT_RUNS, warmup: int = DEFAULT_WARMUP,
                threads: int = DEFAULT_THREADS) -> dict[str, Stats]:
        _check_protocol(runs, warmup, threads)
        if not models:
            return {}
        names = _neutral_names(models)
        folder = self._upload(models, names)
        fail = f"ssh to {self.destination} failed"
        stats: dict[str, Stats] = {}
        try:
            stems = list(names)
            for i in range(0, len(stems), SSH_BATCH):
                batch = stems[i:i + SSH_BATCH]
                cmd = [self.python, f"{folder}/remote_measure.py", "--threads", str(threads),
                       "--warmup", str(warmup), "--runs", str(runs), "--names", ",".join(batch)]
                out = self._ssh(shlex.join([*cmd, *([] if self.pin else ["--no-pin"]), f"{folder}/models"]),
                                f"measuring {batch[0]}..{batch[-1]}" if len(batch) > 1 else f"measuring {batch[0]}")
                doc = self._parse(out)
                results = doc.get("results", {})
                if set(results) != set(batch):
                    raise RunnerError(f"{fail}: results for {sorted(results)}, expected {batch}")
                stats.update({names[stem]: _stats(results[stem], runs, fail) for stem in batch})
                self._device = {**doc.get("device", {}), "transport": "ssh", "host": self.destination}
        finally:
            with contextlib.suppress(RunnerError):  # best effort: the board's /tmp is cleared anyway
                self._ssh(shlex.join(["rm", "-rf", "--", folder]), "clean-up")
        return {name: stats[name] for name in models}

    def _parse(self, out: str) -> dict:
        try:
            doc = json.loads(out)
        except json.JSONDecodeError:
            raise RunnerError(f"ssh to {self.destination} failed: measuring printed no JSON "
                              f"({_one_line(out)[:200]})") from None
        if not isinstance(doc, dict) or doc.get("format") != remote_measure.FORMAT_VERSION:
            raise RunnerError(f"ssh to {self.destination} failed: remote_measure format "
                              f"{doc.get('format') if isinstance(doc, dict) else None!r}, "
                              f"expected {remote_measure.FORMAT_VERSION}")
        return doc

    def device_info(self) -> dict:
        """uname, CPU, Python/numpy/onnxruntime versions of the board (cached after a measurement)."""
        if self._device is None:
            script = Path(remote_measure.__file__).read_bytes()
            out = self._ssh(shlex.join([self.python, "-", "--info"]), "device info", stdin=script)
            self._device = {**self._parse(out)["device"], "transport": "ssh", "host": self.destination}
        return dict(self._device)


# --- adb ------------------------------------------------------------------
def parse_perf_test_results(text: str, warmup: int) -> list[float]:
    """Per-run times (ms) from ``onnxruntime_perf_test``'s result file, warm-up runs dropped.

    With a ``result_file`` argument the tool appends one line per timed run,
    ``model_name,seconds,peak_working_set_bytes,avg_cpu_percent,run_index``
    (``PerformanceResult::DumpToFile`` in onnxruntime's
    ``onnxruntime/test/perftest/performance_runner.cc``), then with ``-s`` a
    blank line and ``Min Latency: 0.0005 s`` ... ``P999 Latency`` lines,
    which are skipped here. The tool's own single warm-up run is never
    written; the first ``warmup`` written runs are dropped as well.

    >>> parse_perf_test_results("m,0.002,1,5,0\\nm,0.001,1,5,1\\n", warmup=1)
    [1.0]
    """
    runs: list[tuple[int, float]] = []
    for line in text.splitlines():
        fields = line.strip().rsplit(",", 4)
        if len(fields) != 5:
            continue
        try:
            runs.append((int(fields[4]), float(fields[1]) * 1000.0))
        except ValueError:
            continue
    return [ms for _, ms in sorted(runs)[warmup:]]


def _cpu_mask(cpus: Sequence[int]) -> str:
    """``taskset``'s hex mask: cores 4 and 7 -> ``90``."""
    return f"{sum(1 << c for c in set(cpus)):x}"


class AdbRunner(Runner):
    """Measures on an Android phone with onnxruntime's own benchmark, ``onnxruntime_perf_test``.

    The models (and the tool, when ``perf_test`` is a file on this host) are
    pushed to ``remote_dir``; each model is run as (flags from the tool's
    ``command_args_parser.cc``)::

        taskset MASK onnxruntime_perf_test -e cpu -m times -r WARMUP+RUNS -x THREADS -y 1
            -o 99 -I -s mNNNN.onnx mNNNN.csv

    ``-I`` generates inputs of the model's shape (free dimensions as 1),
    ``-o 99`` enables all graph optimisations; ``mNNNN.csv`` receives one
    line per run, from which the first ``warmup`` are dropped and median,
    p10, p90 computed exactly as :mod:`remote_measure` does. The process is
    pinned with ``taskset`` (when the phone has it) to ``cpus``, by default
    the ``threads`` cores of highest maximum clock: the big cores.

    Args:
        serial: the device's serial as ``adb devices`` lists it.
        adb: the adb program.
        perf_test: ``onnxruntime_perf_test`` built for the phone: a file on
            this host (pushed) or a path/command already on the device.
        timeout: seconds allowed to each adb call (a push, one model's run).
        remote_dir: working folder on the device; removed after each measurement.
        cpus: cores to pin to (default: the fastest ``threads`` cores).
        pin: pin with ``taskset``.
        runtime_version: onnxruntime version the tool was built from, for
            provenance (the tool does not print it).
    """

    name = "adb"

    def __init__(self, serial: str, adb: str = "adb", perf_test: str = PERF_TEST,
                 timeout: float = DEFAULT_TIMEOUT_S, *, remote_dir: str = ADB_REMOTE_DIR,
                 cpus: Sequence[int] | None = None, pin: bool = True,
                 runtime_version: str | None = None) -> None:
        self.serial = _check_word("serial", serial)
        if timeout <= 0:
            raise ValueError(f"timeout must be > 0, got {timeout}")
        if not remote_dir.startswith("/") or remote_dir.rstrip("/") in ("", "/data", "/data/local/tmp"):
            raise ValueError(f"remote_dir must be a dedicated absolute folder, got {remote_dir!r}")
        if cpus is not None and (not cpus or min(cpus) < 0):
            raise ValueError(f"cpus must be core numbers >= 0, got {list(cpus)}")
        self.adb, self.timeout, self.remote_dir = adb, timeout, remote_dir.rstrip("/")
        self.cpus, self.pin, self.runtime_version = (list(cpus) if cpus else None), pin, runtime_version
        host_tool = Path(perf_test).expanduser()
        self._push_tool = host_tool if host_tool.is_file() else None
        self.perf_test = f"{self.remote_dir}/{PERF_TEST}" if self._push_tool else perf_test
        self._fail = f"adb device {self.serial} failed"

    # -- plumbing --
    def _adb(self, *args: str, step: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        done = _call([self.adb, "-s", self.serial, *args], timeout=self.timeout, fail=self._fail, step=step)
        if check and done.returncode != 0:
            raise RunnerError(f"{self._fail}: {step} exited {done.returncode}: "
                              f"{_one_line(done.stderr or done.stdout)}")
        return done

    def _shell(self, command: str, step: str) -> str:
        return self._adb("shell", command, step=step).stdout

    def check_device(self) -> None:
        """Raise :class:`RunnerError` unless ``adb devices`` lists the serial as ``device``."""
        done = _call([self.adb, "devices"], timeout=self.timeout, fail=self._fail, step="adb devices")
        if done.returncode != 0:
            raise RunnerError(f"{self._fail}: adb devices exited {done.returncode}: {_one_line(done.stderr)}")
        states = dict(re.findall(r"^(\S+)\t(\S+)", done.stdout, re.M))  # "SERIAL<tab>STATE" lines
        state = states.get(self.serial)
        if state is None:
            listed = ", ".join(sorted(states)) or "none"
            raise RunnerError(f"adb device {self.serial} not found (adb devices lists: {listed})")
        if state != "device":
            raise RunnerError(f"adb device {self.serial} is {state}, not ready")

    def _fastest_cpus(self, threads: int) -> list[int]:
        out = self._shell(shlex.join(["grep", "-H", "."]) + " " + _CPUFREQ_GLOB, "reading core clocks")
        freq = {}
        for line in out.splitlines():
            m = re.search(r"/cpu(\d+)/cpufreq/cpuinfo_max_freq:(\d+)", line)
            if m:
                freq[int(m.group(1))] = int(m.group(2))
        if not freq:
            return list(range(threads))
        return sorted(sorted(freq, key=lambda c: (freq[c], c), reverse=True)[:threads])

    def _pin_prefix(self, threads: int) -> tuple[list[str], list[int]]:
        if not self.pin:
            return [], []
        if "taskset" not in self._shell("command -v taskset || true", "looking for taskset"):
            return [], []
        cpus = self.cpus or self._fastest_cpus(threads)
        return ["taskset", _cpu_mask(cpus)], cpus

    def _push(self, staged: Sequence[Path]) -> None:
        files = [str(p) for p in staged]
        for i in range(0, len(files), ADB_PUSH_CHUNK):
            self._adb("push", *files[i:i + ADB_PUSH_CHUNK], f"{self.remote_dir}/", step="push")

    # -- the contract --
    def measure(self, models: Mapping[str, Path], *, runs: int = DEFAULT_RUNS, warmup: int = DEFAULT_WARMUP,
                threads: int = DEFAULT_THREADS) -> dict[str, Stats]:
        _check_protocol(runs, warmup, threads)
        if not models:
            return {}
        names = _neutral_names(models)
        self.check_device()
        rdir = shlex.quote(self.remote_dir)
        self._shell(f"rm -rf {rdir} && mkdir -p {rdir}", "preparing " + self.remote_dir)
        try:
            with tempfile.TemporaryDirectory(prefix="hwnas-adb-") as tmp:
                staged = []
                for stem, name in names.items():
                    staged.append(Path(tmp) / f"{stem}.onnx")
                    shutil.copyfile(models[name], staged[-1])
                if self._push_tool is not None:
                    staged.append(Path(tmp) / PERF_TEST)
                    shutil.copyfile(self._push_tool, staged[-1])
                self._push(staged)
            if self._push_tool is not None:
                self._shell(shlex.join(["chmod", "755", self.perf_test]), "chmod")
            prefix, _ = self._pin_prefix(threads)
            return {names[stem]: self._run_one(stem, prefix, runs, warmup, threads) for stem in names}
        finally:
            with contextlib.suppress(RunnerError):
                self._shell(f"rm -rf {rdir}", "clean-up")

    def _run_one(self, stem: str, prefix: list[str], runs: int, warmup: int, threads: int) -> Stats:
        tool = [*prefix, self.perf_test, "-e", "cpu", "-m", "times", "-r", str(warmup + runs),
                "-x", str(threads), "-y", "1", "-o", "99", "-I", "-s", f"{stem}.onnx", f"{stem}.csv"]
        # The shell's status is cat's; the tool's own status comes back after the mark.
        done = self._adb("shell", f"cd {shlex.quote(self.remote_dir)} && {shlex.join(tool)}; "
                         f"echo {_RC_MARK}$?; cat {stem}.csv 2>/dev/null", step=f"measuring {stem}",
                         check=False)
        log, mark, rest = done.stdout.partition(_RC_MARK)
        rc_text, _, csv = rest.partition("\n")
        cause = _one_line(done.stderr if done.stderr.strip() else log)
        if not mark or not rc_text.strip().isdigit():
            raise RunnerError(f"{self._fail}: measuring {stem} exited {done.returncode}: {cause}")
        if int(rc_text) != 0:
            raise RunnerError(f"{self._fail}: {PERF_TEST} exited {rc_text.strip()}: {cause}")
        times = parse_perf_test_results(csv, warmup)
        if len(times) != runs:
            raise RunnerError(f"{self._fail}: {PERF_TEST} wrote {len(times)} timed runs, "
                              f"{runs} expected ({cause})")
        return _stats(remote_measure.summarize(times), runs, self._fail)

    def device_info(self) -> dict:
        """Maker, model, Android version, SoC and CPU (getprop, /proc/cpuinfo), and the runtime."""
        self.check_device()
        props = dict(re.findall(r"^\[([^\]]+)\]: \[(.*)\]\s*$", self._shell("getprop", "getprop"), re.M))
        cpu = remote_measure.cpu_model_from(self._shell("cat /proc/cpuinfo", "reading /proc/cpuinfo"))
        soc = " ".join(filter(None, (props.get("ro.soc.manufacturer"), props.get("ro.soc.model"))))
        return {
            "transport": "adb",
            "serial": self.serial,
            "manufacturer": props.get("ro.product.manufacturer", ""),
            "model": props.get("ro.product.model", ""),
            "device": props.get("ro.product.device", ""),
            "os": f"Android {props.get('ro.build.version.release', '?')} "
                  f"(SDK {props.get('ro.build.version.sdk', '?')})",
            "abi": props.get("ro.product.cpu.abi", ""),
            "soc": soc or props.get("ro.board.platform", "") or props.get("ro.hardware", ""),
            "cpu": cpu or "unknown",
            "runtime": f"onnxruntime ({PERF_TEST})",
            "runtime_version": self.runtime_version or "unknown",
        }

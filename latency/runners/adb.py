"""``AdbRunner``: measure on an Android phone with onnxruntime's ``onnxruntime_perf_test``."""

from __future__ import annotations

import contextlib
import re
import shlex
import shutil
import subprocess
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import ClassVar

from hwnas.common.errors import HwnasError

from . import protocol
from ._remote import DEFAULT_TIMEOUT_S, call, check_word, neutral_names, one_line, to_stats
from .base import DEFAULT_THREADS, Runner, RunnerError, Stats

ADB_REMOTE_DIR = "/data/local/tmp/hwnas"  # the one folder apps-less shells may write on Android
ADB_PUSH_CHUNK = 64  # files per ``adb push`` call
PERF_TEST = "onnxruntime_perf_test"
_RC_MARK = "__HWNAS_RC__="
_CPUFREQ_GLOB = "/sys/devices/system/cpu/cpu*/cpufreq/cpuinfo_max_freq"


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
    p10, p90 computed exactly as :mod:`~hwnas.latency.runners.protocol` does (the tool's own
    single warm-up run before them is never recorded). The process is
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

    name: ClassVar[str] = "adb"
    options: ClassVar[Mapping[str, str]] = {"device": "serial", "timeout": "timeout"}
    required: ClassVar[tuple[str, ...]] = ("device",)

    def __init__(
        self,
        serial: str,
        adb: str = "adb",
        perf_test: str = PERF_TEST,
        timeout: float = DEFAULT_TIMEOUT_S,
        *,
        remote_dir: str = ADB_REMOTE_DIR,
        cpus: Sequence[int] | None = None,
        pin: bool = True,
        runtime_version: str | None = None,
    ) -> None:
        self.serial = check_word("serial", serial)
        if timeout <= 0:
            raise HwnasError(f"timeout must be > 0, got {timeout}")
        if not remote_dir.startswith("/") or remote_dir.rstrip("/") in (
            "",
            "/data",
            "/data/local/tmp",
        ):
            raise HwnasError(f"remote_dir must be a dedicated absolute folder, got {remote_dir!r}")
        if cpus is not None and (not cpus or min(cpus) < 0):
            raise HwnasError(f"cpus must be core numbers >= 0, got {list(cpus)}")
        self.adb, self.timeout, self.remote_dir = adb, timeout, remote_dir.rstrip("/")
        self.cpus, self.pin, self.runtime_version = (
            (list(cpus) if cpus else None),
            pin,
            runtime_version,
        )
        host_tool = Path(perf_test).expanduser()
        self._push_tool = host_tool if host_tool.is_file() else None
        self.perf_test = f"{self.remote_dir}/{PERF_TEST}" if self._push_tool else perf_test
        self._fail = f"adb device {self.serial} failed"

    # -- plumbing --
    def _adb(self, *args: str, step: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        done = call(
            [self.adb, "-s", self.serial, *args], timeout=self.timeout, fail=self._fail, step=step
        )
        if check and done.returncode != 0:
            raise RunnerError(
                f"{self._fail}: {step} exited {done.returncode}: "
                f"{one_line(done.stderr or done.stdout)}"
            )
        return done

    def _shell(self, command: str, step: str) -> str:
        return self._adb("shell", command, step=step).stdout

    def check_device(self) -> None:
        """Raise :class:`RunnerError` unless ``adb devices`` lists the serial as ``device``."""
        done = call(
            [self.adb, "devices"], timeout=self.timeout, fail=self._fail, step="adb devices"
        )
        if done.returncode != 0:
            raise RunnerError(
                f"{self._fail}: adb devices exited {done.returncode}: {one_line(done.stderr)}"
            )
        states = dict(re.findall(r"^(\S+)\t(\S+)", done.stdout, re.M))  # "SERIAL<tab>STATE" lines
        state = states.get(self.serial)
        if state is None:
            listed = ", ".join(sorted(states)) or "none"
            raise RunnerError(f"adb device {self.serial} not found (adb devices lists: {listed})")
        if state != "device":
            raise RunnerError(f"adb device {self.serial} is {state}, not ready")

    def _fastest_cpus(self, threads: int) -> list[int]:
        out = self._shell(
            shlex.join(["grep", "-H", "."]) + " " + _CPUFREQ_GLOB, "reading core clocks"
        )
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
            self._adb("push", *files[i : i + ADB_PUSH_CHUNK], f"{self.remote_dir}/", step="push")

    # -- the contract --
    def protocol(self, threads: int = DEFAULT_THREADS) -> dict:
        """The tool's own timing: wall clock, no cache flush, exactly ``runs`` runs."""
        return {
            "tool": PERF_TEST,
            "clock": "wall",
            "flush_mb": 0.0,
            "io_binding": False,
            "pinned": self.pin,
        }

    def _measure(
        self, models: Mapping[str, Path], *, runs: int, warmup: int, threads: int
    ) -> dict[str, Stats]:
        names = neutral_names(models)
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
            return {
                names[stem]: self._run_one(stem, prefix, runs, warmup, threads) for stem in names
            }
        finally:
            with contextlib.suppress(RunnerError):
                self._shell(f"rm -rf {rdir}", "clean-up")

    def _run_one(self, stem: str, prefix: list[str], runs: int, warmup: int, threads: int) -> Stats:
        tool = [
            *prefix,
            self.perf_test,
            "-e",
            "cpu",
            "-m",
            "times",
            "-r",
            str(warmup + runs),
            "-x",
            str(threads),
            "-y",
            "1",
            "-o",
            "99",
            "-I",
            "-s",
            f"{stem}.onnx",
            f"{stem}.csv",
        ]
        # The shell's status is cat's; the tool's own status comes back after the mark.
        done = self._adb(
            "shell",
            f"cd {shlex.quote(self.remote_dir)} && {shlex.join(tool)}; "
            f"echo {_RC_MARK}$?; cat {stem}.csv 2>/dev/null",
            step=f"measuring {stem}",
            check=False,
        )
        log, mark, rest = done.stdout.partition(_RC_MARK)
        rc_text, _, csv = rest.partition("\n")
        cause = one_line(done.stderr if done.stderr.strip() else log)
        if not mark or not rc_text.strip().isdigit():
            raise RunnerError(f"{self._fail}: measuring {stem} exited {done.returncode}: {cause}")
        if int(rc_text) != 0:
            raise RunnerError(f"{self._fail}: {PERF_TEST} exited {rc_text.strip()}: {cause}")
        times = parse_perf_test_results(csv, warmup)
        if len(times) != runs:
            raise RunnerError(
                f"{self._fail}: {PERF_TEST} wrote {len(times)} timed runs, "
                f"{runs} expected ({cause})"
            )
        return to_stats(protocol.summarize(times), runs, self._fail)

    def device_info(self) -> dict:
        """Maker, model, Android version, SoC and CPU (getprop, /proc/cpuinfo), and the runtime."""
        self.check_device()
        props = dict(
            re.findall(r"^\[([^\]]+)\]: \[(.*)\]\s*$", self._shell("getprop", "getprop"), re.M)
        )
        cpu = protocol.cpu_model_from(self._shell("cat /proc/cpuinfo", "reading /proc/cpuinfo"))
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

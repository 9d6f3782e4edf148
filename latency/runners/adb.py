"""``AdbRunner``: measure on an Android phone with the runtime's own benchmark program.

The runner owns one folder on the phone, ``remote_dir`` (default
``/data/local/tmp/hwnas``): it creates it, marks it as its own with a
``.hwnas-runner`` file, and refuses any folder without that mark, so it never
deletes what it did not make. Inside::

    .hwnas-runner          the mark
    bin/TOOL               the benchmark program, pushed once, kept for the next build
    work/                  models of the batch being measured, removed after it
"""

from __future__ import annotations

import contextlib
import hashlib
import re
import shlex
import shutil
import tempfile
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import ClassVar

from hwnas.common.errors import HwnasError

from ._benchmarks import BENCHMARKS, PERF_TEST, parse_perf_test_results
from ._remote import DEFAULT_TIMEOUT_S, call, check_word, neutral_names, one_line
from .base import DEFAULT_RUNTIME, DEFAULT_THREADS, RUNTIMES, Runner, RunnerError, Stats

ADB_REMOTE_DIR = "/data/local/tmp/hwnas"  # /data/local/tmp: the folder a shell user may write
ADB_TMP = "/data/local/tmp"
MARKER = ".hwnas-runner"  # the file that says the folder is the runner's own
ADB_PUSH_CHUNK = 64  # models per batch: one ``adb push``, then measured, then removed
COOL_ABOVE_C = 50.0  # wait before a batch while a CPU thermal zone reads more than this
COOL_STEP_S = 10.0
COOL_MAX_S = 300.0  # give up waiting after this long (and say so in the provenance)
_RC_MARK = "__HWNAS_RC__="
_CPUFREQ_GLOB = "/sys/devices/system/cpu/cpu*/cpufreq/cpuinfo_max_freq"
_THERMAL_GLOB = "/sys/class/thermal/thermal_zone*/temp"
_SAFE_DIR = re.compile(r"/data/local/tmp(/[A-Za-z0-9_.-]+)+")

__all__ = ["ADB_REMOTE_DIR", "PERF_TEST", "AdbRunner", "parse_perf_test_results"]


def _cpu_mask(cpus: Sequence[int]) -> str:
    """``taskset``'s hex mask: cores 4 and 7 -> ``90``."""
    return f"{sum(1 << c for c in set(cpus)):x}"


def check_remote_dir(remote_dir: str) -> str:
    """``remote_dir`` if it is a plain sub-folder of ``/data/local/tmp``; HwnasError otherwise."""
    d = remote_dir.rstrip("/")
    if not _SAFE_DIR.fullmatch(d) or any(p in (".", "..") for p in d.split("/")):
        raise HwnasError(
            f"remote_dir must be a folder under {ADB_TMP}/ (letters, digits, '_', '.', '-'), "
            f"got {remote_dir!r}"
        )
    return d


def _md5(path: Path) -> str:
    return hashlib.md5(path.read_bytes()).hexdigest()


class AdbRunner(Runner):
    """Measures on an Android phone with ``onnxruntime_perf_test`` or LiteRT's ``benchmark_model``.

    Args:
        serial: the device's serial as ``adb devices`` lists it.
        adb: the adb program on this host.
        perf_test: the benchmark program: a file on this host (pushed into
            ``remote_dir/bin`` once, kept), or None to use the copy an earlier
            build left there. For compatibility, a name or absolute path that
            is not a host file is run as is on the phone.
        timeout: seconds allowed to each adb call (a push, one model's run).
        runtime: ``onnxruntime`` (``.onnx``, ``onnxruntime_perf_test``) or
            ``tflite`` (``.tflite``, ``benchmark_model``).
        remote_dir: the runner's own folder under ``/data/local/tmp``.
        cpus: cores to pin to (default: the fastest ``threads`` cores, the big ones).
        pin: pin with ``taskset``.
        runtime_version: the runtime version the tool was built from, for provenance.
        cool_step_s: seconds between thermal readings while the phone cools.
    """

    name: ClassVar[str] = "adb"
    options: ClassVar[Mapping[str, str]] = {
        "device": "serial",
        "timeout": "timeout",
        "runtime": "runtime",
    }
    saved: ClassVar[tuple[str, ...]] = ("pin", "cpus", "runtime_version")
    programs: ClassVar[Mapping[str, str]] = {"adb": "adb", "perf_test": "perf_test"}
    required: ClassVar[tuple[str, ...]] = ("device",)

    def __init__(
        self,
        serial: str,
        adb: str = "adb",
        perf_test: str | None = None,
        timeout: float = DEFAULT_TIMEOUT_S,
        *,
        runtime: str = DEFAULT_RUNTIME,
        remote_dir: str = ADB_REMOTE_DIR,
        cpus: Sequence[int] | None = None,
        pin: bool = True,
        runtime_version: str | None = None,
        cool_step_s: float = COOL_STEP_S,
    ) -> None:
        self.serial = check_word("serial", serial)
        if timeout <= 0:
            raise HwnasError(f"timeout must be > 0, got {timeout}")
        if runtime not in RUNTIMES:
            raise HwnasError(f"runtime must be one of {', '.join(RUNTIMES)}, got {runtime!r}")
        if cpus is not None and (not cpus or min(cpus) < 0):
            raise HwnasError(f"cpus must be core numbers >= 0, got {list(cpus)}")
        self.runtime, self.bench = runtime, BENCHMARKS[runtime]
        self.adb, self.timeout = adb, timeout
        self.remote_dir = check_remote_dir(remote_dir)
        self.cpus = list(cpus) if cpus else None
        self.pin, self.runtime_version, self.cool_step_s = pin, runtime_version, cool_step_s
        host = Path(perf_test).expanduser() if perf_test else None
        self.host_tool = host if host is not None and host.is_file() else None
        self.tool_path = (
            perf_test if perf_test and self.host_tool is None
            else f"{self.remote_dir}/bin/{self.bench.tool}"
        )
        self._fail = f"adb device {self.serial} failed"
        self._ready = False
        self._prefix: list[str] = []
        self.cooled_s = 0.0  # seconds waited for the phone to cool, this runner's life

    # -- plumbing --
    def _adb(self, *args: str, step: str, check: bool = True):
        done = call(
            [self.adb, "-s", self.serial, *args], timeout=self.timeout, fail=self._fail, step=step
        )
        if check and done.returncode != 0:
            raise RunnerError(
                f"{self._fail}: {step} exited {done.returncode}: "
                f"{one_line(done.stderr or done.stdout)}"
            )
        return done

    def _shell(self, command: str, step: str, check: bool = True) -> str:
        return self._adb("shell", command, step=step, check=check).stdout

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

    def _read_values(self, pattern: str, glob: str, step: str) -> dict[int, int]:
        out = self._shell(f"grep -H . {glob} 2>/dev/null; true", step)
        vals = {}
        for line in out.splitlines():
            m = re.search(pattern, line)
            if m:
                vals[int(m.group(1))] = int(m.group(2))
        return vals

    def core_clocks(self) -> dict[int, int]:
        """Maximum clock (kHz) of every core, from cpufreq."""
        return self._read_values(
            r"/cpu(\d+)/cpufreq/cpuinfo_max_freq:(\d+)", _CPUFREQ_GLOB, "reading core clocks"
        )

    def _fastest_cpus(self, threads: int) -> list[int]:
        freq = self.core_clocks()
        if not freq:
            return list(range(threads))
        return sorted(sorted(freq, key=lambda c: (freq[c], c), reverse=True)[:threads])

    def has_taskset(self) -> bool:
        return "taskset" in self._shell("command -v taskset || true", "looking for taskset")

    def folder_state(self) -> str:
        """``absent``, ``own`` (made by a runner: marked) or ``foreign``."""
        d = shlex.quote(self.remote_dir)
        out = self._shell(
            f"test -d {d} && echo dir; test -f {d}/{MARKER} && echo mark; true",
            "looking at " + self.remote_dir,
        )
        words = out.split()
        return "own" if "mark" in words else "foreign" if "dir" in words else "absent"

    def prepare(self) -> None:
        """Make (or find) the runner's folder and put the benchmark program in it, once."""
        if self._ready:
            return
        self.check_device()
        d = shlex.quote(self.remote_dir)
        state = self.folder_state()
        if state == "foreign":
            raise RunnerError(
                f"adb device {self.serial}: {self.remote_dir} exists but was not made by hwnas "
                f"(no {MARKER} in it); hwnas never deletes what it did not make: move it away "
                "or pass another remote_dir"
            )
        if state == "absent":
            self._shell(
                f"mkdir -p {d}/bin {d}/work && touch {d}/{MARKER}", "creating " + self.remote_dir
            )
        if self.host_tool is not None:
            remote = shlex.quote(self.tool_path)
            have = self._shell(f"md5sum {remote} 2>/dev/null; true", "checking the tool")
            if _md5(self.host_tool) not in have.split():
                with tempfile.TemporaryDirectory(prefix="hwnas-adb-") as tmp:
                    staged = Path(tmp) / self.bench.tool
                    shutil.copyfile(self.host_tool, staged)
                    self._adb("push", str(staged), f"{self.remote_dir}/bin/", step="push tool")
                self._shell(f"chmod 755 {remote}", "chmod")
        elif self.tool_path.startswith(self.remote_dir + "/") and "ok" not in self._shell(
            f"test -x {shlex.quote(self.tool_path)} && echo ok; true", "looking for the tool"
        ):
            raise RunnerError(
                    f"adb device {self.serial}: no {self.bench.tool} in {self.remote_dir}/bin; "
                    f"give its host path: --perf-test PATH (or perf_test: in config.yaml)"
                )
        self._ready = True

    def _pin_prefix(self, threads: int) -> list[str]:
        if not self.pin or not self.has_taskset():
            return []
        return ["taskset", _cpu_mask(self.cpus or self._fastest_cpus(threads))]

    def temperatures(self) -> dict[int, float]:
        """Thermal zones' temperatures (°C) as the kernel reports them (millidegrees)."""
        raw = self._read_values(r"thermal_zone(\d+)/temp:(-?\d+)", _THERMAL_GLOB, "thermal")
        return {z: v / 1000.0 for z, v in raw.items()}

    def _cool_down(self) -> None:
        waited = 0.0
        while waited < COOL_MAX_S:
            temps = self.temperatures()
            if not temps or max(temps.values()) <= COOL_ABOVE_C:
                break
            time.sleep(self.cool_step_s)
            waited += self.cool_step_s
        self.cooled_s += waited

    # -- the contract --
    def protocol(self, threads: int = DEFAULT_THREADS) -> dict:
        return {
            **self.bench.protocol(),
            "pinned": self.pin,
            "cool_above_c": COOL_ABOVE_C,
            "thermal": f"waits while any of {_THERMAL_GLOB} reads over {COOL_ABOVE_C:g} C "
            f"(at most {COOL_MAX_S:g} s per batch)",
        }

    def _measure(
        self, models: Mapping[str, Path], *, runs: int, warmup: int, threads: int
    ) -> dict[str, Stats]:
        for name, path in models.items():
            if Path(path).suffix != self.bench.suffix:
                raise HwnasError(
                    f"model {name!r}: the {self.runtime} runtime takes {self.bench.suffix} files, "
                    f"got {path}"
                )
        self.prepare()
        self._prefix = self._pin_prefix(threads)
        names = neutral_names(models)
        stems = list(names)
        out: dict[str, Stats] = {}
        for i in range(0, len(stems), ADB_PUSH_CHUNK):
            batch = stems[i : i + ADB_PUSH_CHUNK]
            self._cool_down()
            with tempfile.TemporaryDirectory(prefix="hwnas-adb-") as tmp:
                staged = []
                for stem in batch:
                    staged.append(Path(tmp) / f"{stem}{self.bench.suffix}")
                    shutil.copyfile(models[names[stem]], staged[-1])
                self._adb("push", *map(str, staged), f"{self.remote_dir}/work/", step="push")
            try:
                for stem in batch:
                    out[names[stem]] = self._run_one(stem, runs, warmup, threads)
            finally:
                files = [f"{self.remote_dir}/work/{s}{ext}" for s in batch
                         for ext in (self.bench.suffix, ".csv")]
                with contextlib.suppress(RunnerError):
                    self._shell(shlex.join(["rm", "-f", *files]), "removing the batch")
        return out

    def _run_one(self, stem: str, runs: int, warmup: int, threads: int) -> Stats:
        model, result = f"{stem}{self.bench.suffix}", f"{stem}.csv"
        argv = [*self._prefix,
                *self.bench.argv(self.tool_path, model, result, runs, warmup, threads)]
        work = shlex.quote(f"{self.remote_dir}/work")
        # The shell's status is cat's; the tool's own status comes back after the mark.
        done = self._adb(
            "shell",
            f"cd {work} && {shlex.join(argv)}; echo {_RC_MARK}$?; cat {result} 2>/dev/null",
            step=f"measuring {stem}",
            check=False,
        )
        log, mark, rest = done.stdout.partition(_RC_MARK)
        rc_text, _, result_text = rest.partition("\n")
        cause = self.bench.cause(log, done.stderr)
        if not mark or not rc_text.strip().isdigit():
            raise RunnerError(f"{self._fail}: measuring {stem} exited {done.returncode}: {cause}")
        if int(rc_text) != 0:
            raise RunnerError(f"{self._fail}: {self.bench.tool} exited {rc_text.strip()}: {cause}")
        return self.bench.stats(log + "\n" + done.stderr, result_text, runs, warmup, self._fail)

    def device_info(self) -> dict:
        """Maker, model, Android version, SoC, CPU, big-core clock and governor, the runtime."""
        self.check_device()
        props = dict(
            re.findall(r"^\[([^\]]+)\]: \[(.*)\]\s*$", self._shell("getprop", "getprop"), re.M)
        )
        from . import protocol

        cpu = protocol.cpu_model_from(self._shell("cat /proc/cpuinfo", "reading /proc/cpuinfo"))
        soc = " ".join(filter(None, (props.get("ro.soc.manufacturer"), props.get("ro.soc.model"))))
        clocks = self.core_clocks()
        big = max(clocks, key=lambda c: (clocks[c], c)) if clocks else None
        governor = ""
        if big is not None:
            governor = self._shell(
                f"cat /sys/devices/system/cpu/cpu{big}/cpufreq/scaling_governor 2>/dev/null; true",
                "reading the governor",
            ).strip()
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
            "big_cores": sorted(c for c in clocks if clocks[c] == clocks[big]) if clocks else [],
            "big_core_max_khz": clocks[big] if big is not None else None,
            "governor": governor or "unknown",
            "runtime": f"{'onnxruntime' if self.runtime == 'onnxruntime' else 'tflite'} "
            f"({self.bench.tool})",
            "runtime_version": self.runtime_version or "unknown",
        }


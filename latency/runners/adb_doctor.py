"""``nas-latency doctor --runner adb``: what a phone build needs, checked one line each.

Each check returns ``(ok, line)``; a failed line says what to fix. The
checks run in order and stop where a later one cannot run (no adb, no
device). The last check measures one tiny model with the benchmark
program, so a passing doctor means the build's own command works.
"""

from __future__ import annotations

import re
import shlex
import tempfile
from pathlib import Path

from ._remote import call, one_line
from .adb import ADB_TMP, AdbRunner
from .base import RunnerError

MIN_FREE_MB = 200  # a full build keeps at most one batch of models (64, <= ~2 MB each) + the tool


def doctor(runner: AdbRunner, empty_model: Path | None = None) -> list[tuple[bool, str]]:
    """Check everything ``nas-latency build --runner adb`` needs; one ``(ok, line)`` per check."""
    lines: list[tuple[bool, str]] = []
    try:
        done = call([runner.adb, "version"], timeout=runner.timeout, fail="adb", step="version")
        ok = done.returncode == 0
        lines.append((ok, f"adb: {runner.adb} ({one_line(done.stdout)})" if ok else
                      f"adb: {runner.adb} exited {done.returncode}; install Android platform-tools"))
    except RunnerError as e:
        lines.append((False, f"adb: {e}; install Android platform-tools or set adb: in config.yaml"))
        return lines
    try:
        runner.check_device()
        lines.append((True, f"device {runner.serial}: connected and authorised"))
    except RunnerError as e:
        fix = {"unauthorized": "unlock the phone and accept 'Allow USB debugging'",
               "offline": "reconnect the cable, then adb kill-server"}
        state = next((s for s in fix if s in str(e)), None)
        hint = fix[state] if state else "enable USB debugging, plug it in, check adb devices"
        lines.append((False, f"{e}: {hint}"))
        return lines
    state = runner.folder_state()
    lines.append((state != "foreign", {
        "absent": f"folder {runner.remote_dir}: will be created by the first build",
        "own": f"folder {runner.remote_dir}: hwnas's own",
        "foreign": f"folder {runner.remote_dir}: exists and is not hwnas's: move it away "
                   "(hwnas never deletes what it did not make) or choose another remote_dir",
    }[state]))
    lines.append((runner.has_taskset(), "taskset: present (pins to the big cores)"
                  if runner.has_taskset() else "taskset: missing; measurements will not be "
                  "pinned (Android 7+ has it in toybox; pass pin=False to accept)"))
    df = runner._shell(f"df -k {ADB_TMP} 2>/dev/null; true", "df")
    nums = re.findall(r"\s(\d+)\s+\d+%", df)
    free_mb = int(nums[-1]) // 1024 if nums else None
    lines.append((free_mb is not None and free_mb >= MIN_FREE_MB,
                  f"free space in {ADB_TMP}: {free_mb} MB" + (
                      "" if free_mb is not None and free_mb >= MIN_FREE_MB
                      else f"; free at least {MIN_FREE_MB} MB")))
    default_tool = runner.tool_path == f"{runner.remote_dir}/bin/{runner.bench.tool}"
    if runner.host_tool is None and state != "own" and default_tool:
        lines.append((False, f"{runner.bench.tool}: not given; download it (see docs/devices.md) "
                      "and pass --perf-test PATH"))
        return lines
    if state == "foreign":
        return lines
    try:
        runner.prepare()
        with tempfile.TemporaryDirectory(prefix="hwnas-doctor-") as tmp:
            model = _tiny_model(runner.runtime, Path(tmp), empty_model)
            s = runner.measure({"doctor": model}, runs=2, warmup=1)["doctor"]
        lines.append((True, f"{runner.bench.tool}: runs on the phone ({shlex.quote(runner.tool_path)}"
                      f", a tiny model in {s.median:.3f} ms)"))
    except RunnerError as e:
        lines.append((False, f"{runner.bench.tool}: {e}; check it is built for "
                      "arm64-v8a (file says 'ARM aarch64') and for this runtime"))
    return lines


def _tiny_model(runtime: str, folder: Path, given: Path | None) -> Path:
    if given is not None:
        return given
    if runtime == "tflite":
        from hwnas.latency.tflite_graphs import empty_tflite

        path = folder / "doctor.tflite"
        path.write_bytes(empty_tflite(3, 8))
        return path
    from hwnas.latency.graphs import empty_model

    path = folder / "doctor.onnx"
    path.write_bytes(empty_model(3, 8).SerializeToString())
    return path

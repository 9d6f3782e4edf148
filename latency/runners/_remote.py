"""Shared plumbing of the remote runners (ssh, adb): bounded subprocess calls, one-line errors.

Both turn every failure of the link (no such host or device, refused, timed
out, a remote program that failed) into a one-line :class:`RunnerError`.
Every step runs ``ssh``/``adb`` as an argument list with a timeout. Both
tools hand the remote command to the device's shell as one string, so each
remote word is quoted with :func:`shlex.quote` before it is joined. Models
travel under neutral names (``m0000.onnx``, ...): block names contain ``|``,
which no remote path should.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
from collections.abc import Mapping, Sequence
from pathlib import Path

from hwnas.common.errors import HwnasError

from .base import RunnerError, Stats

DEFAULT_TIMEOUT_S = 600.0  # one step (upload, a measurement, clean-up); generous for slow boards
KILL_GRACE_S = 5.0  # after killing a timed-out tool, how long to wait for its pipes to close


def one_line(text: str) -> str:
    """The last non-empty line of ``text``, whitespace collapsed (tools put the cause last)."""
    lines = [" ".join(ln.split()) for ln in text.splitlines() if ln.strip()]
    return lines[-1] if lines else "no output"


def call(
    argv: Sequence[str], *, timeout: float, fail: str, step: str, stdin: bytes | None = None
) -> subprocess.CompletedProcess[str]:
    """Run ``argv`` (no shell) within ``timeout`` seconds; raise ``RunnerError(fail + ...)``.

    The tool runs in its own process group, killed whole on timeout or
    interrupt, so a stuck ``ssh`` or ``adb`` never outlives the step.
    """
    try:
        proc = subprocess.Popen(
            list(argv),
            stdin=subprocess.PIPE if stdin is not None else subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            start_new_session=True,
        )
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
    return subprocess.CompletedProcess(
        proc.args, proc.returncode, out.decode(errors="replace"), err.decode(errors="replace")
    )


def check_word(what: str, value: str) -> str:
    if not value or value.startswith("-") or any(c.isspace() for c in value):
        raise HwnasError(f"{what} must be a non-empty word not starting with '-', got {value!r}")
    return value


def neutral_names(models: Mapping[str, Path]) -> dict[str, str]:
    """``{remote stem: model name}``."""
    return {f"m{i:04d}": name for i, name in enumerate(models)}


def to_stats(raw: object, runs: int, fail: str) -> Stats:
    try:
        s = Stats(float(raw["median"]), float(raw["p10"]), float(raw["p90"]), int(raw["n"]))  # type: ignore[index]
    except (TypeError, KeyError, ValueError):
        raise RunnerError(f"{fail}: malformed statistics {raw!r}") from None
    if s.n < runs:
        raise RunnerError(f"{fail}: {s.n} timed runs reported, at least {runs} asked")
    return s

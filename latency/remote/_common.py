"""Shared plumbing of the remote runners: bounded subprocess calls, one-line errors, checks."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
from collections.abc import Mapping, Sequence
from pathlib import Path

from hwnas.common.errors import HwnasError

from ..runner import RunnerError, Stats

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


def check_protocol(runs: int, warmup: int, threads: int) -> None:
    if runs < 1:
        raise HwnasError(f"runs must be >= 1, got {runs}")
    if warmup < 0:
        raise HwnasError(f"warmup must be >= 0, got {warmup}")
    if threads < 1:
        raise HwnasError(f"threads must be >= 1, got {threads}")


def check_word(what: str, value: str) -> str:
    if not value or value.startswith("-") or any(c.isspace() for c in value):
        raise HwnasError(f"{what} must be a non-empty word not starting with '-', got {value!r}")
    return value


def neutral_names(models: Mapping[str, Path]) -> dict[str, str]:
    """``{remote stem: model name}``; checks that every model file exists."""
    for name, path in models.items():
        if not Path(path).is_file():
            raise HwnasError(f"model {name!r}: no file {path}")
    return {f"m{i:04d}": name for i, name in enumerate(models)}


def to_stats(raw: object, runs: int, fail: str) -> Stats:
    try:
        s = Stats(float(raw["median"]), float(raw["p10"]), float(raw["p90"]), int(raw["n"]))  # type: ignore[index]
    except (TypeError, KeyError, ValueError):
        raise RunnerError(f"{fail}: malformed statistics {raw!r}") from None
    if s.n != runs:
        raise RunnerError(f"{fail}: {s.n} timed runs reported, {runs} asked")
    return s

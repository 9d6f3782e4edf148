"""``LocalRunner``: measure with onnxruntime on this machine's CPU.

It times with the code of :mod:`hwnas.latency.runners.protocol` (IO binding,
cache flush, thread CPU clock; see there), in this process, with the calling
thread pinned to its cores for the call. Parallel measurement is
:meth:`hwnas.latency.MeasuredTarget.fill` with ``workers``: one process per
:meth:`LocalRunner.worker_cpus` slot, each with its own runner.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import ClassVar

from hwnas.common.errors import HwnasError

from . import protocol
from .base import DEFAULT_RUNTIME, DEFAULT_THREADS, RUNTIMES, OrtTiming, Runner, RunnerError, Stats

# Re-exported for callers that tune the protocol (values live in protocol.py).
FLUSH_MB, MIN_TIME_MS, MAX_RUNS = protocol.FLUSH_MB, protocol.MIN_TIME_MS, protocol.MAX_RUNS


@contextlib.contextmanager
def _pinned(cpus: Sequence[int]) -> Iterator[list[int]]:
    """Pin the calling thread to ``cpus`` for the block; restore its affinity after."""
    if not hasattr(os, "sched_setaffinity") or not cpus:
        yield []
        return
    before = os.sched_getaffinity(0)
    os.sched_setaffinity(0, list(cpus))
    try:
        yield list(cpus)
    finally:
        os.sched_setaffinity(0, before)


class LocalRunner(Runner):
    """Measures ONNX models with onnxruntime on this machine's CPU.

    :meth:`measure` takes paths, as every runner does, or serialized models
    (``bytes``), which skip the file system.

    Args:
        cpus: cores to use, ``threads`` per worker (default: the allowed
            cores, fastest first).
        pin: pin the measuring thread(s) to those cores.
        clock, flush_mb, min_time_ms, max_runs: see :class:`OrtTiming`.
        runtime: ``onnxruntime`` (``.onnx`` models) or ``tflite`` (``.tflite``
            models, the LiteRT interpreter), timed by the same protocol.
    """

    name: ClassVar[str] = "local"
    options: ClassVar[Mapping[str, str]] = {"runtime": "runtime"}
    saved: ClassVar[tuple[str, ...]] = ("pin", "clock", "flush_mb", "min_time_ms", "max_runs")
    accepts_bytes: ClassVar[bool] = True

    def __init__(
        self,
        cpus: Sequence[int] | None = None,
        *,
        pin: bool = True,
        clock: str = "auto",
        flush_mb: float = FLUSH_MB,
        min_time_ms: float = MIN_TIME_MS,
        max_runs: int = MAX_RUNS,
        runtime: str = DEFAULT_RUNTIME,
    ) -> None:
        if runtime not in RUNTIMES:
            raise HwnasError(f"runtime must be one of {', '.join(RUNTIMES)}, got {runtime!r}")
        self.runtime = runtime
        self.timing = OrtTiming(clock, flush_mb, min_time_ms, max_runs)
        allowed = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else []
        if cpus is not None:
            bad = [c for c in cpus if allowed and c not in allowed]
            if bad or not cpus:
                raise HwnasError(
                    f"cpus must be a non-empty subset of the allowed cores {allowed}, got {list(cpus)}"
                )
        # fastest first: one worker (host) takes the fastest core, not core 0
        self.cpus = list(cpus) if cpus is not None else ranked_cpus(allowed)
        self.pin = pin

    def protocol(self, threads: int = DEFAULT_THREADS) -> dict:
        rec = {**self.timing.record(threads), "pinned": self.pin}
        if self.runtime == "tflite":
            rec.update(io_binding=False, tool="LiteRT interpreter (ai-edge-litert), XNNPACK")
        return rec

    def worker_cpus(self, workers: int, threads: int) -> list[list[int]]:
        """The cores of each of ``workers`` measuring processes (``threads`` each, disjoint)."""
        if workers < 1:
            raise HwnasError(f"workers must be >= 1, got {workers}")
        if not self.pin or not self.cpus:
            return [[] for _ in range(workers)]
        if workers * threads > len(self.cpus):
            raise HwnasError(
                f"workers x threads must be <= the {len(self.cpus)} usable cores "
                f"{self.cpus}, got {workers} x {threads}"
            )
        return [sorted(self.cpus[i * threads : (i + 1) * threads]) for i in range(workers)]

    def _measure(
        self, models: Mapping[str, Path | bytes], *, runs: int, warmup: int, threads: int
    ) -> dict[str, Stats]:
        t = self.timing
        clock = t.clock_for(threads)
        out: dict[str, Stats] = {}
        with _pinned(self.worker_cpus(1, threads)[0]):
            for name, model in models.items():
                try:
                    raw = protocol.measure_models(
                        {name: model},
                        threads=threads,
                        warmup=warmup,
                        runs=runs,
                        clock=clock,
                        flush_mb=t.flush_mb,
                        min_time_ms=t.min_time_ms,
                        max_runs=t.max_runs,
                        runtime=self.runtime,
                    )[name]
                except Exception as e:  # onnxruntime raises its own types
                    first = (str(e).strip().splitlines() or [""])[0]
                    raise RunnerError(
                        f"local measurement of {name!r} failed: {type(e).__name__}: {first}"
                    ) from None
                out[name] = Stats(raw["median"], raw["p10"], raw["p90"], raw["n"])
        return out

    def device_info(self) -> dict:
        return {
            **protocol.device_info(self.runtime),
            "runner": self.name,
            "measurement": self.protocol(),
        }


def ranked_cpus(allowed: Sequence[int]) -> list[int]:
    """``allowed`` cores, highest maximum clock first (ties: higher number first, as Android
    numbers its big cores last); on a machine without cpufreq, the order is by number, high first.
    """
    return sorted(allowed, key=lambda c: (protocol.max_freq(c), c), reverse=True)

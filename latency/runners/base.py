"""The runner contract: measure ONNX models on some device.

A runner takes a mapping ``{name: path to .onnx}`` and returns timing
statistics per model in milliseconds. Every runner follows one protocol:
batch 1, fp32, ``threads`` intra-op threads, ``warmup`` discarded runs, then
at least ``runs`` timed runs; statistics over the timed runs.
:meth:`Runner.measure` is a template: it checks the protocol and the models,
answers the empty case, then calls the runner's one step,
:meth:`Runner._measure`. What a runner does beyond that (clock, cache
flush, IO binding) is :meth:`Runner.protocol`, recorded in each table's
provenance.

The onnxruntime runners (``local`` and ``ssh``) time the same way, with the
code of :mod:`hwnas.latency.runners.protocol`; :class:`OrtTiming` holds the
choices they share.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import ClassVar

from hwnas.common.errors import HwnasError

from . import protocol

DEFAULT_THREADS = 1  # MnasNet/MobileNetV3 papers: one big core
DEFAULT_WARMUP = 10
DEFAULT_RUNS = 50
CLOCK_CHOICES = ("auto", *protocol.CLOCKS)
RUNTIMES = protocol.RUNTIMES  # onnxruntime: .onnx files; tflite: LiteRT .tflite files (defined where boards read it)
DEFAULT_RUNTIME = "onnxruntime"


@dataclass(frozen=True, slots=True)
class Stats:
    """Timing statistics of one model, milliseconds."""

    median: float
    p10: float
    p90: float
    n: int

    def to_dict(self) -> dict:
        return asdict(self)


class RunnerError(HwnasError):
    """A device could not be reached or did not answer in time (one-line message)."""


def check_protocol(runs: int, warmup: int, threads: int) -> None:
    """One-line :class:`HwnasError` unless ``runs >= 1``, ``warmup >= 0``, ``threads >= 1``."""
    if runs < 1:
        raise HwnasError(f"runs must be >= 1, got {runs}")
    if warmup < 0:
        raise HwnasError(f"warmup must be >= 0, got {warmup}")
    if threads < 1:
        raise HwnasError(f"threads must be >= 1, got {threads}")


class Runner(ABC):
    """Measures ONNX models on one device.

    Class attributes make the runner known to ``nas-latency build`` (see
    :mod:`hwnas.latency.runners`): ``name`` is its ``--runner`` value,
    ``options`` maps the build options that apply to it to the constructor
    keyword they set (``{"device": "serial"}``), ``required`` lists the
    options it cannot do without, ``saved`` the other keywords a target's
    saved settings may hold, ``programs`` the host programs it runs (given
    only on the command line or in the user's config, see
    :mod:`hwnas.latency.user_config`). ``runtime`` is ``onnxruntime`` or
    ``tflite``: which model files :meth:`measure` takes.
    """

    name: ClassVar[str]
    options: ClassVar[Mapping[str, str]] = {}
    required: ClassVar[tuple[str, ...]] = ()
    # Constructor keywords a saved target may set besides ``options`` (never a program).
    saved: ClassVar[tuple[str, ...]] = ()
    # Programs on this host the runner executes: option name -> constructor keyword.
    # They come only from the command line or the user's config, never from a table.
    programs: ClassVar[Mapping[str, str]] = {}
    runtime: str = DEFAULT_RUNTIME  # the runtime the runner measures with (model format follows)
    accepts_bytes: ClassVar[bool] = False  # models may be serialized ONNX instead of paths

    def measure(
        self,
        models: Mapping[str, Path | bytes],
        *,
        runs: int = DEFAULT_RUNS,
        warmup: int = DEFAULT_WARMUP,
        threads: int = DEFAULT_THREADS,
    ) -> dict[str, Stats]:
        """Statistics per model name, in the order given.

        Raises:
            HwnasError: a bad protocol value or a model file that does not exist.
            RunnerError: the device failed or did not answer.
        """
        check_protocol(runs, warmup, threads)
        if not models:
            return {}
        for name, model in models.items():
            if isinstance(model, bytes):
                if not self.accepts_bytes:
                    raise HwnasError(
                        f"model {name!r}: the {self.name} runner takes .onnx files, not bytes"
                    )
            elif not Path(model).is_file():
                raise HwnasError(f"model {name!r}: no file {model}")
        stats = self._measure(models, runs=runs, warmup=warmup, threads=threads)
        return {name: stats[name] for name in models}

    @abstractmethod
    def _measure(
        self, models: Mapping[str, Path | bytes], *, runs: int, warmup: int, threads: int
    ) -> Mapping[str, Stats]:
        """The runner's one step: statistics of every model (checked, non-empty input)."""

    @abstractmethod
    def protocol(self, threads: int = DEFAULT_THREADS) -> dict:
        """How this runner times beyond runs/warmup/threads (for a table's provenance)."""

    @abstractmethod
    def device_info(self) -> dict:
        """Provenance of the device: name, CPU, runtime and version, OS."""


@dataclass(frozen=True)
class OrtTiming:
    """How the onnxruntime runners time a model (see :mod:`hwnas.latency.runners.protocol`).

    Args:
        clock: ``auto`` (this thread's CPU clock with one thread, else wall),
            ``cpu`` or ``wall``.
        flush_mb: memory written before every timed run (0: none).
        min_time_ms: timed milliseconds per model, runs permitting.
        max_runs: most timed runs per model.
    """

    clock: str = "auto"
    flush_mb: float = protocol.FLUSH_MB
    min_time_ms: float = protocol.MIN_TIME_MS
    max_runs: int = protocol.MAX_RUNS

    def __post_init__(self) -> None:
        if self.clock not in CLOCK_CHOICES:
            raise HwnasError(f"clock must be one of {', '.join(CLOCK_CHOICES)}, got {self.clock!r}")
        if self.flush_mb < 0 or self.min_time_ms < 0 or self.max_runs < 1:
            raise HwnasError(
                f"flush_mb and min_time_ms must be >= 0 and max_runs >= 1, got "
                f"{self.flush_mb}, {self.min_time_ms} and {self.max_runs}"
            )

    def clock_for(self, threads: int) -> str:
        """The clock used with ``threads`` intra-op threads."""
        if self.clock == "auto":
            return "cpu" if threads == 1 else "wall"
        if self.clock == "cpu" and threads > 1:
            raise HwnasError(
                "clock 'cpu' times only the calling thread: use 'wall' or 'auto' with threads > 1"
            )
        return self.clock

    def record(self, threads: int) -> dict:
        """The provenance entry: clock, flush, run counts, IO binding."""
        return {
            "clock": self.clock_for(threads),
            "flush_mb": self.flush_mb,
            "min_time_ms": self.min_time_ms,
            "max_runs": self.max_runs,
            "io_binding": True,
        }

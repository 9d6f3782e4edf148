"""The runner contract: measure ONNX models on some device.

A runner takes a mapping ``{name: path to .onnx}`` and returns timing
statistics per model in milliseconds. ``local`` runs onnxruntime in this
process's machine (``measure.py``); ``adb`` and ``ssh`` run a measuring
program on a phone or a board (``remote.py``). Every runner uses the same
protocol: batch 1, fp32, ``threads`` intra-op threads, ``warmup`` discarded
runs, then ``runs`` timed runs; statistics over the timed runs.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from pathlib import Path

from hwnas.common.errors import HwnasError

DEFAULT_THREADS = 1  # MnasNet/MobileNetV3 papers: one big core
DEFAULT_WARMUP = 10
DEFAULT_RUNS = 50


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


class Runner(ABC):
    """Measures ONNX models on one device."""

    name: str

    @abstractmethod
    def measure(self, models: Mapping[str, Path], *, runs: int = DEFAULT_RUNS, warmup: int = DEFAULT_WARMUP,
                threads: int = DEFAULT_THREADS) -> dict[str, Stats]:
        """Statistics per model name; raises :class:`RunnerError` on device failure."""

    @abstractmethod
    def device_info(self) -> dict:
        """Provenance of the device: name, CPU, runtime and version, OS."""

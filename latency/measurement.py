"""Measuring with any runner: layer keys for a table, whole networks for validation.

:func:`measure_keys` measures every layer key alone plus an empty graph (the
per-call overhead), subtracts the overhead from each key and returns both: a
network's prediction is the sum of its layers plus one overhead.
:func:`measure_arch` measures a whole exported network, no subtraction. Both
hand ``.onnx`` files (``.tflite`` ones to a ``tflite`` runner:
:mod:`hwnas.latency.tflite_graphs`, :func:`hwnas.space.export_tflite`) to
:meth:`Runner.measure`, so every runner measures
them under its one protocol (:mod:`hwnas.latency.runners`).

Whole networks can be timed two ways (``protocol=``):

- ``standard`` (:data:`STANDARD`): what a user measures, as
  ``onnxruntime_perf_test`` and TFLite's ``benchmark_model`` do: one session,
  warm, repeated ``session.run`` on fixed inputs, nothing between runs;
  median with p10/p90 (:func:`time_session_runs`). On this machine (the local
  runner) hwnas runs that loop itself; other runners already time the
  runtime's own loop on their device, so they are asked as usual.
- ``flushed`` (:data:`FLUSHED`): the runner's layer protocol (for the local
  runner: IO binding and a cache flush before every run), the way the table's
  layers were measured.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hwnas.common.errors import HwnasError

from .graphs import check_key, empty_model, key_model
from .keys import LayerKey
from .runners import LocalRunner
from .runners import protocol as ort_protocol
from .runners.base import (
    DEFAULT_RUNS,
    DEFAULT_THREADS,
    DEFAULT_WARMUP,
    Runner,
    Stats,
    check_protocol,
)

if TYPE_CHECKING:
    from hwnas.space.spec import Arch

KEY_RUNS = 15  # per-key defaults: thousands of keys, each timed >= MIN_TIME_MS anyway
KEY_WARMUP = 5
OVERHEAD_RUNS = 200  # the empty graph is ~5 us: many runs cost nothing
CHUNK = 32  # keys per runner call, between progress reports
GRAPH_SEED = 0
STANDARD = "standard"  # warm, repeated session.run: what a user measures
FLUSHED = "flushed"  # the runner's layer protocol (cache flush before every run)
ARCH_PROTOCOLS = (STANDARD, FLUSHED)


def subtract_overhead(s: Stats, overhead: float) -> Stats:
    """``s`` less the per-call ``overhead`` (ms), floored at 0.

    >>> subtract_overhead(Stats(0.75, 0.25, 1.0, 15), 0.5)
    Stats(median=0.25, p10=0.0, p90=0.5, n=15)
    """
    return Stats(
        max(0.0, s.median - overhead), max(0.0, s.p10 - overhead), max(0.0, s.p90 - overhead), s.n
    )


def measure_keys(
    keys: Sequence[LayerKey],
    runner: Runner,
    *,
    runs: int = KEY_RUNS,
    warmup: int = KEY_WARMUP,
    threads: int = DEFAULT_THREADS,
    progress: Callable[[int], None] | None = None,
) -> tuple[dict[LayerKey, Stats], float]:
    """Per-key statistics (ms) with the per-call overhead subtracted (floor 0), and the overhead (ms).

    Every key's layer is built with :func:`~hwnas.latency.graphs.key_model`
    and measured alone, ``CHUNK`` keys per runner call; the empty graph of
    the network input's shape gives the overhead of one call.
    ``progress(done)`` gets the number of keys measured so far. Parallel
    measurement is :meth:`hwnas.latency.MeasuredTarget.fill` with ``workers``.
    """
    check_protocol(runs, warmup, threads)
    unique = list(dict.fromkeys(keys))
    for key in unique:
        check_key(key)
    if not unique:
        return {}, 0.0
    out: dict[LayerKey, Stats] = {}
    layer_bytes, empty_bytes, suffix = _writers(runner.runtime)
    with tempfile.TemporaryDirectory(prefix="hwnas-keys-") as tmp:
        folder = Path(tmp)
        empty = folder / f"empty{suffix}"
        # the network's input: 3 channels at the largest resolution of the keys
        empty.write_bytes(empty_bytes(3, max(k.res for k in unique)))
        overhead = runner.measure(
            {"empty": empty}, runs=max(runs, OVERHEAD_RUNS), warmup=warmup, threads=threads
        )["empty"].median
        for start in range(0, len(unique), CHUNK):
            chunk = unique[start : start + CHUNK]
            paths = {}
            for i, key in enumerate(chunk, start):
                paths[str(key)] = folder / f"k{i:06d}{suffix}"
                paths[str(key)].write_bytes(layer_bytes(key, GRAPH_SEED))
            stats = runner.measure(paths, runs=runs, warmup=warmup, threads=threads)
            for key in chunk:
                out[key] = subtract_overhead(stats[str(key)], overhead)
                paths[str(key)].unlink()
            if progress is not None:
                progress(len(out))
    return out, overhead


def _writers(runtime: str) -> tuple[Callable, Callable, str]:
    """(key -> model bytes, (chs, res) -> empty model bytes, file suffix) for ``runtime``."""
    if runtime == "tflite":
        from .tflite_graphs import empty_tflite, key_tflite

        return key_tflite, empty_tflite, ".tflite"
    return (lambda k, seed: key_model(k, seed).SerializeToString(),
            lambda c, r: empty_model(c, r).SerializeToString(), ".onnx")


_exports: dict[tuple, Path] | None = None  # set inside reuse_exports(): export -> file
_exports_dir: Path | None = None


@contextlib.contextmanager
def reuse_exports() -> Iterator[None]:
    """Inside the block, :func:`measure_arch` exports each network once and measures that
    file again in later calls (same arch, resolution, classes, seed and runtime).

    The weights come from ``torch.manual_seed(seed)`` either way, so the file
    is the same; it saves the export (about as long as one measurement of a
    224 px network) in every round after the first. Nested blocks share the
    outer one's files; the files go when the outermost block ends.
    """
    global _exports, _exports_dir
    if _exports is not None:
        yield
        return
    with tempfile.TemporaryDirectory(prefix="hwnas-exports-") as tmp:
        _exports, _exports_dir = {}, Path(tmp)
        try:
            yield
        finally:
            _exports, _exports_dir = None, None


def export_arch(arch: Arch, folder: Path, resolution: int, num_classes: int, seed: int,
                runtime: str) -> Path:
    """``arch`` with ``torch.manual_seed(seed)`` weights as ``folder/net.onnx`` (``.tflite``
    for the ``tflite`` runtime), or the file of an earlier call inside :func:`reuse_exports`."""
    import torch

    from hwnas.space import build, export_onnx, export_tflite

    key = (arch.to_str(), resolution, num_classes, seed, runtime)
    if _exports is not None and key in _exports:
        return _exports[key]
    if _exports is not None and _exports_dir is not None:
        folder = _exports_dir / f"n{len(_exports):05d}"
        folder.mkdir()
    torch.manual_seed(seed)
    model = build(arch, num_classes=num_classes)
    tflite = runtime == "tflite"
    path = (export_tflite if tflite else export_onnx)(
        arch, folder / f"net{'.tflite' if tflite else '.onnx'}", resolution=resolution,
        num_classes=num_classes, model=model)
    if _exports is not None:
        _exports[key] = path
    return path


def measure_arch(
    arch: Arch,
    resolution: int = 224,
    runner: Runner | None = None,
    *,
    runs: int = DEFAULT_RUNS,
    warmup: int = DEFAULT_WARMUP,
    threads: int = DEFAULT_THREADS,
    num_classes: int = 1000,
    seed: int = 0,
    protocol: str = FLUSHED,
) -> Stats:
    """The whole network end to end (exported with random weights), no subtraction.

    ``runner`` defaults to a :class:`~hwnas.latency.runners.LocalRunner`.
    ``protocol``: ``flushed`` (default: the runner's own protocol, as the
    layers were measured) or ``standard`` (warm repeated ``session.run``,
    see the module docstring).
    """
    check_protocol(runs, warmup, threads)
    if resolution < 1:
        raise HwnasError(f"resolution must be >= 1, got {resolution}")
    if protocol not in ARCH_PROTOCOLS:
        raise HwnasError(f"protocol must be one of {', '.join(ARCH_PROTOCOLS)}, got {protocol!r}")
    runner = runner if runner is not None else LocalRunner()
    with tempfile.TemporaryDirectory(prefix="hwnas-arch-") as tmp:
        path = export_arch(arch, Path(tmp), resolution, num_classes, seed, runner.runtime)
        if protocol == STANDARD and isinstance(runner, LocalRunner):
            cpus = runner.worker_cpus(1, threads)[0]
            return measure_standard(path, runs=runs, warmup=warmup, threads=threads, cpus=cpus,
                                    runtime=runner.runtime)
        return runner.measure({"net": path}, runs=runs, warmup=warmup, threads=threads)["net"]


def time_session_runs(
    sess: Any, feeds: dict, *, runs: int, warmup: int, clock: str = "wall", timer: Any = None
) -> list[float]:
    """Milliseconds of ``runs`` timed ``sess.run(None, feeds)`` after ``warmup`` untimed ones.

    The runtime's own loop, as ``onnxruntime_perf_test`` runs it: one session,
    the same inputs every time, nothing in between (no flush, no binding).
    ``clock``: ``wall`` or ``cpu`` (this thread's CPU clock: with one
    intra-op thread onnxruntime computes on the calling thread, and time the
    OS gives to other processes is not counted). ``timer`` (ns) is for tests.
    """
    return ort_protocol.time_calls(
        lambda: sess.run(None, feeds), warmup=warmup, runs=runs, clock=clock, timer=timer
    )


def measure_standard(
    model: Path | bytes,
    *,
    runs: int = DEFAULT_RUNS,
    warmup: int = DEFAULT_WARMUP,
    threads: int = DEFAULT_THREADS,
    cpus: Sequence[int] = (),
    runtime: str = "onnxruntime",
) -> Stats:
    """One ONNX model under the standard protocol on this machine (onnxruntime CPU),
    or with ``runtime="tflite"`` one ``.tflite`` model with the LiteRT interpreter.

    Same session options as the table (:func:`~hwnas.latency.runners.protocol.make_session`),
    inputs drawn once, the thread pinned to ``cpus`` for the call, the
    clock of :func:`~hwnas.latency.runners.protocol.resolve_clock` (``cpu``
    with one thread, else wall), median with p10/p90.
    """
    import numpy as np

    check_protocol(runs, warmup, threads)
    clock = ort_protocol.resolve_clock("auto", threads)
    rng = np.random.default_rng(ort_protocol.INPUT_SEED)
    if runtime == "tflite":  # the interpreter's invoke(), inputs set once (benchmark_model's loop)
        from .runners.litert import tflite_call

        call = tflite_call(model, threads, rng)
    else:
        sess = ort_protocol.make_session(model, threads)
        feeds = {
            i.name: rng.standard_normal(
                [d if isinstance(d, int) and d > 0 else 1 for d in i.shape]
            ).astype(np.float32)
            for i in sess.get_inputs()
        }

        def call() -> None:
            sess.run(None, feeds)

    before = os.sched_getaffinity(0) if cpus and hasattr(os, "sched_setaffinity") else None
    if before is not None:
        os.sched_setaffinity(0, list(cpus))
    try:
        times = ort_protocol.time_calls(call, warmup=warmup, runs=runs, clock=clock)
    finally:
        if before is not None:
            os.sched_setaffinity(0, before)
    raw = ort_protocol.summarize(times)
    return Stats(raw["median"], raw["p10"], raw["p90"], raw["n"])

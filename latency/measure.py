"""Measure layers and whole networks here: ``LocalRunner``, ``measure_keys``, ``measure_arch``.

Protocol (the project's, see ``hwnas.latency.runner``): onnxruntime CPU
execution provider, batch 1, fp32, ``threads`` intra-op threads, sequential,
all graph optimisations, the measuring thread pinned to its own core(s). On
top of it ``LocalRunner``:

- runs through an IO binding (inputs copied in once, outputs preallocated),
  so a run costs what the graph costs inside a network;
- before every timed run writes ``flush_mb`` of memory, so a layer's weights
  and input are not left hot in the private caches by its previous run
  (inside a network the other layers evict them). On the development host
  (AMD EPYC, 2 MB L2 a core, 32 MB L3) the layer sums of mobilenetv3_large,
  mnasnet_a1 and mobilenetv2 fell 6-10% below the whole networks with no
  flush or 8 MB, 3-6% above with 16 MB, within about 3% with 12 MB; 0
  disables it. The best size depends on the caches: calibrate on a new host;
- with one thread times the thread's CPU clock (``clock="auto"``), which
  does not count time preempted by other processes, so a busy machine gives
  the latency of an idle one; with more threads it times the wall clock;
- times at least ``runs`` runs and then more until ``min_time_ms`` of timed
  runs (at most ``max_runs``), so fast layers get a stable median.

``measure_keys`` measures every layer key alone plus an empty graph (the
per-call overhead), subtracts the overhead from each key and returns both:
a network's prediction is the sum of its layers plus one overhead.
"""

from __future__ import annotations

import contextlib
import json
import os
import queue
import subprocess
import sys
import tempfile
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from hwnas.common.errors import HwnasError

from . import remote_measure as rm
from .graphs import check_key, empty_model, key_model
from .keys import LayerKey
from .remote._common import check_protocol
from .runner import DEFAULT_RUNS, DEFAULT_THREADS, DEFAULT_WARMUP, Runner, RunnerError, Stats

if TYPE_CHECKING:
    from hwnas.space.spec import Arch

FLUSH_MB = 12.0  # see the module docstring: measured, not derived
MIN_TIME_MS = 5.0  # timed milliseconds per model before the median is trusted
MAX_RUNS = 60  # cap for very fast models (each run also pays a flush, ~0.35 ms for 12 MB)
KEY_RUNS = 15  # per-key defaults: thousands of keys, each timed >= MIN_TIME_MS anyway
KEY_WARMUP = 5
OVERHEAD_RUNS = 200  # the empty graph is ~5 us: many runs cost nothing
CHUNK = 32  # keys per call of a generic (remote) runner, between progress reports
GRAPH_SEED = 0
CLOCK_CHOICES = ("auto", "cpu", "wall")


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
    """Measures ONNX models with onnxruntime on this machine's CPU (see the module docstring).

    :meth:`measure` takes paths, as every runner does, or serialized models
    (``bytes``), which skip the file system.

    Args:
        cpus: cores to use, ``threads`` per worker (default: the allowed
            cores, fastest first).
        pin: pin the measuring thread(s) to those cores.
        clock: ``auto`` (thread CPU clock with one thread, else wall),
            ``cpu`` or ``wall``.
        flush_mb: memory written before every run (0: none).
        min_time_ms: timed milliseconds per model, runs permitting.
        max_runs: most timed runs per model.
    """

    name = "local"

    def __init__(
        self,
        cpus: Sequence[int] | None = None,
        *,
        pin: bool = True,
        clock: str = "auto",
        flush_mb: float = FLUSH_MB,
        min_time_ms: float = MIN_TIME_MS,
        max_runs: int = MAX_RUNS,
    ) -> None:
        if clock not in CLOCK_CHOICES:
            raise HwnasError(f"clock must be one of {', '.join(CLOCK_CHOICES)}, got {clock!r}")
        if flush_mb < 0 or min_time_ms < 0 or max_runs < 1:
            raise HwnasError(
                f"flush_mb and min_time_ms must be >= 0 and max_runs >= 1, got "
                f"{flush_mb}, {min_time_ms} and {max_runs}"
            )
        allowed = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else []
        if cpus is not None:
            bad = [c for c in cpus if allowed and c not in allowed]
            if bad or not cpus:
                raise HwnasError(
                    f"cpus must be a non-empty subset of the allowed cores {allowed}, got {list(cpus)}"
                )
        self.cpus = (
            list(cpus) if cpus is not None else (rm.fastest_cpus(len(allowed)) if allowed else [])
        )
        self.pin, self.clock, self.flush_mb = pin, clock, flush_mb
        self.min_time_ms, self.max_runs = min_time_ms, max_runs
        self._flush: Callable[[], None] | None = None
        self._flush_ready = False

    # --- protocol -------------------------------------------------------
    def clock_for(self, threads: int) -> str:
        if self.clock == "auto":
            return "cpu" if threads == 1 else "wall"
        if self.clock == "cpu" and threads > 1:
            raise HwnasError(
                "clock 'cpu' times only the calling thread: use 'wall' or 'auto' with threads > 1"
            )
        return self.clock

    def protocol(self, threads: int = DEFAULT_THREADS) -> dict:
        """What this runner does beyond runs/warmup/threads (for a table's provenance)."""
        return {
            "clock": self.clock_for(threads),
            "flush_mb": self.flush_mb,
            "min_time_ms": self.min_time_ms,
            "max_runs": self.max_runs,
            "io_binding": True,
            "pinned": self.pin,
        }

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

    def _flusher(self) -> Callable[[], None] | None:
        if not self._flush_ready:
            self._flush, self._flush_ready = rm.cache_flusher(self.flush_mb), True
        return self._flush

    def measure_one(
        self, model: Path | str | bytes, *, runs: int, warmup: int, threads: int
    ) -> Stats:
        """One model (path or serialized bytes), on the thread and cores this call runs on."""
        raw = rm.measure_model(
            model,
            threads=threads,
            warmup=warmup,
            runs=runs,
            min_time_ms=self.min_time_ms,
            max_runs=self.max_runs,
            clock=self.clock_for(threads),
            before=self._flusher(),
        )
        return Stats(raw["median"], raw["p10"], raw["p90"], raw["n"])

    # --- Runner ---------------------------------------------------------
    def measure(
        self,
        models: Mapping[str, Path | bytes],
        *,
        runs: int = DEFAULT_RUNS,
        warmup: int = DEFAULT_WARMUP,
        threads: int = DEFAULT_THREADS,
    ) -> dict[str, Stats]:
        """Statistics per model name; models are paths or serialized ONNX bytes."""
        check_protocol(runs, warmup, threads)
        cpus = self.worker_cpus(1, threads)[0]
        out: dict[str, Stats] = {}
        with _pinned(cpus):
            for name, model in models.items():
                if not isinstance(model, bytes) and not Path(model).is_file():
                    raise HwnasError(f"model {name!r}: no file {model}")
                try:
                    out[name] = self.measure_one(model, runs=runs, warmup=warmup, threads=threads)
                except Exception as e:  # onnxruntime raises its own types
                    first = (str(e).strip().splitlines() or [""])[0]
                    raise RunnerError(
                        f"local measurement of {name!r} failed: {type(e).__name__}: {first}"
                    ) from None
        return out

    def device_info(self) -> dict:
        return {**rm.device_info(), "runner": self.name, "measurement": self.protocol()}


# --- per-layer tables ----------------------------------------------------------
def _subtract(s: Stats, overhead: float) -> Stats:
    return Stats(
        max(0.0, s.median - overhead), max(0.0, s.p10 - overhead), max(0.0, s.p90 - overhead), s.n
    )


def _empty_shape(keys: Sequence[LayerKey]) -> tuple[int, int]:
    return 3, max(k.res for k in keys)  # the network's input: the same for every batch of keys


def measure_keys(
    keys: Sequence[LayerKey],
    runner: Runner,
    *,
    runs: int = KEY_RUNS,
    warmup: int = KEY_WARMUP,
    threads: int = DEFAULT_THREADS,
    progress: Callable[[int], None] | None = None,
    workers: int = 1,
) -> tuple[dict[LayerKey, Stats], float]:
    """Per-key statistics (ms) with the per-call overhead subtracted (floor 0), and the overhead (ms).

    Every key's layer is built with :func:`~hwnas.latency.graphs.key_model`
    and measured alone; the empty graph of the network input's shape gives
    the overhead of one call. ``progress(done)`` gets the number of keys
    measured so far. A :class:`LocalRunner` measures in memory, with
    ``workers`` processes on disjoint cores; other runners get ``.onnx``
    files in a temporary folder, ``CHUNK`` keys per call, and ``workers``
    must be 1.
    """
    check_protocol(runs, warmup, threads)
    unique = list(dict.fromkeys(keys))
    for key in unique:
        check_key(key)
    if not unique:
        return {}, 0.0
    if isinstance(runner, LocalRunner):
        raw, overhead = _measure_local(
            unique,
            runner,
            runs=runs,
            warmup=warmup,
            threads=threads,
            progress=progress,
            workers=workers,
        )
    else:
        if workers != 1:
            raise HwnasError(
                f"workers must be 1 for the {runner.name!r} runner (it measures one model at a time), "
                f"got {workers}"
            )
        raw, overhead = _measure_files(
            unique, runner, runs=runs, warmup=warmup, threads=threads, progress=progress
        )
    return {k: _subtract(raw[k], overhead) for k in unique}, overhead


def _measure_files(
    keys: list[LayerKey],
    runner: Runner,
    *,
    runs: int,
    warmup: int,
    threads: int,
    progress: Callable[[int], None] | None,
) -> tuple[dict[LayerKey, Stats], float]:
    out: dict[LayerKey, Stats] = {}
    with tempfile.TemporaryDirectory(prefix="hwnas-keys-") as tmp:
        folder = Path(tmp)
        empty = folder / "empty.onnx"
        empty.write_bytes(empty_model(*_empty_shape(keys)).SerializeToString())
        overhead = runner.measure(
            {"empty": empty}, runs=max(runs, OVERHEAD_RUNS), warmup=warmup, threads=threads
        )["empty"].median
        for start in range(0, len(keys), CHUNK):
            chunk = keys[start : start + CHUNK]
            paths = {}
            for i, key in enumerate(chunk, start):
                paths[str(key)] = folder / f"k{i:06d}.onnx"
                paths[str(key)].write_bytes(key_model(key, GRAPH_SEED).SerializeToString())
            stats = runner.measure(paths, runs=runs, warmup=warmup, threads=threads)
            for key in chunk:
                out[key] = stats[str(key)]
                paths[str(key)].unlink()
            if progress is not None:
                progress(len(out))
    return out, overhead


# --- whole networks ----------------------------------------------------------
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
) -> Stats:
    """The whole network end to end (exported with random weights), same protocol, no subtraction."""
    import torch

    from hwnas.space import build, export_onnx

    check_protocol(runs, warmup, threads)
    if resolution < 1:
        raise HwnasError(f"resolution must be >= 1, got {resolution}")
    runner = runner if runner is not None else LocalRunner()
    torch.manual_seed(seed)
    model = build(arch, num_classes=num_classes)
    with tempfile.TemporaryDirectory(prefix="hwnas-arch-") as tmp:
        path = export_onnx(
            arch,
            Path(tmp) / "net.onnx",
            resolution=resolution,
            num_classes=num_classes,
            model=model,
        )
        return runner.measure({"net": path}, runs=runs, warmup=warmup, threads=threads)["net"]


# --- local measurement, in this process or in worker processes ----------------
WORKER_EXIT_S = 10.0
# Workers load remote_measure.py by path: numpy and onnxruntime only, no hwnas, no torch.
_WORKER_CODE = (
    "import importlib.util as u, json, sys\n"
    "s = u.spec_from_file_location('hwnas_remote_measure', sys.argv[1])\n"
    "m = u.module_from_spec(s)\n"
    "s.loader.exec_module(m)\n"
    "sys.exit(m.serve(json.loads(sys.argv[2]), sys.stdin.buffer, sys.stdout.buffer))\n"
)


def _payload(key: LayerKey | None, keys: Sequence[LayerKey]) -> bytes:
    """The serialized graph of ``key``, or of the empty graph when ``key`` is None."""
    model = empty_model(*_empty_shape(keys)) if key is None else key_model(key, GRAPH_SEED)
    return model.SerializeToString()


def _measure_local(
    keys: list[LayerKey],
    runner: LocalRunner,
    *,
    runs: int,
    warmup: int,
    threads: int,
    progress: Callable[[int], None] | None,
    workers: int,
) -> tuple[dict[LayerKey, Stats], float]:
    cpus = runner.worker_cpus(workers, threads)
    empty_runs = max(runs, OVERHEAD_RUNS)
    out: dict[LayerKey, Stats] = {}
    if workers == 1:
        with _pinned(cpus[0]):
            empty = _payload(None, keys)
            overhead = runner.measure_one(empty, runs=empty_runs, warmup=warmup, threads=threads)
            for key in keys:
                out[key] = runner.measure_one(
                    _payload(key, keys), runs=runs, warmup=warmup, threads=threads
                )
                if progress is not None:
                    progress(len(out))
        return out, overhead.median
    config = {
        "clock": runner.clock_for(threads),
        "flush_mb": runner.flush_mb,
        "min_time_ms": runner.min_time_ms,
        "max_runs": runner.max_runs,
        "runs": runs,
        "warmup": warmup,
        "threads": threads,
    }
    todo: queue.Queue = queue.Queue()
    for key in keys:
        todo.put(key)
    results: queue.Queue = queue.Queue()
    stop = threading.Event()
    procs = [_start_worker({**config, "cpus": c}) for c in cpus]
    drivers = [
        threading.Thread(
            target=_drive, args=(p, keys, empty_runs, todo, results, stop), daemon=True
        )
        for p in procs
    ]
    overheads: list[float] = []
    try:
        for d in drivers:
            d.start()
        while len(out) < len(keys) or len(overheads) < workers:
            key, value = results.get()
            if isinstance(value, str):
                raise RunnerError(value)
            if key is None:
                overheads.append(value.median)
            else:
                out[key] = value
                if progress is not None:
                    progress(len(out))
    finally:
        stop.set()
        for p, e in procs:
            _stop_worker(p, e)
        for d in drivers:
            d.join(timeout=WORKER_EXIT_S)
    return out, sum(overheads) / len(overheads)


def _start_worker(config: dict) -> tuple[subprocess.Popen, tempfile._TemporaryFileWrapper]:
    err = tempfile.TemporaryFile()  # noqa: SIM115 (the worker's messages; closed by _stop_worker)
    argv = [sys.executable, "-c", _WORKER_CODE, rm.__file__, json.dumps(config)]
    proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=err)
    return proc, err


def _stop_worker(proc: subprocess.Popen, err: tempfile._TemporaryFileWrapper) -> None:
    with contextlib.suppress(OSError):
        proc.stdin.close()  # type: ignore[union-attr]
    try:
        proc.wait(timeout=WORKER_EXIT_S)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
    err.close()


def _drive(
    worker: tuple[subprocess.Popen, tempfile._TemporaryFileWrapper],
    keys: list[LayerKey],
    empty_runs: int,
    todo: queue.Queue,
    results: queue.Queue,
    stop: threading.Event,
) -> None:
    """Feed one worker the empty graph, then keys while any are left; pass its answers on.

    Puts ``(key, Stats)`` (``key`` None for the empty graph) or ``(key, message)``.
    """
    proc, err = worker

    def ask(key: LayerKey | None, runs: int | None = None) -> Stats:
        payload = _payload(key, keys)
        request = {"size": len(payload)} if runs is None else {"size": len(payload), "runs": runs}
        header = json.dumps(request).encode() + b"\n"
        proc.stdin.write(header + payload)  # type: ignore[union-attr]
        proc.stdin.flush()  # type: ignore[union-attr]
        line = proc.stdout.readline()  # type: ignore[union-attr]
        if not line:
            proc.wait()
            err.seek(0)
            lines = err.read().decode(errors="replace").strip().splitlines()
            raise RunnerError(
                f"measuring worker exited {proc.returncode}: {(lines or ['no message'])[-1]}"
            )
        answer = json.loads(line)
        if "error" in answer:
            raise RunnerError(f"measuring {key or 'the empty graph'} failed: {answer['error']}")
        return Stats(**answer)

    key = None
    try:
        results.put((None, ask(None, empty_runs)))
        while not stop.is_set():
            try:
                key = todo.get_nowait()
            except queue.Empty:
                return
            results.put((key, ask(key)))
    except (RunnerError, OSError, ValueError) as e:
        results.put((key, str(e)))

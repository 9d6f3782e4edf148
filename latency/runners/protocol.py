#!/usr/bin/env python3
"""The measuring protocol, in one file: how hwnas times a model with onnxruntime (or LiteRT).

The ``local`` runner imports this module; the ``ssh`` runner copies it to a
board and runs it there, so it needs only Python 3, numpy and onnxruntime (with
``--runtime tflite``: ai-edge-litert, and ``litert.py`` beside it as ``hwnas_litert.py``).
CPU execution provider, batch 1, fp32 inputs of the declared shape (free
dimensions as 1), ``threads`` intra-op threads, one inter-op thread,
sequential, all graph optimisations, pinned to as many cores as threads, and:

- an IO binding (inputs copied in once, outputs preallocated): a run costs
  what the graph costs inside a network;
- ``flush_mb`` of memory written before every timed run, so a layer's weights
  and input are not left hot by its previous run (inside a network the other
  layers evict them). On the development host (AMD EPYC, 2 MB L2 a core, 32 MB
  L3) the layer sums of mobilenetv3_large, mnasnet_a1 and mobilenetv2 fell
  6-10% below the whole networks with no flush or 8 MB, 3-6% above with 16 MB,
  within about 3% with 12 MB. Calibrate on a new host; 0 disables it;
- with one thread the thread's CPU clock (``--clock auto``), which does not
  count time preempted by other processes; with more threads the wall clock;
- ``--warmup`` discarded runs, then at least ``--runs`` timed runs, more until
  ``--min-time-ms`` of timed runs (at most ``--max-runs``).

As a program (milliseconds; ``--names m0000,m0001`` measures only those,
``--info`` prints the device only, also as ``python3 - --info < protocol.py``)::

    python3 protocol.py --threads 1 --warmup 10 --runs 50 models/
    {"format": 1, "device": {...}, "protocol": {...},
     "results": {"m0000": {"median": 0.41, "p10": 0.40, "p90": 0.45, "n": 50}}}
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import platform
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

FORMAT_VERSION = 1
FLUSH_MB = 12.0  # see the module docstring: measured, not derived
MIN_TIME_MS = 5.0  # timed milliseconds per model before the median is trusted
MAX_RUNS = 60  # cap for very fast models (each run also pays a flush, ~0.35 ms for 12 MB)
CLOCKS = ("wall", "cpu")
RUNTIMES = ("onnxruntime", "tflite")  # tflite: the LiteRT interpreter (ai-edge-litert)
CLOCK_CHOICES = ("auto", *CLOCKS)  # auto: cpu with one thread, else wall
INPUT_SEED = 0  # inputs are random normal draws; the seed only makes runs repeatable
_CPUFREQ = "/sys/devices/system/cpu/cpu{}/cpufreq/cpuinfo_max_freq"
# /proc/cpuinfo field naming the CPU: x86 ("model name"), Arm SoCs ("Hardware",
# "Model"), RISC-V ("uarch", "isa"); the first present wins.
_CPU_FIELDS = ("model name", "Hardware", "Model", "uarch", "cpu model", "isa")
_NUMPY_DTYPES = {f"tensor({o})": n for o, n in (("float", "float32"), ("float16", "float16"),
                 ("double", "float64"), ("int64", "int64"), ("int32", "int32"), ("int8", "int8"),
                 ("uint8", "uint8"), ("bool", "bool"))}  # onnxruntime type -> numpy dtype


def summarize(times_ms: Sequence[float]) -> dict:
    """Median, 10th and 90th percentiles (linear interpolation) and count of ``times_ms``.

    >>> summarize([1.0, 2.0, 3.0, 4.0, 5.0])
    {'median': 3.0, 'p10': 1.4, 'p90': 4.6, 'n': 5}
    """
    import numpy as np

    if not times_ms:
        raise ValueError("no timed runs to summarise")
    x = np.asarray(times_ms, dtype=float)
    p10, median, p90 = np.percentile(x, [10, 50, 90])
    return {"median": float(median), "p10": float(p10), "p90": float(p90), "n": int(x.size)}


def cpu_model_from(cpuinfo: str) -> str:
    """The CPU's name in the text of a /proc/cpuinfo; ``""`` when it names none."""
    fields: dict[str, str] = {}
    for line in cpuinfo.splitlines():
        key, sep, value = line.partition(":")
        if sep and value.strip():
            fields.setdefault(key.strip(), value.strip())
    for name in _CPU_FIELDS:
        if name in fields:
            return fields[name]
    if "CPU part" in fields:  # bare Arm kernels: implementer/part codes only
        return f"arm implementer {fields.get('CPU implementer', '?')} part {fields['CPU part']}"
    return ""


def cpu_model() -> str:
    """This machine's CPU from /proc/cpuinfo, else :func:`platform.processor`, else ``unknown``."""
    try:
        text = Path("/proc/cpuinfo").read_text(errors="replace")
    except OSError:
        text = ""
    return cpu_model_from(text) or platform.processor() or "unknown"


def max_freq(cpu: int) -> int:
    """Core ``cpu``'s maximum clock in kHz (0 when unknown)."""
    try:
        return int(Path(_CPUFREQ.format(cpu)).read_text().strip())
    except (OSError, ValueError):
        return 0


def fastest_cpus(count: int) -> list[int]:
    """The ``count`` allowed cores with the highest maximum clock (big cores on big.LITTLE).

    Ties go to the higher core number (Android numbers big cores last).
    """
    allowed = sorted(os.sched_getaffinity(0))
    ranked = sorted(allowed, key=lambda c: (max_freq(c), c), reverse=True)
    return sorted(ranked[: max(1, count)])


def pin(threads: int, cpus: Sequence[int] | None = None) -> list[int]:
    """Pin this process to ``cpus`` (default: the fastest ``threads`` cores); return them.

    Returns ``[]`` where the OS has no ``sched_setaffinity`` (macOS).
    """
    if not hasattr(os, "sched_setaffinity"):
        return []
    chosen = list(cpus) if cpus else fastest_cpus(threads)
    os.sched_setaffinity(0, chosen)
    return chosen


def _litert():
    """``litert.py`` (LiteRT): hwnas's module, or its copy beside this file on a board."""
    try:
        from hwnas.latency.runners import litert
    except ImportError:
        import hwnas_litert as litert  # the ssh runner uploads it under this name
    return litert


def device_info(runtime: str = "onnxruntime") -> dict:
    """What the numbers were measured on: OS, CPU, Python, numpy and runtime versions."""
    import numpy as np

    u = platform.uname()
    return {
        "hostname": u.node,
        "os": f"{u.system} {u.release}",
        "kernel": u.version,
        "machine": u.machine,
        "cpu": cpu_model(),
        "cpu_count": os.cpu_count(),
        "python": platform.python_version(),
        "numpy": np.__version__,
        **(_litert().runtime_fields() if runtime == "tflite" else _ort_fields()),
    }


def _ort_fields() -> dict:
    import onnxruntime as ort

    return {"runtime": "onnxruntime", "runtime_version": ort.__version__}


def _feeds(sess, rng) -> dict:
    feeds = {}
    for inp in sess.get_inputs():
        shape = [d if isinstance(d, int) and d > 0 else 1 for d in inp.shape]  # batch 1
        dtype = _NUMPY_DTYPES.get(inp.type)
        if dtype is None:
            raise ValueError(f"input {inp.name!r} has unsupported type {inp.type}")
        feeds[inp.name] = rng.standard_normal(shape).astype(dtype)
    return feeds


def make_session(model: str | bytes | Path, threads: int):
    """An onnxruntime CPU session under the protocol's options, from a path or serialized bytes."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    source = model if isinstance(model, bytes) else str(model)
    return ort.InferenceSession(source, opts, providers=["CPUExecutionProvider"])


def bound_call(sess, rng):
    """A no-argument function running ``sess`` once on fixed inputs, via an IO binding.

    Inputs are copied into onnxruntime once; outputs with a static shape get
    buffers allocated once, so a call times the graph, not numpy conversions
    or output allocation (inside a whole network neither happens per layer).
    """
    import numpy as np
    import onnxruntime as ort

    binding = sess.io_binding()
    keep = []  # the OrtValues must outlive the binding
    for name, array in _feeds(sess, rng).items():
        value = ort.OrtValue.ortvalue_from_numpy(array)
        keep.append(value)
        binding.bind_ortvalue_input(name, value)
    for out in sess.get_outputs():
        dtype = _NUMPY_DTYPES.get(out.type)
        if dtype and all(isinstance(d, int) and d > 0 for d in out.shape):
            value = ort.OrtValue.ortvalue_from_shape_and_type(out.shape, np.dtype(dtype), "cpu")
            keep.append(value)
            binding.bind_ortvalue_output(out.name, value)
        else:  # free dimensions: onnxruntime allocates per run
            binding.bind_output(out.name, "cpu")

    def call() -> None:
        sess.run_with_iobinding(binding)

    call.keep = keep  # type: ignore[attr-defined]
    return call


def cache_flusher(megabytes: float):
    """A function that writes ``megabytes`` of memory, evicting what a model left in the caches.

    ``None`` for 0 MB. Called before each timed run, it leaves a layer's
    weights and input where the rest of a network would have pushed them.
    """
    import numpy as np

    if megabytes < 0:
        raise ValueError(f"flush size must be >= 0 MB, got {megabytes}")
    if megabytes == 0:
        return None
    buf = np.zeros(int(megabytes * (1 << 20)) // 4, dtype=np.float32)
    one = np.float32(1.0)

    def flush() -> None:
        np.add(buf, one, out=buf)

    flush()  # fault the pages in now, not during the first timed run
    return flush


def resolve_clock(clock: str, threads: int) -> str:
    """``auto`` -> ``cpu`` with one thread, else ``wall``; ``cpu`` needs one thread.

    >>> resolve_clock("auto", 1), resolve_clock("auto", 4)
    ('cpu', 'wall')
    """
    if clock not in CLOCK_CHOICES:
        raise ValueError(f"clock must be one of {', '.join(CLOCK_CHOICES)}, got {clock!r}")
    if clock == "auto":
        return "cpu" if threads == 1 else "wall"
    if clock == "cpu" and threads > 1:
        raise ValueError(
            "clock 'cpu' times only the calling thread: use 'wall' or 'auto' with threads > 1"
        )
    return clock


def time_calls(
    call,
    *,
    warmup: int,
    runs: int,
    min_time_ms: float = 0.0,
    max_runs: int | None = None,
    clock: str = "wall",
    before=None,
    timer=None,
) -> list[float]:
    """Times (ms) of timed ``call()``s after ``warmup`` discarded ones.

    At least ``runs`` timed calls, more until they add up to ``min_time_ms``,
    never more than ``max_runs`` (default ``runs``). ``before()`` runs untimed
    before every timed call (a cache flush). ``clock="cpu"``: this thread's
    CPU clock (with one intra-op thread onnxruntime computes on the calling
    thread). ``timer`` (nanoseconds, for tests) replaces the clock.
    """
    if clock not in CLOCKS:
        raise ValueError(f"clock must be one of {', '.join(CLOCKS)}, got {clock!r}")
    cap = max(runs, max_runs if max_runs is not None else runs)
    for _ in range(warmup):
        call()
    times: list[float] = []
    total = 0.0
    clock_ns = timer or (time.perf_counter_ns if clock == "wall" else time.thread_time_ns)
    while len(times) < runs or (total < min_time_ms and len(times) < cap):
        if before is not None:
            before()
        t0 = clock_ns()
        call()
        dt = (clock_ns() - t0) / 1e6
        times.append(dt)
        total += dt
    return times


@functools.lru_cache(maxsize=1)
def _kept_flusher(megabytes: float):
    return cache_flusher(megabytes)  # one buffer per process, not one per call


def measure_models(
    models: Mapping[str, str | bytes | Path],
    *,
    threads: int,
    warmup: int,
    runs: int,
    clock: str = "auto",
    flush_mb: float = FLUSH_MB,
    min_time_ms: float = MIN_TIME_MS,
    max_runs: int = MAX_RUNS,
    runtime: str = "onnxruntime",
) -> dict[str, dict]:
    """Statistics (ms) per model (a path or serialized bytes) under the protocol.

    Each model gets a session (:func:`make_session`) run through an IO binding
    (:func:`bound_call`), or with ``runtime="tflite"`` a LiteRT interpreter
    (``litert.tflite_call``), timed by :func:`time_calls` with ``flush_mb``
    written before every timed run. The caller pins the process or thread.
    """
    import numpy as np

    if runtime not in RUNTIMES:
        raise ValueError(f"runtime must be one of {', '.join(RUNTIMES)}, got {runtime!r}")
    resolved = resolve_clock(clock, threads)
    flush = _kept_flusher(flush_mb)
    out = {}
    for name, model in models.items():
        rng = np.random.default_rng(INPUT_SEED)
        if runtime == "tflite":
            call = _litert().tflite_call(model, threads, rng)
        else:
            call = bound_call(make_session(model, threads), rng)
        times = time_calls(call, warmup=warmup, runs=runs, min_time_ms=min_time_ms,
                           max_runs=max_runs, clock=resolved, before=flush)
        out[name] = summarize(times)
    return out


def measure_folder(
    folder: Path,
    *,
    threads: int,
    warmup: int,
    runs: int,
    clock: str = "auto",
    flush_mb: float = FLUSH_MB,
    min_time_ms: float = MIN_TIME_MS,
    max_runs: int = MAX_RUNS,
    cpus: Sequence[int] | None = None,
    pin_cpus: bool = True,
    names: Sequence[str] | None = None,
    runtime: str = "onnxruntime",
) -> dict:
    """The JSON document for every model (``*.onnx``; ``*.tflite`` for ``runtime="tflite"``)
    in ``folder`` (name: file stem), or ``names``."""
    ext = ".tflite" if runtime == "tflite" else ".onnx"
    models = [folder / f"{n}{ext}" for n in names] if names else sorted(folder.glob(f"*{ext}"))
    missing = [p.name for p in models if not p.is_file()]
    if not folder.is_dir() or missing or not models:
        raise ValueError(f"{folder} is not a folder" if not folder.is_dir() else
                         f"no {', '.join(missing) or ext + ' files'} in {folder}")
    timing = dict(clock=resolve_clock(clock, threads), flush_mb=flush_mb, min_time_ms=min_time_ms,
                  max_runs=max_runs)
    pinned = pin(threads, cpus) if pin_cpus else []
    results = measure_models({p.stem: p for p in models}, threads=threads, warmup=warmup,
                             runs=runs, runtime=runtime, **timing)
    protocol = dict(threads=threads, warmup=warmup, runs=runs, batch=1, **timing, runtime=runtime,
                    io_binding=runtime != "tflite", pinned_cpus=pinned)
    return {"format": FORMAT_VERSION, "device": device_info(runtime), "protocol": protocol,
            "results": results}


def _at_least(low: float, kind: type = int):
    def parse(text: str) -> float:
        value = kind(text)
        if not value >= low:
            raise argparse.ArgumentTypeError(f"must be >= {low}, got {value}")
        return value

    return parse


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folder", type=Path, nargs="?", help="folder of .onnx/.tflite models")
    parser.add_argument("--runtime", choices=RUNTIMES, default="onnxruntime")
    parser.add_argument("--threads", type=_at_least(1), default=1)
    parser.add_argument("--warmup", type=_at_least(0), default=10)
    parser.add_argument("--runs", type=_at_least(1), default=50)
    parser.add_argument("--clock", choices=CLOCK_CHOICES, default="auto")
    parser.add_argument("--flush-mb", type=_at_least(0, float), default=FLUSH_MB)
    parser.add_argument("--min-time-ms", type=_at_least(0, float), default=MIN_TIME_MS)
    parser.add_argument("--max-runs", type=_at_least(1), default=MAX_RUNS)
    parser.add_argument("--cpus", type=lambda s: [int(c) for c in s.split(",")],
                        help="cores to pin to (default: the fastest)")
    parser.add_argument("--no-pin", action="store_true", help="do not pin to cores")
    parser.add_argument("--names", type=lambda s: s.split(","), help="model stems (default: all)")
    parser.add_argument("--info", action="store_true", help="print the device description only")
    args = parser.parse_args(argv)
    if args.info:
        doc = {"format": FORMAT_VERSION, "device": device_info(args.runtime)}
    elif args.folder is None:
        parser.error("a folder of models is required (or --info)")
    else:
        try:
            protocol = ("threads", "warmup", "runs", "clock", "flush_mb", "min_time_ms", "max_runs")
            doc = measure_folder(args.folder, **{k: getattr(args, k) for k in protocol},
                                 cpus=args.cpus, pin_cpus=not args.no_pin, names=args.names,
                                 runtime=args.runtime)
        except Exception as e:  # one line for the runner; onnxruntime raises its own types
            first = (str(e).strip().splitlines() or [""])[0]
            print(f"protocol.py: {type(e).__name__}: {first}", file=sys.stderr)
            return 1
    json.dump(doc, sys.stdout)
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())

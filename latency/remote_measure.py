#!/usr/bin/env python3
"""Measure every ``.onnx`` model in a folder with onnxruntime; print one JSON document.

This program runs ON the measured device (a board reached over ssh): it needs
only Python 3, numpy and onnxruntime, never ``hwnas``. ``SshRunner`` copies it
next to the models, runs it and parses its standard output. The protocol is
the project's (see ``hwnas.latency.runner``): batch 1, fp32 inputs of the
shape the model declares (free dimensions as 1), ``--threads`` intra-op
threads, one inter-op thread, sequential execution, all graph optimisations,
the process pinned to as many cores as threads, ``--warmup`` discarded runs,
then ``--runs`` timed runs. Times are milliseconds::

    python3 remote_measure.py --threads 1 --warmup 10 --runs 50 models/
    {"format": 1, "device": {...}, "protocol": {...},
     "results": {"m0000": {"median": 0.41, "p10": 0.40, "p90": 0.45, "n": 50}}}

``--names m0000,m0001`` measures only those models; ``--info`` prints only
the device description; the program may also be read
from standard input (``python3 - --info < remote_measure.py``).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from collections.abc import Sequence
from pathlib import Path

FORMAT_VERSION = 1
INPUT_SEED = 0  # inputs are random normal draws; the seed only makes runs repeatable
_CPUFREQ = "/sys/devices/system/cpu/cpu{}/cpufreq/cpuinfo_max_freq"
# /proc/cpuinfo field naming the CPU: x86 ("model name"), Arm SoCs ("Hardware",
# "Model"), RISC-V ("uarch", "isa"); the first present wins.
_CPU_FIELDS = ("model name", "Hardware", "Model", "uarch", "cpu model", "isa")
_NUMPY_DTYPES = {
    "tensor(float)": "float32",
    "tensor(float16)": "float16",
    "tensor(double)": "float64",
    "tensor(int64)": "int64",
    "tensor(int32)": "int32",
    "tensor(int8)": "int8",
    "tensor(uint8)": "uint8",
    "tensor(bool)": "bool",
}


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


def _max_freq(cpu: int) -> int:
    try:
        return int(Path(_CPUFREQ.format(cpu)).read_text().strip())
    except (OSError, ValueError):
        return 0


def fastest_cpus(count: int) -> list[int]:
    """The ``count`` allowed cores with the highest maximum clock (big cores on big.LITTLE).

    Ties go to the higher core number (Android numbers big cores last).
    """
    allowed = sorted(os.sched_getaffinity(0))
    ranked = sorted(allowed, key=lambda c: (_max_freq(c), c), reverse=True)
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


def device_info() -> dict:
    """What the numbers were measured on: OS, CPU, Python, numpy and onnxruntime versions."""
    import numpy as np
    import onnxruntime as ort

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
        "runtime": "onnxruntime",
        "runtime_version": ort.__version__,
    }


def _session(path: Path, threads: int):
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    return ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])


def _feeds(sess, rng) -> dict:
    feeds = {}
    for inp in sess.get_inputs():
        shape = [d if isinstance(d, int) and d > 0 else 1 for d in inp.shape]  # batch 1
        dtype = _NUMPY_DTYPES.get(inp.type)
        if dtype is None:
            raise ValueError(f"input {inp.name!r} has unsupported type {inp.type}")
        feeds[inp.name] = rng.standard_normal(shape).astype(dtype)
    return feeds


def measure_one(path: Path, *, threads: int, warmup: int, runs: int) -> dict:
    """Statistics (ms) of ``runs`` timed runs of the model at ``path`` after ``warmup`` runs."""
    import numpy as np

    sess = _session(path, threads)
    feeds = _feeds(sess, np.random.default_rng(INPUT_SEED))
    for _ in range(warmup):
        sess.run(None, feeds)
    times = []
    for _ in range(runs):
        t0 = time.perf_counter_ns()
        sess.run(None, feeds)
        times.append((time.perf_counter_ns() - t0) / 1e6)
    return summarize(times)


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


CLOCKS = ("wall", "cpu")


def time_calls(
    call,
    *,
    warmup: int,
    runs: int,
    min_time_ms: float = 0.0,
    max_runs: int | None = None,
    clock: str = "wall",
    before=None,
) -> list[float]:
    """Times (ms) of timed ``call()``s after ``warmup`` discarded ones.

    At least ``runs`` timed calls, then more until they add up to
    ``min_time_ms`` (fast models get more samples for a stable median), never
    more than ``max_runs`` (default ``runs``: exactly ``runs`` calls).
    ``before()``, when given, runs untimed before every timed call (a cache flush).
    ``clock="cpu"`` times with this thread's CPU clock instead of the wall
    clock: time the thread spent preempted by other processes is not counted
    (with one intra-op thread onnxruntime computes on the calling thread).
    """
    if clock not in CLOCKS:
        raise ValueError(f"clock must be one of {', '.join(CLOCKS)}, got {clock!r}")
    cap = max(runs, max_runs if max_runs is not None else runs)
    for _ in range(warmup):
        call()
    times: list[float] = []
    total = 0.0
    clock_ns = time.perf_counter_ns if clock == "wall" else time.thread_time_ns
    while len(times) < runs or (total < min_time_ms and len(times) < cap):
        if before is not None:
            before()
        t0 = clock_ns()
        call()
        dt = (clock_ns() - t0) / 1e6
        times.append(dt)
        total += dt
    return times


def measure_model(
    model: str | bytes | Path,
    *,
    threads: int,
    warmup: int,
    runs: int,
    min_time_ms: float = 0.0,
    max_runs: int | None = None,
    clock: str = "wall",
    before=None,
) -> dict:
    """Statistics (ms) of a model (path or bytes) run through an IO binding; see :func:`time_calls`."""
    import numpy as np

    sess = make_session(model, threads)
    call = bound_call(sess, np.random.default_rng(INPUT_SEED))
    times = time_calls(
        call,
        warmup=warmup,
        runs=runs,
        min_time_ms=min_time_ms,
        max_runs=max_runs,
        clock=clock,
        before=before,
    )
    return summarize(times)


def serve(config: dict, inp, out) -> int:
    """Measure models sent on ``inp`` until it closes: a measuring worker of ``LocalRunner``.

    ``config`` holds ``threads``, ``warmup``, ``runs``, ``min_time_ms``,
    ``max_runs``, ``clock``, ``flush_mb`` and ``cpus`` (cores to pin to; empty:
    none). A request is a JSON line ``{"size": N, "runs": R}`` then N bytes of
    serialized ONNX; the answer a JSON line of statistics or ``{"error": ...}``.
    """
    if config.get("cpus"):
        pin(config["threads"], config["cpus"])
    before = cache_flusher(config.get("flush_mb", 0))
    while True:
        header = inp.readline()
        if not header:
            return 0
        request = json.loads(header)
        model = inp.read(request["size"])
        try:
            answer = measure_model(
                model,
                threads=config["threads"],
                warmup=config["warmup"],
                runs=request.get("runs", config["runs"]),
                min_time_ms=config.get("min_time_ms", 0.0),
                max_runs=config.get("max_runs"),
                clock=config.get("clock", "wall"),
                before=before,
            )
        except Exception as e:  # onnxruntime raises its own types
            first = (str(e).strip().splitlines() or [""])[0]
            answer = {"error": f"{type(e).__name__}: {first}"}
        out.write((json.dumps(answer) + "\n").encode())
        out.flush()


def measure_folder(
    folder: Path,
    *,
    threads: int,
    warmup: int,
    runs: int,
    cpus: Sequence[int] | None = None,
    pin_cpus: bool = True,
    names: Sequence[str] | None = None,
) -> dict:
    """The JSON document for every ``*.onnx`` in ``folder`` (name: file stem), or ``names``."""
    if not folder.is_dir():
        raise ValueError(f"{folder} is not a folder")
    if names:
        models = [folder / f"{n}.onnx" for n in names]
        missing = [p.name for p in models if not p.is_file()]
        if missing:
            raise ValueError(f"no {', '.join(missing)} in {folder}")
    else:
        models = sorted(folder.glob("*.onnx"))
    if not models:
        raise ValueError(f"no .onnx files in {folder}")
    pinned = pin(threads, cpus) if pin_cpus else []
    results = {p.stem: measure_one(p, threads=threads, warmup=warmup, runs=runs) for p in models}
    return {
        "format": FORMAT_VERSION,
        "device": device_info(),
        "protocol": {
            "threads": threads,
            "warmup": warmup,
            "runs": runs,
            "batch": 1,
            "pinned_cpus": pinned,
        },
        "results": results,
    }


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


def _non_negative(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {value}")
    return value


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folder", type=Path, nargs="?", help="folder of .onnx models")
    parser.add_argument("--threads", type=_positive, default=1)
    parser.add_argument("--warmup", type=_non_negative, default=10)
    parser.add_argument("--runs", type=_positive, default=50)
    parser.add_argument(
        "--cpus",
        type=lambda s: [int(c) for c in s.split(",")],
        default=None,
        help="comma-separated cores to pin to (default: the fastest ones)",
    )
    parser.add_argument("--no-pin", action="store_true", help="do not pin to cores")
    parser.add_argument(
        "--names",
        type=lambda s: s.split(","),
        default=None,
        help="comma-separated model stems to measure (default: every .onnx)",
    )
    parser.add_argument("--info", action="store_true", help="print the device description only")
    args = parser.parse_args(argv)
    if args.info:
        doc = {"format": FORMAT_VERSION, "device": device_info()}
    elif args.folder is None:
        parser.error("a folder of .onnx models is required (or --info)")
    else:
        try:
            doc = measure_folder(
                args.folder,
                threads=args.threads,
                warmup=args.warmup,
                runs=args.runs,
                cpus=args.cpus,
                pin_cpus=not args.no_pin,
                names=args.names,
            )
        except Exception as e:  # one line for the runner; onnxruntime raises its own types
            first = (str(e).strip().splitlines() or [""])[0]
            print(f"remote_measure: {type(e).__name__}: {first}", file=sys.stderr)
            return 1
    json.dump(doc, sys.stdout)
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""TFLite's ``benchmark_model`` as the fake phone runs it: real flags, real log, LiteRT behind.

Written against upstream's sources (facts checked there, not copied code):

- flags are ``--name=value`` only (``tflite/tools/command_line_flags.cc``,
  ``Flags::Parse``): a value that does not parse is ``ERROR: Failed to parse
  flag '<name>' against argv '<arg>'`` and the run fails; a flag no part of the
  tool knows is left over and logged as ``WARN: Unconsumed cmdline flags: ...``
  (``tflite/tools/benchmark/benchmark_model.cc``, ``ParseFlags``), the run goes on;
- ``INFO:``/``WARN:`` lines go to stdout, ``ERROR:`` lines to stderr
  (``tensorflow/lite/tools/logging.h``, ``LoggingWrapper``);
- the order of the log: ``STARTING!`` (``benchmark_main.cc``), ``Log parameter
  values verbosely: [0]`` and one ``<description>: [<value>]`` line per flag
  given (``BenchmarkModel::LogParams``, ``LOG_TOOL_PARAM`` in
  ``tflite/tools/tool_params.h``), ``Graph: [...]`` and ``Signature to run: []``
  always (``benchmark_tflite_model.cc``), ``Loaded model <path>``, ``The input
  model file size (MB): <size>``, ``Initialized session in <ms>ms.``, then per
  phase (warm-up, then timed) ``Running benchmark for at least N iterations and
  at least S seconds but terminate if exceeding M seconds.`` and the phase's
  statistics, and last ``Inference timings in us: Init: ..., First inference:
  ..., Warmup (avg): ..., Inference (avg): ...`` (``BenchmarkLoggingListener``);
- a phase runs while ``run < N or now < start + S``, and ``now <= start + M``
  (``BenchmarkModel::Run``); run times are whole microseconds (``NowMicros``);
- the statistics line is ``Stat::OutputToStream`` plus, in LiteRT's
  ``StatWithPercentiles``, `` p5=.. median=.. p95=..`` (``xla/tsl/util/
  stats_calculator.h``): ``count=N first=F curr=C min=m max=M avg=A std=S``
  where ``avg`` is a double printed with 6 significant digits, ``std`` the
  integer square root of the integer population variance; when every run took
  the same time ``count=N curr=C`` with ``(all same)`` appended if N > 1;
  percentile p is element ``N * p / 100`` of the sorted runs.

Not emitted: the memory-footprint lines (upstream prints them after the
timings where the OS reports memory use; nothing here reads them). Real flags
this fake does not implement are refused with a line saying so, never ignored.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from pathlib import Path

# flag -> (type, description in the parameter log); values as upstream's defaults
IMPLEMENTED = {
    "num_runs": (int, "Min num runs", 50),
    "min_secs": (float, "Min runs duration (seconds)", 1.0),
    "max_secs": (float, "Max runs duration (seconds)", 150.0),
    "num_threads": (int, "Num threads", -1),
    "warmup_runs": (int, "Min warmup runs", 1),
    "warmup_min_secs": (float, "Min warmup runs duration (seconds)", 0.5),
    "graph": (str, "Graph", ""),
}
LOG_ORDER = ("num_runs", "min_secs", "max_secs", "num_threads", "warmup_runs", "warmup_min_secs")
# real flags of the tool (benchmark_model.cc, benchmark_tflite_model.cc, delegate providers)
# that this fake does not implement: refused so that a runner cannot rely on them unseen
NOT_IMPLEMENTED = {
    "run_delay", "run_frequency", "use_caching", "benchmark_name", "output_prefix", "verbose",
    "dry_run", "report_peak_memory_footprint", "memory_footprint_check_interval_ms",
    "input_layer", "input_layer_shape", "input_layer_value_range", "input_layer_value_files",
    "allow_fp16", "require_full_delegation", "enable_op_profiling", "use_xnnpack", "use_gpu",
    "use_nnapi", "signature_to_run_for", "list_signatures", "result_file_path",
}


def _num(x: float) -> str:
    """A number as C++'s default ``ostream <<`` prints it (6 significant digits)."""
    return f"{x:g}"


def stat_line(values_us: Sequence[int], percentiles: bool = True) -> str:
    """One phase's statistics as ``StatWithPercentiles::OutputToStream`` writes them."""
    n = len(values_us)
    if n == 0:
        line = "count=0"
    elif min(values_us) == max(values_us):
        line = f"count={n} curr={values_us[-1]}" + ("(all same)" if n > 1 else "")
    else:
        avg = sum(values_us) / n
        variance = int(sum(v * v for v in values_us) / n - avg * avg)  # int64 ValueType
        line = (f"count={n} first={values_us[0]} curr={values_us[-1]} min={min(values_us)} "
                f"max={max(values_us)} avg={_num(avg)} std={int(math.sqrt(variance))}")
    if percentiles and n:
        ranked = sorted(values_us)
        p5, p50, p95 = (ranked[n * p // 100] for p in (5, 50, 95))
        line += f" p5={p5} median={p50} p95={p95}"
    return line


def run(argv: Sequence[str], resolve: Callable[[str], Path],
        fixed_us: Sequence[int] | None = None) -> tuple[int, list[str], list[str]]:
    """Run ``argv`` (``argv[0]`` the tool) -> (exit status, stdout lines, stderr lines).

    ``resolve`` maps the ``--graph`` path to this machine's file. The model runs
    with the LiteRT interpreter for every reported run; ``fixed_us`` (cycled)
    replaces the measured microseconds in what is reported, for exact tests.
    """
    out, err = ["INFO: STARTING!"], []

    def fail(*lines: str) -> tuple[int, list[str], list[str]]:
        err.extend(f"ERROR: {ln}" for ln in (*lines, "Benchmarking failed."))
        return 1, out, err

    values: dict[str, object] = {}
    leftover: list[str] = []
    for arg in argv[1:]:
        name, eq, text = arg[2:].partition("=") if arg.startswith("--") else ("", "", "")
        if name in NOT_IMPLEMENTED:
            return fail(f"fake benchmark_model: --{name} is real but not implemented here")
        if name not in IMPLEMENTED or not eq:
            leftover.append(arg)
            continue
        kind = IMPLEMENTED[name][0]
        try:
            values[name] = kind(text)
        except ValueError:
            return fail(f"Failed to parse flag '{name}' against argv '{arg}'")
    if leftover:
        out.append(f"WARN: Unconsumed cmdline flags: {' '.join(leftover)}")
    get = {k: values.get(k, d) for k, (_, _, d) in IMPLEMENTED.items()}
    out.append("INFO: Log parameter values verbosely: [0]")
    for k in LOG_ORDER:
        if k in values:
            v = values[k]
            out.append(f"INFO: {IMPLEMENTED[k][1]}: [{_num(v) if isinstance(v, float) else v}]")
    out += [f"INFO: Graph: [{get['graph']}]", "INFO: Signature to run: []"]
    if not get["graph"]:
        return fail("Please specify the name of your TF Lite input file with --graph")
    path = resolve(str(get["graph"]))
    if not path.is_file():
        return fail(f"Failed to load model {get['graph']}")
    from ai_edge_litert.interpreter import Interpreter

    t0 = time.perf_counter_ns() // 1000
    threads = int(get["num_threads"])  # type: ignore[call-overload]
    try:
        interp = Interpreter(model_path=str(path), num_threads=threads if threads > 0 else None)
        out.append(f"INFO: Loaded model {get['graph']}")
        interp.allocate_tensors()
    except Exception as e:  # what the runtime says about a bad model
        return fail(f"Failed to load model {get['graph']}: {str(e).splitlines()[0]}")
    init_us = time.perf_counter_ns() // 1000 - t0
    out.append(f"INFO: The input model file size (MB): {_num(path.stat().st_size / 1e6)}")
    out.append(f"INFO: Initialized session in {_num(init_us / 1e3)}ms.")
    phases: list[list[int]] = []
    done = 0  # runs so far, both phases: fixed_us continues across them
    for runs, secs in (("warmup_runs", "warmup_min_secs"), ("num_runs", "min_secs")):
        n, lo, hi = int(get[runs]), float(get[secs]), float(get["max_secs"])  # type: ignore[arg-type]
        out.append(f"INFO: Running benchmark for at least {n} iterations and at least "
                   f"{_num(lo)} seconds but terminate if exceeding {_num(hi)} seconds.")
        start = now = time.perf_counter_ns() // 1000
        times: list[int] = []
        while (len(times) < n or now < start + int(lo * 1e6)) and now <= start + int(hi * 1e6):
            a = time.perf_counter_ns() // 1000
            interp.invoke()
            b = time.perf_counter_ns() // 1000
            times.append(b - a)
            now = b
        if fixed_us:
            times = [fixed_us[(done + i) % len(fixed_us)] for i in range(len(times))]
        done += len(times)
        phases.append(times)
        out += [f"INFO: {stat_line(times)}", ""]
    warm, timed = phases
    avg = [sum(p) / len(p) if p else math.nan for p in phases]
    out.append(f"INFO: Inference timings in us: Init: {init_us}, First inference: "
               f"{warm[0] if warm else 0}, Warmup (avg): {_num(avg[0])}, "
               f"Inference (avg): {_num(avg[1])}")
    return 0, out, err

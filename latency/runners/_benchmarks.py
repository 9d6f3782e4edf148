"""The phone's benchmark programs: their command lines and what they print, per runtime.

``onnxruntime_perf_test`` (onnxruntime, built from source with the NDK) and
``benchmark_model`` (TensorFlow Lite / LiteRT; Google publishes prebuilt
Android binaries). Each entry gives the argument list of one measurement
and parses its output into per-run times or summary statistics.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from . import protocol
from ._remote import one_line
from .base import RunnerError, Stats

PERF_TEST = "onnxruntime_perf_test"
BENCHMARK_MODEL = "benchmark_model"
Z_P10 = 1.2816  # normal quantile of 0.9: p10/p90 from benchmark_model's mean and std
MAX_SECS = 150  # benchmark_model's own default cap on one benchmark, seconds


def parse_perf_test_results(text: str, warmup: int) -> list[float]:
    """Per-run times (ms) from ``onnxruntime_perf_test``'s result file, warm-up runs dropped.

    With a ``result_file`` argument the tool appends one line per timed run,
    ``model_name,seconds,peak_working_set_bytes,avg_cpu_percent,run_index``
    (``PerformanceResult::DumpToFile`` in onnxruntime's
    ``onnxruntime/test/perftest/performance_runner.cc``), then with ``-s`` a
    blank line and ``Min Latency: 0.0005 s`` ... ``P999 Latency`` lines,
    which are skipped here. The tool's own single warm-up run is never
    written; the first ``warmup`` written runs are dropped as well.

    >>> parse_perf_test_results("m,0.002,1,5,0\\nm,0.001,1,5,1\\n", warmup=1)
    [1.0]
    """
    runs: list[tuple[int, float]] = []
    for line in text.splitlines():
        fields = line.strip().rsplit(",", 4)
        if len(fields) != 5:
            continue
        try:
            runs.append((int(fields[4]), float(fields[1]) * 1000.0))
        except ValueError:
            continue
    return [ms for _, ms in sorted(runs)[warmup:]]


# benchmark_model logs each phase (warm-up, then the timed runs) as a line starting
# "Running benchmark for at least N iterations" and then the phase's statistics, whole
# microseconds (tflite/tools/benchmark/benchmark_model.cc, BenchmarkModel::Run), as
# Stat::OutputToStream writes them (xla/tsl/util/stats_calculator.h; before that
# tensorflow/core/util/stats_calculator.h): "count=N first=F curr=C min=m max=M avg=A std=S",
# avg a double printed with 6 significant digits (so possibly "1.23457e+06"), std an integer;
# LiteRT's StatWithPercentiles appends " p5=P median=Q p95=R"; when every run took the same
# time the line is "count=N curr=C", with "(all same)" appended when N > 1; "count=0" if none.
_PHASE = "Running benchmark for at least "
_STAT = re.compile(
    r"count=(?P<count>\d+)(?: first=\d+ curr=\d+ min=(?P<min>\d+) max=(?P<max>\d+)"
    r" avg=(?P<avg>[\d.e+-]+) std=(?P<std>\d+)| curr=(?P<same>\d+)(?:\(all same\))?)?"
    r"(?: p5=\d+ median=(?P<median>\d+) p95=\d+)?"
)


def parse_benchmark_model(text: str, runs: int) -> Stats:
    """Statistics (ms) of the timed runs from ``benchmark_model``'s log.

    The statistics line after the last ``Running benchmark for at least``
    line is the timed phase's. The tool prints no per-run times: the median
    is the tool's own where it prints one (LiteRT), else the mean; p10/p90
    are mean -/+ 1.28 std, clamped to min/max and to the median. ``runs`` is
    the count asked (the caller checks the count it gets).

    >>> parse_benchmark_model("INFO: Running benchmark for at least 4 iterations ...\\n"
    ...     "INFO: count=4 first=2100 curr=2000 min=1900 max=2100 avg=2000 std=100", 4)
    Stats(median=2.0, p10=1.9, p90=2.1, n=4)
    """
    lines = text.splitlines()
    starts = [i for i, ln in enumerate(lines) if _PHASE in ln]
    if not starts:
        raise ValueError(f"no '{_PHASE}...' line in its output")
    for ln in lines[starts[-1] + 1 :]:
        m = _STAT.search(ln)
        if m:
            break
    else:
        raise ValueError("no 'count=...' statistics after its timed phase")
    count = int(m["count"])
    if count == 0:
        return Stats(0.0, 0.0, 0.0, 0)
    if m["same"] is not None:
        same = int(m["same"]) / 1000
        return Stats(same, same, same, count)
    if m["avg"] is None:
        raise ValueError(f"statistics line not understood: {ln.strip()!r}")
    mean, sd = float(m["avg"]) / 1000, float(m["std"]) / 1000
    low, high = float(m["min"]) / 1000, float(m["max"]) / 1000
    median = float(m["median"]) / 1000 if m["median"] is not None else mean
    p10 = min(max(mean - Z_P10 * sd, low), median)
    p90 = max(min(mean + Z_P10 * sd, high), median)
    return Stats(round(median, 6), round(p10, 6), round(p90, 6), count)


@dataclass(frozen=True)
class Benchmark:
    """One runtime's benchmark program on the phone."""

    runtime: str
    tool: str
    suffix: str

    def argv(self, tool_path: str, model: str, result: str, runs: int, warmup: int,
             threads: int) -> list[str]:
        if self.runtime == "tflite":
            return [
                tool_path,
                f"--graph={model}",
                f"--num_threads={threads}",
                f"--warmup_runs={max(warmup, 1)}",
                "--warmup_min_secs=0",
                f"--num_runs={runs}",
                "--min_secs=0",
                f"--max_secs={MAX_SECS}",
            ]
        # onnxruntime_perf_test (flags from its command_args_parser.cc): CPU provider, fixed
        # run count, generated inputs (-I), all graph optimisations (-o 99), result file.
        return [
            tool_path, "-e", "cpu", "-m", "times", "-r", str(warmup + runs), "-x", str(threads),
            "-y", "1", "-o", "99", "-I", "-s", model, result,
        ]

    def stats(self, out: str, result_file: str, runs: int, warmup: int, fail: str) -> Stats:
        if self.runtime == "tflite":
            try:
                s = parse_benchmark_model(out, runs)
            except ValueError as e:
                raise RunnerError(f"{fail}: {self.tool}: {e}") from None
            if s.n < runs:
                raise RunnerError(f"{fail}: {self.tool} ran {s.n} timed runs, {runs} expected")
            return s
        times = parse_perf_test_results(result_file, warmup)
        if len(times) != runs:
            raise RunnerError(
                f"{fail}: {self.tool} wrote {len(times)} timed runs, {runs} expected"
            )
        raw = protocol.summarize(times)
        return Stats(raw["median"], raw["p10"], raw["p90"], raw["n"])

    def cause(self, stdout: str, stderr: str) -> str:
        """The line of a failed run that says why: benchmark_model's first ``ERROR:`` line
        (its last is always ``Benchmarking failed.``), else the last line of stderr/stdout."""
        if self.runtime == "tflite":
            errors = [ln.strip() for ln in stderr.splitlines() if ln.startswith("ERROR: ")]
            if errors:
                return errors[0]
        return one_line(stderr if stderr.strip() else stdout)

    def protocol(self) -> dict:
        if self.runtime == "tflite":
            return {"tool": self.tool, "clock": "wall (whole microseconds)", "statistic":
                    "the tool's median (LiteRT builds; older ones print no median: mean); "
                    "p10/p90 = mean -/+ 1.28 std", "flush_mb": 0.0,
                    "io_binding": False, "delegate": "the tool's default (XNNPACK)"}
        return {"tool": self.tool, "clock": "wall", "statistic": "median", "flush_mb": 0.0,
                "io_binding": False}


BENCHMARKS = {
    "onnxruntime": Benchmark("onnxruntime", PERF_TEST, ".onnx"),
    "tflite": Benchmark("tflite", BENCHMARK_MODEL, ".tflite"),
}

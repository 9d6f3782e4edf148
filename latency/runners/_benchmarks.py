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


# benchmark_model logs one line per phase (warm-up, then the timed runs), in microseconds:
# "count=50 first=2837 curr=2251 min=2230 max=2402 avg=2263.2 std=31"
_STAT = re.compile(
    r"count=(\d+) first=(\d+) curr=(\d+) min=(\d+) max=(\d+) avg=([\d.e+-]+) std=(\d+)"
)


def parse_benchmark_model(text: str, runs: int) -> Stats:
    """Statistics (ms) of the timed runs from ``benchmark_model``'s log.

    The tool prints no per-run times: its last ``count=... avg=... std=...``
    line (the timed phase; the first is the warm-up) gives the mean as the
    median and mean -/+ 1.28 std (clamped to min/max) as p10/p90.

    >>> parse_benchmark_model("count=3 first=9 curr=9 min=9 max=9 avg=9 std=0\\n"
    ...     "count=4 first=2100 curr=2000 min=1900 max=2100 avg=2000 std=100", 4)
    Stats(median=2.0, p10=1.9, p90=2.1, n=4)
    """
    hits = _STAT.findall(text)
    if not hits:
        raise ValueError("no 'count=... avg=... std=...' line in its output")
    count, _, _, lo, hi, avg, std = hits[-1]
    mean, sd = float(avg) / 1000, float(std) / 1000
    low, high = float(lo) / 1000, float(hi) / 1000
    p10 = min(max(mean - Z_P10 * sd, low), mean)
    p90 = max(min(mean + Z_P10 * sd, high), mean)
    return Stats(round(mean, 6), round(p10, 6), round(p90, 6), int(count))


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

    def protocol(self) -> dict:
        if self.runtime == "tflite":
            return {"tool": self.tool, "clock": "wall", "statistic": "mean (the tool prints "
                    "count/min/max/avg/std only; p10/p90 = mean -/+ 1.28 std)", "flush_mb": 0.0,
                    "io_binding": False, "delegate": "the tool's default (XNNPACK)"}
        return {"tool": self.tool, "clock": "wall", "statistic": "median", "flush_mb": 0.0,
                "io_binding": False}


BENCHMARKS = {
    "onnxruntime": Benchmark("onnxruntime", PERF_TEST, ".onnx"),
    "tflite": Benchmark("tflite", BENCHMARK_MODEL, ".tflite"),
}

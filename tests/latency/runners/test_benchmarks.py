"""The phone tools' output (``_benchmarks.py``) in the formats upstream writes.

The lines below are typed from the format as upstream's sources write it
(``tflite/tools/benchmark/benchmark_model.cc``, ``xla/tsl/util/stats_calculator.h``,
``tensorflow/lite/tools/logging.h``); ``fake_benchmark_model.py`` writes them
the same way, which the round trip at the end checks.
"""

from __future__ import annotations

import pytest

from hwnas.latency.runners import Stats
from hwnas.latency.runners._benchmarks import BENCHMARKS, parse_benchmark_model
from tests.latency.runners.fake_benchmark_model import run, stat_line

WARM = "INFO: Running benchmark for at least 1 iterations and at least 0 seconds but terminate if exceeding 150 seconds.\nINFO: count=1 curr=3100\n\n"  # noqa: E501
TIMED = "INFO: Running benchmark for at least 5 iterations and at least 0 seconds but terminate if exceeding 150 seconds.\n"  # noqa: E501


@pytest.mark.parametrize(
    "stat, expected",
    [  # LiteRT (StatWithPercentiles): the tool's median
        ("count=5 first=2000 curr=2100 min=1900 max=2300 avg=2100 std=141 p5=1900 median=2100 "
         "p95=2300", Stats(2.1, 1.919294, 2.280706, 5)),
        # TensorFlow 2.x (Stat): no median printed, the mean stands in
        ("count=5 first=2000 curr=2100 min=1900 max=2300 avg=2120.4 std=141",
         Stats(2.1204, 1.939694, 2.3, 5)),  # p90 clamped to max
        # every run the same microsecond count
        ("count=5 curr=12(all same) p5=12 median=12 p95=12", Stats(0.012, 0.012, 0.012, 5)),
        # slow runs: avg in C++'s 6-significant-digit notation
        ("count=5 first=1234567 curr=1234567 min=1200000 max=1300000 avg=1.23457e+06 std=0",
         Stats(1234.57, 1234.57, 1234.57, 5)),
    ],
)
def test_parse_benchmark_model_reads_the_timed_phase(stat: str, expected: Stats) -> None:
    text = f"INFO: STARTING!\n{WARM}{TIMED}INFO: {stat}\n\nINFO: Inference timings in us: ..."
    assert parse_benchmark_model(text, 5) == expected


def test_parse_benchmark_model_refuses_output_without_a_timed_phase() -> None:
    with pytest.raises(ValueError, match="no 'Running benchmark for at least"):
        parse_benchmark_model("INFO: count=5 curr=12(all same)", 5)
    with pytest.raises(ValueError, match="no 'count=...' statistics after its timed phase"):
        parse_benchmark_model(WARM + TIMED + "ERROR: Benchmarking failed.", 5)


def test_the_fake_writes_what_the_parser_reads(tmp_path) -> None:
    """Round trip through the fake's statistics line, and its flags as upstream parses them."""
    assert stat_line([1900, 2000, 2100, 2200, 2300]) == (
        "count=5 first=1900 curr=2300 min=1900 max=2300 avg=2100 std=141 p5=1900 median=2100 "
        "p95=2300"
    )
    assert stat_line([7, 7]) == "count=2 curr=7(all same) p5=7 median=7 p95=7"
    resolve = tmp_path.joinpath
    rc, out, err = run(["benchmark_model", "--graph=m.tflite", "--num_runs=x"], resolve)
    assert rc == 1 and err == [
        "ERROR: Failed to parse flag 'num_runs' against argv '--num_runs=x'",
        "ERROR: Benchmarking failed.",
    ]
    assert BENCHMARKS["tflite"].cause("\n".join(out), "\n".join(err)) == err[0]
    rc, out, err = run(["benchmark_model", "--graph=m.tflite", "--colour=red"], resolve)
    assert rc == 1 and "WARN: Unconsumed cmdline flags: --colour=red" in out  # warned, went on
    assert err == ["ERROR: Failed to load model m.tflite", "ERROR: Benchmarking failed."]

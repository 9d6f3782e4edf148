"""``nas-latency``: latency targets, tables, validation and prediction.

Subcommands:

- ``targets``: every target with its provenance and measured error.
- ``build --target NAME``: measure every layer of a search space into the
  target's table (resumable: keys already there are skipped). A new user
  target needs ``--runner adb --device SERIAL`` or ``--runner ssh --host HOST``.
- ``validate --target NAME``: N random networks measured end to end vs predicted.
- ``predict --target NAME --arch NAME_OR_STRING``: predicted latency.
- ``measure --arch NAME_OR_STRING``: end-to-end latency on this machine.

The subcommands themselves are in :mod:`hwnas.latency.commands`. Bad input, a corrupt table or an unreachable device end with one line on
stderr and exit 2. Example::

    $ nas-latency build --target host --workers 2
    $ nas-latency predict --target pixel --arch mobilenetv3_large --budget 60ms
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from rich.console import Console

from hwnas.common.cli import Parser, positive_int, run_cli, seed
from hwnas.space.cli import DEFAULT_RESOLUTION, width_multiplier

from .commands import COMMANDS
from .registry import HOST
from .runners import RUNNER_KINDS, RUNTIMES

DEFAULT_SPACE = "mobilenetv3"
DEFAULT_VALIDATE_N = 20
FLUSHED_HELP = (
    "also time the network under the cache-flushed layer protocol "
    "(networks are timed as users do: warm, repeated session.run)"
)


# ------------------------------------------------------------------ parser ---
def _runner_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("runner (new user targets only; host is measured locally)")
    g.add_argument("--runner", choices=RUNNER_KINDS, default=None)
    g.add_argument("--device", metavar="SERIAL", help="adb serial (adb devices)")
    g.add_argument("--host", metavar="HOST", help="ssh host name or address")
    g.add_argument("--user", metavar="U", help="ssh login name")
    g.add_argument("--port", type=positive_int("port"), default=None, metavar="P", help="ssh port")
    g.add_argument("--identity", type=Path, default=None, metavar="F", help="ssh private key file")
    g.add_argument(
        "--timeout",
        type=float,
        default=None,
        metavar="S",
        help="seconds each step with the device may take (adb, ssh; default 600)",
    )
    g.add_argument(
        "--runtime",
        choices=RUNTIMES,
        default=None,
        help="onnxruntime (default) or tflite (LiteRT: the interpreter here or over ssh, "
             "benchmark_model on a phone)",
    )
    g.add_argument(
        "--perf-test",
        type=Path,
        default=None,
        metavar="PATH",
        help="host path of the phone's benchmark program (onnxruntime_perf_test or "
        "benchmark_model); pushed once, kept on the phone; not saved (config.yaml can set it)",
    )


def make_parser() -> argparse.ArgumentParser:
    """The ``nas-latency`` argument parser (exposed for docs and tests)."""
    p = Parser(
        prog="nas-latency", description="Latency targets, tables, validation and prediction."
    )
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND", parser_class=Parser)
    res = {
        "type": positive_int("resolution"),
        "default": DEFAULT_RESOLUTION,
        "metavar": "R",
        "help": f"square input size in pixels (default {DEFAULT_RESOLUTION})",
    }

    t = sub.add_parser("targets", help="list targets with provenance and measured error")
    t.add_argument("--json", action="store_true")

    b = sub.add_parser(
        "build",
        help="measure every layer of a search space into a target's table",
        description="Measure every layer key of a search space (skipping keys the "
        "table has) into the target's table.",
    )
    b.add_argument("--target", required=True, metavar="NAME", help="host or a user target name")
    b.add_argument(
        "--space", default=DEFAULT_SPACE, metavar="NAME", help=f"default {DEFAULT_SPACE}"
    )
    b.add_argument("--resolution", **res)
    b.add_argument(
        "--workers",
        type=positive_int("worker count"),
        default=1,
        metavar="N",
        help="parallel measuring processes, one core each (local runner only)",
    )
    b.add_argument(
        "--calibrate",
        type=positive_int("calibration network count"),
        default=None,
        metavar="N",
        help="then measure N random networks of the space whole (warm session.run) and learn "
        "the correction of the layer sum from them (docs/latency.md)",
    )
    _runner_args(b)

    d = sub.add_parser(
        "doctor",
        help="check what a device build needs, one line each",
        description="Check everything `build --runner adb` needs (adb, the device, its folder, "
        "taskset, free space, the benchmark program) and print what to fix.",
    )
    d.add_argument("--target", default=None, metavar="NAME", help="use this target's settings")
    _runner_args(d)

    v = sub.add_parser("validate", help="measure random networks end to end vs predictions")
    v.add_argument(
        "--target", default=HOST, metavar="NAME", help="a measured target (default host)"
    )
    v.add_argument(
        "--n", type=positive_int("network count"), default=DEFAULT_VALIDATE_N, metavar="N"
    )
    v.add_argument("--seed", type=seed, default=0, metavar="S")
    v.add_argument("--space", default=DEFAULT_SPACE, metavar="NAME")
    v.add_argument("--resolution", **res)
    v.add_argument(
        "--out",
        type=Path,
        default=None,
        metavar="DIR",
        help="where validation.csv/.png go (default: the target's folder)",
    )
    v.add_argument("--flushed", action="store_true", help=FLUSHED_HELP)
    v.add_argument("--json", action="store_true")

    for name, helptext in (
        ("predict", "predicted latency of a network on a target"),
        ("measure", "measure a network end to end (default: on this machine)"),
    ):
        c = sub.add_parser(name, help=helptext)
        c.add_argument(
            "--target",
            default=None if name == "predict" else HOST,
            required=name == "predict",
            metavar="NAME",
        )
        c.add_argument(
            "--arch",
            required=True,
            metavar="NAME_OR_STRING",
            help="reference name or architecture string (as nas-space show)",
        )
        c.add_argument("--width", type=width_multiplier, default=1.0, metavar="W")
        c.add_argument("--resolution", **res)
        c.add_argument("--json", action="store_true")
        if name == "predict":
            c.add_argument(
                "--budget",
                default=None,
                metavar="LATENCY",
                help="say whether the network fits, e.g. 50ms",
            )
            c.add_argument("--breakdown", action="store_true", help="per-layer table")
        else:
            c.add_argument("--flushed", action="store_true", help=FLUSHED_HELP)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``nas-latency``; returns the exit code (0; 2 for bad input or an unreachable device)."""
    return run_cli(
        "nas-latency",
        make_parser(),
        lambda a: COMMANDS[a.command](a, Console()),
        argv,
        on_interrupt=lambda a: (
            "interrupted (measured tables keep what was stored; run again to resume)"
        ),
    )


if __name__ == "__main__":
    sys.exit(main())

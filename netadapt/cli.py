"""``netadapt``: shrink a trained network to a latency goal on a target (NetAdapt).

    netadapt refine examples/netadapt_mobilenetv3.yaml
    netadapt refine run.yaml --out results/na-2 --quiet

Thin: read and validate run.yaml, call :func:`hwnas.netadapt.run.run_refine`,
draw progress, print the summary. Bad input: one line on stderr, exit 2.
"""

from __future__ import annotations

import argparse
import sys

from hwnas.common.cli import Parser, run_cli

from .config import load_config
from .refine import Progress


class RichProgress(Progress):
    """A bar over the latency still to remove, and one over each iteration's proposals."""

    def __init__(self) -> None:
        from rich.console import Console
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeElapsedColumn,
        )

        self.console = Console(stderr=True)
        self.bars = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                             TimeElapsedColumn(), console=self.console, transient=False)
        self.total = None
        self.inner = None
        self.start_ms = 0.0

    def message(self, text: str) -> None:
        self.console.print(text)

    def start(self, latency_ms: float, goal_ms: float, iteration: int) -> None:
        self.bars.start()
        self.start_ms = latency_ms
        self.goal_ms = goal_ms
        self.total = self.bars.add_task(self._desc(iteration, latency_ms), total=None)

    def _desc(self, iteration: int, latency_ms: float) -> str:
        return f"iteration {iteration}: {latency_ms:.2f} ms -> goal {self.goal_ms:.2f} ms"

    def iteration_start(self, iteration: int, proposals: int, constraint_ms: float) -> None:
        if self.inner is not None:
            self.bars.remove_task(self.inner)
        self.inner = self.bars.add_task(f"  proposals (<= {constraint_ms:.2f} ms)", total=proposals)

    def proposal_done(self, unit: str, latency_ms: float, accuracy: float) -> None:
        self.bars.advance(self.inner)

    def iteration_done(self, iteration: int, unit: str, latency_ms: float, accuracy: float) -> None:
        self.bars.update(self.total, completed=iteration,
                         description=self._desc(iteration, latency_ms))
        self.console.print(f"iteration {iteration}: pruned {unit} -> {latency_ms:.3f} ms, "
                           f"accuracy {100 * accuracy:.2f}%")

    def stop(self) -> None:
        self.bars.stop()


def build_parser() -> argparse.ArgumentParser:
    p = Parser(
        prog="netadapt",
        description="NetAdapt: shrink a trained network, one prunable unit per iteration, until "
                    "its predicted latency on a target meets a goal (docs/netadapt.md).")
    sub = p.add_subparsers(dest="command", required=True, parser_class=Parser)
    r = sub.add_parser("refine", help="refine the network a run.yaml names",
                       description="Run (or resume) the refine described by RUN_YAML.")
    r.add_argument("run_yaml", metavar="RUN_YAML", help="the refine's settings (docs/netadapt.md)")
    r.add_argument("--out", default=None, help="output folder (overrides out in RUN_YAML)")
    r.add_argument("--quiet", action="store_true", help="no progress bars")
    return p


def _print_summary(s: dict) -> None:
    i, f = s["initial"], s["final"]
    print(f"input  {i['latency_ms']:.3f} ms predicted, accuracy {100 * i['accuracy']:.2f}%"
          + (f", measured {i['measured_ms']:.3f} ms" if "measured_ms" in i else ""))
    print(f"final  {f['latency_ms']:.3f} ms predicted, accuracy {100 * f['accuracy']:.2f}%"
          + (f", measured {f['measured_ms']:.3f} ms" if "measured_ms" in f else "")
          + f" after {s['iterations']} iteration(s)")
    print(f"goal   {s['goal_ms']:.3f} ms: {'met' if s['goal_met'] else 'NOT met'}")
    print(f"arch   {f['arch']}")


def main(argv: list[str] | None = None) -> int:
    """Run ``netadapt``; returns the exit code (0; 2 for bad input; 130 when interrupted)."""
    where = {"out": "OUT"}

    def refine(args: argparse.Namespace) -> None:
        from .run import prepare, run_refine

        cfg = load_config(args.run_yaml)
        if args.out is not None:
            cfg = cfg.model_copy(update={"out": args.out})
        where["out"] = cfg.out
        prepared = prepare(cfg)
        progress = Progress() if args.quiet else RichProgress()
        try:
            summary = run_refine(cfg, progress, prepared)
        finally:
            if isinstance(progress, RichProgress):
                progress.stop()
        _print_summary(summary)
        print(f"wrote {cfg.out}/ (history.parquet, arch.txt, final.pt, final.onnx, final.tflite, trajectory.png)")

    return run_cli("netadapt", build_parser(), refine, argv, on_interrupt=lambda _a: (
        f"interrupted; run again with resume: true to continue from {where['out']}/state.json"))


if __name__ == "__main__":
    sys.exit(main())

"""``nas-latency``: latency targets, tables, validation and prediction.

Subcommands:

- ``targets``: every target with its provenance and measured error.
- ``build --target NAME``: measure every layer of a search space into the
  target's table (resumable: keys already there are skipped). A new user
  target needs ``--runner adb --device SERIAL`` or ``--runner ssh --host HOST``.
- ``validate --target NAME``: N random networks measured end to end vs predicted.
- ``predict --target NAME --arch NAME_OR_STRING``: predicted latency.
- ``measure --arch NAME_OR_STRING``: end-to-end latency on this machine.

Bad input, a corrupt table or an unreachable device end with one line on
stderr and exit 2. Example::

    $ nas-latency build --target host --workers 2
    $ nas-latency predict --target pixel --arch mobilenetv3_large --budget 60ms
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table

from hwnas.common.cli import Parser, positive_int, run_cli, seed, widen
from hwnas.common.errors import UsageError
from hwnas.common.units import parse_latency
from hwnas.space.cli import DEFAULT_RESOLUTION, resolve_arch, width_multiplier

from .keys import layer_keys
from .measured import MeasuredTarget, record_validation, validate, write_validation
from .registry import HOST, MEASURED_ONLY, load_target, runner_settings, target_for_build
from .target import Target

DEFAULT_SPACE = "mobilenetv3"
DEFAULT_VALIDATE_N = 20


# ------------------------------------------------------------------ parser ---
def _runner_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("runner (new user targets only; host is measured locally)")
    g.add_argument("--runner", choices=("local", "adb", "ssh"), default=None)
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
    _runner_args(b)

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
    return p


# ----------------------------------------------------------------- helpers ---
def _progress(console: Console) -> Progress:
    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
        console=console,
    )


def _measured(name: str) -> MeasuredTarget:
    t = load_target(name)
    if not isinstance(t, MeasuredTarget):
        raise UsageError(f"target {name!r} is a fitted model, not measured here: {MEASURED_ONLY}")
    return t


def _space(name: str) -> Any:
    from hwnas.space.searchspace import get_space

    return get_space(name)


def _build_target(args: argparse.Namespace) -> MeasuredTarget:
    settings = runner_settings(
        args.runner,
        device=args.device,
        host=args.host,
        user=args.user,
        port=args.port,
        identity=args.identity,
        timeout=args.timeout,
    )
    return target_for_build(args.target, settings)


def _fmt_err(val: dict | None) -> str:
    if not val:
        return "not validated"
    rho = f", rho {val['spearman']:.3f}" if val.get("spearman") is not None else ""
    what = val.get("what") or " ".join(
        str(x) for x in (val.get("space"), val.get("date", "")[:10]) if x
    )
    return f"MAPE {val['mape']:.1%}, max {val['max_error']:.1%}{rho} (n={val.get('n')}, {what})"


# ---------------------------------------------------------------- commands ---
def _cmd_targets(args: argparse.Namespace, console: Console) -> None:
    from .registry import describe_targets

    rows = describe_targets()
    if args.json:
        sys.stdout.write(json.dumps(rows, default=str) + "\n")
        return
    table = Table(title="nas-latency targets", title_justify="left")
    for col in ("name", "kind", "device", "runtime", "entries", "overhead", "measured error"):
        table.add_column(col)
    for r in rows:
        if "error" in r:
            table.add_row(r["name"], "?", f"[red]{r['error']}[/red]", "", "", "", "")
            continue
        over = r.get("overhead_ms")
        table.add_row(
            r["name"],
            r["kind"],
            r.get("device", ""),
            r.get("runtime", ""),
            str(r.get("entries", "")),
            "" if over is None else f"{over:.3f} ms",
            _fmt_err(r.get("validation")),
        )
    widen(console, table)  # never fold: widen an 80-column pipe instead
    console.print(table)


def _cmd_build(args: argparse.Namespace, console: Console) -> None:
    from .fast import space_keys

    space = _space(args.space)
    keys = space_keys(space, args.resolution)
    target = _build_target(args)
    missing = target.table.missing(keys)
    err = Console(stderr=True)
    err.print(
        f"{target.name}: {len(keys)} layer keys in {space.name} at {args.resolution}px, "
        f"{len(keys) - len(missing)} in {target.table.path}; measuring {len(missing)} "
        f"with {args.workers} worker(s)",
        highlight=False,
    )
    start = time.perf_counter()
    with _progress(err) as bar:
        task = bar.add_task("measuring", total=len(missing))
        target.fill(missing, workers=args.workers, progress=lambda k: bar.advance(task, k))
    secs = time.perf_counter() - start
    console.print(
        f"{target.name}: {len(target.table)} entries, {len(missing)} measured in "
        f"{secs:.0f} s; overhead {target.overhead_ms:.3f} ms",
        highlight=False,
    )


def _cmd_validate(args: argparse.Namespace, console: Console) -> None:
    target = _measured(args.target)
    space = _space(args.space)
    err = Console(stderr=True)
    with _progress(err) as bar:
        task = bar.add_task("measuring networks", total=args.n)
        result = validate(
            target,
            space,
            args.n,
            args.seed,
            args.resolution,
            progress=lambda k: bar.advance(task, k),
        )
    out = args.out or target.table.path / "validation"
    csv, png = write_validation(result, out, f"{target.name}: {space.name} @ {args.resolution}px")
    record_validation(
        target,
        result,
        space=space.name,
        seed=args.seed,
        resolution=args.resolution,
        csv=str(csv.resolve()),
        png=str(png.resolve()),
    )
    summary = {**result.summary(), "target": target.name, "csv": str(csv), "png": str(png)}
    if args.json:
        sys.stdout.write(json.dumps(summary) + "\n")
        return
    console.print(
        f"{target.name}: {args.n} random {space.name} networks @ {args.resolution}px: "
        f"MAPE {result.mape:.2%}, max error {result.max_error:.2%}, Spearman "
        f"{result.spearman:.3f}\n  {csv}\n  {png}",
        highlight=False,
    )


def _fill_for(target: Target, keys: list) -> None:
    if isinstance(target, MeasuredTarget):
        missing = target.table.missing(keys)
        if missing:
            err = Console(stderr=True)
            with _progress(err) as bar:
                task = bar.add_task(f"measuring {len(missing)} new layers", total=len(missing))
                target.fill(missing, progress=lambda k: bar.advance(task, k))


def _cmd_predict(args: argparse.Namespace, console: Console) -> None:
    budget = None
    if args.budget is not None:
        budget = parse_latency(args.budget)
    arch = resolve_arch(args.arch, args.width)
    target = load_target(args.target)
    _fill_for(target, layer_keys(arch, args.resolution))
    ms = target.predict(arch, args.resolution)
    frame = target.breakdown(arch, args.resolution)
    info: dict[str, Any] = {
        "target": target.name,
        "arch": arch.to_str(),
        "name": arch.name,
        "resolution": args.resolution,
        "ms": ms,
        "overhead_ms": target.overhead_ms,
        "layers": frame.to_dict(orient="records"),
    }
    if budget is not None:
        info.update(budget_ms=budget, fits=ms <= budget)
    if args.json:
        sys.stdout.write(json.dumps(info) + "\n")
        return
    if args.breakdown:
        table = Table(title=f"{arch.name or 'architecture'} on {target.name}", title_justify="left")
        for col in ("part", "key", "ms", "source"):
            table.add_column(col, justify="right" if col == "ms" else "left", no_wrap=col == "key")
        for r in info["layers"]:
            table.add_row(r["part"], r["key"], f"{r['ms']:.3f}", r["source"])
        widen(console, table)
        console.print(table)
    line = f"{arch.name or 'architecture'} on {target.name} @ {args.resolution}px: {ms:.2f} ms"
    if target.overhead_ms:
        line += f" (layers {ms - target.overhead_ms:.2f} + overhead {target.overhead_ms:.2f})"
    if budget is not None:
        line += f"; {'within' if ms <= budget else 'over'} the {budget:g} ms budget"
    console.print(line, highlight=False)


def _cmd_measure(args: argparse.Namespace, console: Console) -> None:
    arch = resolve_arch(args.arch, args.width)
    target = _measured(args.target)
    s = target.measure(arch, args.resolution)
    info = {
        "target": target.name,
        "arch": arch.to_str(),
        "name": arch.name,
        "resolution": args.resolution,
        **s.to_dict(),
    }
    if args.json:
        sys.stdout.write(json.dumps(info) + "\n")
        return
    console.print(
        f"{arch.name or 'architecture'} on {target.name} @ {args.resolution}px: median "
        f"{s.median:.2f} ms (p10 {s.p10:.2f}, p90 {s.p90:.2f}, {s.n} runs)",
        highlight=False,
    )


_COMMANDS: dict[str, Callable[[argparse.Namespace, Console], None]] = {
    "targets": _cmd_targets,
    "build": _cmd_build,
    "validate": _cmd_validate,
    "predict": _cmd_predict,
    "measure": _cmd_measure,
}


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``nas-latency``; returns the exit code (0; 2 for bad input or an unreachable device)."""
    return run_cli(
        "nas-latency",
        make_parser(),
        lambda a: _COMMANDS[a.command](a, Console()),
        argv,
        on_interrupt=lambda a: "interrupted (measured tables keep what was stored; run again to resume)",
    )


if __name__ == "__main__":
    sys.exit(main())

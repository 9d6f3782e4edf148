"""The ``nas-latency`` subcommands: each takes the parsed arguments and a console.

The parser and ``main`` are in :mod:`hwnas.latency.cli`; everything a
command does is a library call (:mod:`hwnas.latency`), so notebooks reach it
without the CLI.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, cast

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table

from hwnas.common.cli import widen
from hwnas.common.errors import UsageError
from hwnas.common.units import parse_latency
from hwnas.space.cli import resolve_arch

from .correction import calibrate
from .keys import LayerKey, layer_keys
from .measured_target import MeasuredTarget
from .registry import LOCAL_TARGETS, describe_targets, load_target, target_for_build
from .runners import RUNNER_OPTIONS, make_runner, runner_settings
from .space_latency import space_keys
from .target import Target
from .validation import BAND, measure_network, record_validation, validate, write_validation


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
    if not t.can_measure:
        raise UsageError(str(t.not_measured_here()))
    return cast(MeasuredTarget, t)  # the targets that can measure are measured targets


def _space(name: str) -> Any:
    from hwnas.space.searchspace import get_space

    return get_space(name)


def _build_target(args: argparse.Namespace) -> MeasuredTarget:
    kind = args.runner
    if kind is None and args.runtime is not None and args.target.lower() in LOCAL_TARGETS:
        kind = "local"  # build --target host-tflite --runtime tflite
    settings = runner_settings(kind, **{o: getattr(args, o) for o in RUNNER_OPTIONS})
    return target_for_build(args.target, settings, _programs(args))


def _programs(args: argparse.Namespace) -> dict:
    given = {"perf_test": getattr(args, "perf_test", None)}
    return {k: str(Path(v).expanduser().resolve()) for k, v in given.items() if v is not None}


def _cmd_doctor(args: argparse.Namespace, console: Console) -> None:
    from .runners.adb import AdbRunner
    from .runners.adb_doctor import doctor

    if args.target is not None and args.runner is None:
        runner = _measured(args.target).runner
    else:
        if args.runner != "adb":
            raise UsageError("doctor checks phones: give --runner adb --device SERIAL")
        settings = runner_settings("adb", **{o: getattr(args, o) for o in RUNNER_OPTIONS})
        runner = make_runner(settings, programs=_programs(args))
    if not isinstance(runner, AdbRunner):
        raise UsageError("doctor checks phones (adb targets)")
    checks = doctor(runner)
    for ok, line in checks:
        console.print(("ok   " if ok else "FIX  ") + line, highlight=False, markup=False,
                      soft_wrap=True)
    if not all(ok for ok, _ in checks):
        raise SystemExit(1)


def _fmt_err(val: dict | None) -> str:
    if not val:
        return "not validated"
    rho = f", rho {val['spearman']:.3f}" if val.get("spearman") is not None else ""
    what = val.get("what") or " ".join(
        str(x) for x in (val.get("space"), val.get("date", "")[:10]) if x
    )
    return f"MAPE {val['mape']:.1%}, max {val['max_error']:.1%}{rho} (n={val.get('n')}, {what})"


def _fmt_correction(c: dict | None) -> str:
    if not c or "cv_mape" not in c:
        return ""
    return f"; corrected (fit on {c.get('n')} nets, cross-validated MAPE {c['cv_mape']:.1%})"


# ---------------------------------------------------------------- commands ---
def _cmd_targets(args: argparse.Namespace, console: Console) -> None:
    rows = describe_targets()
    if args.json:
        sys.stdout.write(json.dumps(rows, default=str) + "\n")
        return
    table = Table(title="nas-latency targets", title_justify="left")
    for col in ("name", "kind", "device", "runtime", "entries", "sources", "overhead",
                "measured error"):
        table.add_column(col)
    for r in rows:
        if "error" in r:
            table.add_row(r["name"], "?", f"[red]{r['error']}[/red]", "", "", "", "", "")
            continue
        over = r.get("overhead_ms")
        table.add_row(
            r["name"],
            r["kind"],
            r.get("device", ""),
            r.get("runtime", ""),
            str(r.get("entries", "")),
            ", ".join(f"{k} {v}" for k, v in (r.get("sources") or {}).items()),
            "" if over is None else f"{over:.3f} ms",
            _fmt_err(r.get("validation")) + _fmt_correction(r.get("correction")),
        )
    widen(console, table)  # never fold: widen an 80-column pipe instead
    console.print(table)


def _cmd_build(args: argparse.Namespace, console: Console) -> None:
    space = _space(args.space)
    keys = space_keys(space, args.resolution)
    target = _build_target(args)
    missing = target.missing(keys)
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
        f"{secs:.0f} s; overhead {target.table.overhead_ms or 0.0:.3f} ms",
        highlight=False,
    )
    if args.calibrate:
        start = time.perf_counter()
        with _progress(err) as bar:
            task = bar.add_task("measuring networks", total=args.calibrate)
            corr = calibrate(target, space, args.calibrate, resolution=args.resolution,
                             progress=lambda k: bar.advance(task, k))
        f = corr.fit
        console.print(
            f"{target.name}: correction from {f['n']} networks ({args.calibrate} measured in "
            f"{time.perf_counter() - start:.0f} s): fit MAPE {f['mape']:.2%}, cross-validated "
            f"MAPE {f['cv_mape']:.2%}, {f['cv_within']:.0%} within ±10%",
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
            flushed=getattr(args, "flushed", False),
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
    lines = [
        f"{target.name}: {args.n} random {space.name} networks @ {args.resolution}px"
        f" vs standard measurement (warm session.run): {_fmt_fidelity(result.stats)}"
    ]
    if result.flushed is not None:
        lines.append(f"  vs cache-flushed measurement: {_fmt_fidelity(result.flushed)}")
    lv = result.level
    if lv is not None:
        ratios = lv["anchor_levels"].values()
        lines.append(
            f"  level-corrected (predictions x {lv['level']:.3f}: median of {lv['anchors']} "
            f"anchor networks now / at calibration, each {min(ratios):.3f}-{max(ratios):.3f}): "
            f"{_fmt_fidelity(lv)}"
        )
    spread = summary.get("round_spread_median")
    if spread is not None:
        lines.append(f"  measurement: the median network's {summary['rounds']} rounds differ by "
                     f"{spread:.1%} (fastest to slowest)"
                     + (f"; above the ±{BAND:.0%} band, the machine is busy or noisy and "
                        "errors of that size are the measurement's" if spread > BAND else ""))
    console.print("\n".join([*lines, f"  {csv}", f"  {png}"]), highlight=False)


def _fmt_fidelity(s: dict) -> str:
    return (
        f"{s['within']:.0%} within ±10%, MAPE {s['mape']:.2%}, max error {s['max_error']:.2%}, "
        f"bias {s['bias']:+.2%}, Spearman {s['spearman']:.3f}"
    )


def _fill_for(target: Target, keys: Sequence[LayerKey]) -> None:
    missing = target.missing(keys)  # none on a fitted target
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
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        ms = target.predict(arch, args.resolution)
    notes = list(dict.fromkeys(str(w.message).splitlines()[0] for w in caught))
    for note in notes:  # one line each on stderr, also in --json
        sys.stderr.write(f"warning: {note}\n")
    frame = target.breakdown(arch, args.resolution)
    info: dict[str, Any] = {
        "target": target.name,
        "arch": arch.to_str(),
        "name": arch.name,
        "resolution": args.resolution,
        "ms": ms,
        "overhead_ms": target.overhead_ms,
        "layers": frame.to_dict(orient="records"),
        "source_shares": target.source_shares(arch, args.resolution),
        "warnings": notes,
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
        shares = ", ".join(f"{s} {v:.0%}" for s, v in info["source_shares"].items())
        console.print(f"sources of the predicted ms: {shares}", highlight=False)
    line = f"{arch.name or 'architecture'} on {target.name} @ {args.resolution}px: {ms:.2f} ms"
    if target.overhead_ms:
        line += f" (layers {ms - target.overhead_ms:.2f} + overhead {target.overhead_ms:.2f})"
    if budget is not None:
        line += f"; {'within' if ms <= budget else 'over'} the {budget:g} ms budget"
    console.print(line, highlight=False)


def _cmd_measure(args: argparse.Namespace, console: Console) -> None:
    arch = resolve_arch(args.arch, args.width)
    target = _measured(args.target)
    s = measure_network(target, arch, args.resolution, "standard")
    info: dict[str, Any] = {
        "target": target.name,
        "arch": arch.to_str(),
        "name": arch.name,
        "resolution": args.resolution,
        "protocol": "standard",
        **s.to_dict(),
    }
    f = None
    if getattr(args, "flushed", False):
        f = measure_network(target, arch, args.resolution, "flushed")
        info["flushed"] = f.to_dict()
    if args.json:
        sys.stdout.write(json.dumps(info) + "\n")
        return
    line = (
        f"{arch.name or 'architecture'} on {target.name} @ {args.resolution}px: median "
        f"{s.median:.2f} ms (p10 {s.p10:.2f}, p90 {s.p90:.2f}, {s.n} runs; warm session.run)"
    )
    if f is not None:
        line += f"\n  cache-flushed: median {f.median:.2f} ms (p10 {f.p10:.2f}, p90 {f.p90:.2f})"
    console.print(line, highlight=False)


COMMANDS: dict[str, Callable[[argparse.Namespace, Console], None]] = {
    "targets": _cmd_targets,
    "build": _cmd_build,
    "doctor": _cmd_doctor,
    "validate": _cmd_validate,
    "predict": _cmd_predict,
    "measure": _cmd_measure,
}

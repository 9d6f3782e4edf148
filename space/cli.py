"""``nas-space``: inspect architectures, reference networks and search spaces.

Subcommands:

- ``show NAME_OR_STRING``: per-block table (input shape, params, MAdds) and totals
  of a reference network (``mobilenetv3_large``) or of an architecture string.
- ``sample --space NAME``: one random architecture of a search space.
- ``list``: reference networks and search spaces.

The CLI is thin: :func:`resolve_arch` and :func:`summarize` do the work and
are usable from Python. Bad input ends with one line on stderr and exit 2.

Example::

    $ nas-space show mobilenetv3_large --width 0.75 --resolution 192
    $ nas-space show "stem_k3_s2_c16_nre:ds_r1_k3_s1_c16_nre:head_v2_c1280_nre" --json
    $ nas-space sample --space mobilenetv3 --seed 3
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from typing import Any

import numpy as np
from rich.console import Console
from rich.table import Table

from hwnas.common.cli import Parser, float_in, positive_int, run_cli, seed, widen
from hwnas.common.errors import HwnasError, UsageError

from .counts import breakdown
from .notation import STAGE_SEP
from .references import REFERENCE_NAMES, reference
from .searchspace import SPACE_NAMES, get_space
from .spec import Arch

MAX_WIDTH = 4.0  # reference() accepts width multipliers in (0, 4]
DEFAULT_RESOLUTION = 224  # ImageNet evaluation size used by the papers
DEFAULT_CLASSES = 1000  # ImageNet-1k



# ------------------------------------------------------------------ library ---
def _ref_key(name: str) -> str:
    return name.strip().lower().replace("-", "_")


def resolve_arch(text: str, width: float = 1.0) -> Arch:
    """The architecture named by ``text``: a reference name or an architecture string.

    Args:
        text: a name from ``REFERENCE_NAMES`` (``-`` and case are forgiven) or a
            ``stem_...:stage:...:head_...`` string (see docs/space.md).
        width: width multiplier; only reference networks can be scaled.

    Raises:
        ValueError: unknown name, malformed string (``NotationError`` names the
            bad token) or a width given with an architecture string.

    >>> resolve_arch("mnasnet_b1").params()
    4383312
    """
    if _ref_key(text) in REFERENCE_NAMES:
        return reference(_ref_key(text), width)
    if STAGE_SEP not in text:
        raise HwnasError(
            f"unknown network {text!r}: known are {', '.join(REFERENCE_NAMES)}, "
            f"or give an architecture string 'stem_...{STAGE_SEP}<stage>{STAGE_SEP}...{STAGE_SEP}head_...'")
    if width != 1.0:
        raise HwnasError(f"--width {width:g} applies to reference names only, not to architecture strings")
    return Arch.from_str(text)


def summarize(arch: Arch, resolution: int = DEFAULT_RESOLUTION,
              num_classes: int = DEFAULT_CLASSES) -> dict[str, Any]:
    """JSON-ready description of ``arch``: canonical string, per-part rows and totals.

    Rows are :func:`hwnas.space.counts.breakdown` with shapes as lists; their
    params and MAdds add up to the totals.
    """
    rows = [{**r, "in_shape": list(r["in_shape"])} for r in breakdown(arch, resolution, num_classes)]
    return {
        "name": arch.name,
        "arch": arch.to_str(),
        "resolution": resolution,
        "num_classes": num_classes,
        "rows": rows,
        "totals": {"params": arch.params(num_classes), "madds": arch.madds(resolution, num_classes)},
    }


def sample_arch(space: str, seed: int | None = None) -> Arch:
    """One architecture drawn from search space ``space`` with ``np.random.default_rng(seed)``.

    Raises:
        ValueError: unknown space name (the message lists the known ones).
    """
    return get_space(space).sample_random(np.random.default_rng(seed))


# ------------------------------------------------------------ arg checking ---
width_multiplier = float_in("width multiplier", 0.0, MAX_WIDTH)


def make_parser() -> argparse.ArgumentParser:
    """The ``nas-space`` argument parser (exposed for docs and tests)."""
    p = Parser(prog="nas-space", description="Inspect architectures, reference networks and search spaces.")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND", parser_class=Parser)

    show = sub.add_parser(
        "show", help="per-block params/MAdds table of a network",
        description="Print a per-block table (part, block string, input shape, params, MAdds) and "
                    "totals for a reference network or an architecture string.")
    show.add_argument("arch", metavar="NAME_OR_STRING",
                      help=f"reference name ({', '.join(REFERENCE_NAMES)}) or an architecture string "
                           f"'stem_...{STAGE_SEP}<stage>{STAGE_SEP}...{STAGE_SEP}head_...' (quote it)")
    show.add_argument("--width", type=width_multiplier, default=1.0, metavar="W",
                      help=f"width multiplier of a reference network, in (0, {MAX_WIDTH:g}] (default 1.0)")
    show.add_argument("--resolution", type=positive_int("resolution"), default=DEFAULT_RESOLUTION,
                      metavar="R", help=f"square input size in pixels (default {DEFAULT_RESOLUTION})")
    show.add_argument("--num-classes", type=positive_int("class count"), default=DEFAULT_CLASSES,
                      metavar="N", help=f"classifier outputs (default {DEFAULT_CLASSES})")
    show.add_argument("--json", action="store_true",
                      help="print JSON (arch string, rows, totals) instead of a table")

    smp = sub.add_parser(
        "sample", help="print a random architecture of a search space",
        description="Draw one architecture from a search space with numpy's default_rng(SEED) "
                    "and print its string.")
    smp.add_argument("--space", required=True, metavar="NAME", help="search space name (see 'nas-space list')")
    smp.add_argument("--seed", type=seed, default=None, metavar="S",
                     help="random seed, a non-negative integer (default: fresh entropy)")

    sub.add_parser("list", help="list reference networks and search spaces",
                   description="List the reference network names and the search space names.")
    return p


# ----------------------------------------------------------------- output ---
def _print_table(console: Console, info: dict[str, Any], title: str) -> None:
    table = Table(title=title, title_justify="left")
    table.add_column("part")
    table.add_column("block", no_wrap=True)
    table.add_column("input CxHxW", justify="right")
    table.add_column("params", justify="right")
    table.add_column("MAdds", justify="right")
    for r in info["rows"]:
        c, h, w = r["in_shape"]
        table.add_row(r["part"], r["block"], f"{c}x{h}x{w}", f"{r['params']:,}", f"{r['madds']:,}")
    tot = info["totals"]
    table.add_section()
    table.add_row("total", "", "", f"{tot['params']:,}", f"{tot['madds']:,}")
    # Never fold block strings: widen a narrow (or non-terminal, 80-column) console instead.
    widen(console, table)
    console.print(table)
    console.print(f"params {tot['params']:,} ({tot['params'] / 1e6:.2f} M)   "
                  f"MAdds {tot['madds']:,} ({tot['madds'] / 1e6:.1f} M)", highlight=False)


def _cmd_show(args: argparse.Namespace, console: Console) -> None:
    try:
        arch = resolve_arch(args.arch, args.width)
    except ValueError as e:  # NotationError is a ValueError
        raise UsageError(str(e)) from None
    info = summarize(arch, args.resolution, args.num_classes)
    if args.json:
        info["width"] = args.width
        sys.stdout.write(json.dumps(info) + "\n")
        return
    name = arch.name or "architecture"
    console.print(info["arch"], markup=False, highlight=False, soft_wrap=True)
    _print_table(console, info, f"{name} @ {args.resolution}x{args.resolution}, {args.num_classes} classes")


def _cmd_sample(args: argparse.Namespace, console: Console) -> None:
    try:
        arch = sample_arch(args.space, args.seed)
    except ValueError as e:
        raise UsageError(str(e)) from None
    sys.stdout.write(arch.to_str() + "\n")


def _cmd_list(args: argparse.Namespace, console: Console) -> None:
    table = Table(title="nas-space names", title_justify="left")
    table.add_column("kind")
    table.add_column("name")
    table.add_column("params", justify="right")
    table.add_column("MAdds @224", justify="right")
    for name in REFERENCE_NAMES:
        a = reference(name)
        table.add_row("reference", name, f"{a.params():,}", f"{a.madds():,}")
    for name in SPACE_NAMES:
        table.add_row("space", name, "", "")
    console.print(table)


_COMMANDS = {"show": _cmd_show, "sample": _cmd_sample, "list": _cmd_list}


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``nas-space``; returns the exit code (0; 2 for bad input)."""
    return run_cli("nas-space", make_parser(), lambda a: _COMMANDS[a.command](a, Console()), argv)


if __name__ == "__main__":
    sys.exit(main())

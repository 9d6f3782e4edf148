"""Write docs/cli.md: the complete ``--help`` of every hwnas command and sub-command.

The reference is generated from the argparse parsers themselves, so it cannot
drift from the code: ``tests/test_docs.py`` regenerates it and fails when the
committed file differs. After changing a CLI, run::

    .venv/bin/python docs/cli_reference.py
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from pathlib import Path

# (program, module, parser factory) in the order a user meets them.
COMMANDS = (
    ("nas-search", "hwnas.search.cli", "build_parser"),
    ("netadapt", "hwnas.netadapt.cli", "build_parser"),
    ("nas-latency", "hwnas.latency.cli", "make_parser"),
    ("nas-space", "hwnas.space.cli", "make_parser"),
    ("nas-supernet", "hwnas.supernet.cli", "make_parser"),
)
HELP_WIDTH = 100  # argparse wraps at $COLUMNS; fixed so the file is the same everywhere
OUT = Path(__file__).with_name("cli.md")

INTRO = """# Command-line reference

Every command, every flag: this page is generated from the programs' own
parsers by `docs/cli_reference.py` (a test checks it is current), so it says
exactly what `--help` says. Task-oriented guides: [quickstart](quickstart.md),
[search](search.md), [latency targets](latency.md), [NetAdapt](netadapt.md),
[search space](space.md).
"""


def parser_of(module: str, factory: str) -> argparse.ArgumentParser:
    return getattr(importlib.import_module(module), factory)()


def subcommands(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    """Sub-command name -> its parser (empty for a program without sub-commands)."""
    for action in parser._actions:  # argparse keeps sub-parsers only here
        if isinstance(action, argparse._SubParsersAction):
            return dict(action.choices)
    return {}


def option_strings(parser: argparse.ArgumentParser) -> set[str]:
    """Every ``--flag`` of ``parser`` and its sub-commands."""
    flags = {s for a in parser._actions for s in a.option_strings if s.startswith("--")}
    for sub in subcommands(parser).values():
        flags |= option_strings(sub)
    return flags


def render() -> str:
    os.environ["COLUMNS"] = str(HELP_WIDTH)
    parts = [INTRO]
    for prog, module, factory in COMMANDS:
        parser = parser_of(module, factory)
        parser.prog = prog
        parts.append(f"\n## `{prog}`\n\n```text\n{parser.format_help().rstrip()}\n```\n")
        for name, sub in subcommands(parser).items():
            sub.prog = f"{prog} {name}"
            parts.append(f"\n### `{prog} {name}`\n\n```text\n{sub.format_help().rstrip()}\n```\n")
    return "".join(parts)


def main() -> int:
    text = render()
    tmp = OUT.with_suffix(".md.tmp")
    tmp.write_text(text)
    tmp.replace(OUT)
    print(f"wrote {OUT} ({len(text.splitlines())} lines)", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""The CLI toolkit every hwnas command uses.

- :class:`Parser`: an ``ArgumentParser`` whose errors are one line
  (``prog: error: ...``, exit 2, no usage dump) and which takes values that
  start with ``-`` (``--lat -5ms``) so that the value's own check names it;
- argument types that name the bad value and what is accepted;
- :func:`run_cli`: parse, dispatch, and turn :class:`~hwnas.common.errors.HwnasError`
  into one line on stderr and exit 2; any other exception is a bug and keeps
  its traceback.
"""

from __future__ import annotations

import argparse
import math
import sys
from collections.abc import Callable, Sequence
from typing import Any, NoReturn

from .errors import HwnasError
from .units import shorten

EXIT_OK = 0
EXIT_USAGE = 2  # argparse's (and the shell's) code for bad usage
EXIT_INTERRUPTED = 130  # the shell's code for SIGINT
_UNBOUNDED = 10_000  # columns offered to rich when measuring a table's natural width


class Parser(argparse.ArgumentParser):
    """ArgumentParser with one-line errors that accepts ``--opt -value``."""

    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_USAGE, f"{self.prog}: error: {' '.join(message.split())}\n")

    def parse_known_args(self, args: Sequence[str] | None = None, namespace: Any = None):  # noqa: ANN201
        if args is None:
            args = sys.argv[1:]
        return super().parse_known_args(self._join_dashed_values(list(args)), namespace)

    def _join_dashed_values(self, args: list[str]) -> list[str]:
        """``--opt -5ms`` -> ``--opt=-5ms`` when ``--opt`` takes one value and ``-5ms`` is no option."""
        out: list[str] = []
        i = 0
        while i < len(args):
            a = args[i]
            action = self._option_string_actions.get(a)
            nxt = args[i + 1] if i + 1 < len(args) else None
            if (action is not None and action.nargs is None and action.option_strings
                    and type(action).__name__ == "_StoreAction" and nxt is not None
                    and nxt.startswith("-") and len(nxt) > 1
                    and nxt.split("=")[0] not in self._option_string_actions):
                out.append(f"{a}={nxt}")
                i += 2
                continue
            out.append(a)
            i += 1
        return out


def positive_int(what: str, limit: int | None = None) -> Callable[[str], int]:
    """An argparse type: an integer in ``[1, limit]``."""

    def parse(text: str) -> int:
        try:
            n = int(text)
        except ValueError:
            n = 0
        if n < 1 or (limit is not None and n > limit):
            rng = f"1..{limit}" if limit is not None else "a positive integer"
            raise argparse.ArgumentTypeError(f"{shorten(text)} is not a valid {what} ({rng})")
        return n

    return parse


def non_negative_int(what: str) -> Callable[[str], int]:
    """An argparse type: an integer >= 0 (seeds)."""

    def parse(text: str) -> int:
        try:
            n = int(text)
        except ValueError:
            n = -1
        if n < 0:
            raise argparse.ArgumentTypeError(f"{shorten(text)} is not a {what} (a non-negative integer)")
        return n

    return parse


seed = non_negative_int("seed")


def float_in(what: str, lo: float, hi: float, *, lo_open: bool = True) -> Callable[[str], float]:
    """An argparse type: a float in ``(lo, hi]`` (``[lo, hi]`` with ``lo_open=False``)."""

    def parse(text: str) -> float:
        try:
            v = float(text)
        except ValueError:
            v = math.nan
        ok = (v > lo if lo_open else v >= lo) and v <= hi
        if not ok:
            bracket = "(" if lo_open else "["
            raise argparse.ArgumentTypeError(f"{shorten(text)} is not a {what} in {bracket}{lo:g}, {hi:g}]")
        return v

    return parse


def one_line(message: object) -> str:
    """The message on one line (whitespace runs collapsed)."""
    return " ".join(str(message).split())


def widen(console: Any, table: Any) -> None:
    """Widen ``console`` so ``table`` is printed unfolded (pipes default to 80 columns)."""
    from rich.measure import Measurement

    wanted = Measurement.get(console, console.options.update_width(_UNBOUNDED), table).maximum
    console.width = max(console.width, wanted)


def run_cli(
    prog: str,
    parser: argparse.ArgumentParser,
    dispatch: Callable[[argparse.Namespace], int | None],
    argv: Sequence[str] | None = None,
    *,
    on_interrupt: Callable[[argparse.Namespace], str] | None = None,
) -> int:
    """Parse ``argv``, call ``dispatch(args)`` and return the exit code.

    ``HwnasError`` -> ``prog[ command]: error: message`` on one line, exit 2;
    ``KeyboardInterrupt`` -> the line ``on_interrupt(args)`` gives, exit 130.
    """
    try:
        args = parser.parse_args(argv)
    except SystemExit as e:  # --help (0) or a usage error already printed (2)
        return int(e.code or 0)
    name = " ".join(x for x in (prog, getattr(args, "command", None)) if x)
    try:
        code = dispatch(args)
    except HwnasError as e:
        print(f"{name}: error: {one_line(e)}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        hint = on_interrupt(args) if on_interrupt else "interrupted"
        print(f"\n{name}: {hint}", file=sys.stderr)
        return EXIT_INTERRUPTED
    return EXIT_OK if code is None else int(code)

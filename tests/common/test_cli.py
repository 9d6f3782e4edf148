"""The CLI toolkit: one-line errors, exit 2, dashed values reach their checks."""

from __future__ import annotations

import pytest

from hwnas.common.cli import EXIT_USAGE, Parser, positive_int, run_cli, seed
from hwnas.common.errors import HwnasError
from hwnas.common.units import parse_latency


def _parser() -> Parser:
    p = Parser(prog="tool")
    p.add_argument("--lat")
    p.add_argument("--seed", type=seed, default=0)
    p.add_argument("--n", type=positive_int("count", limit=10), default=1)
    p.add_argument("--flag", action="store_true")
    return p


def _dispatch(args):
    parse_latency(args.lat or "1ms")
    print(f"ok {args.seed} {args.n}")


@pytest.mark.parametrize(("argv", "named"), [
    (["--lat", "-5ms"], "'-5ms'"),
    (["--seed", "-1"], "--seed"),
    (["--n", "11"], "'11'"),
    (["--lat", "50"], "'50'"),
])
def test_bad_values_are_one_line_naming_them(capsys, argv, named):
    assert run_cli("tool", _parser(), _dispatch, argv) == EXIT_USAGE
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("tool: error: ") and named in err


def test_good_values(capsys):
    assert run_cli("tool", _parser(), _dispatch, ["--lat", "5ms", "--seed", "3", "--flag"]) == 0
    assert capsys.readouterr().out == "ok 3 1\n"


def test_a_bug_is_not_hidden():
    def buggy(_args):
        raise ValueError("internal numpy-style error")

    with pytest.raises(ValueError, match="internal"):
        run_cli("tool", _parser(), buggy, [])


def test_interrupt_exits_130(capsys):
    def stop(_args):
        raise KeyboardInterrupt

    assert run_cli("tool", _parser(), stop, [], on_interrupt=lambda a: "stopped; resume") == 130
    assert "tool: stopped; resume" in capsys.readouterr().err


def test_error_root_is_a_value_error():
    assert issubclass(HwnasError, ValueError)

"""Users' YAML: aliases, deep nesting, duplicate keys, binary files are one-line errors."""

from __future__ import annotations

import pytest
from pydantic import BaseModel, ConfigDict

from hwnas.common.errors import HwnasError
from hwnas.common.yamlio import load_yaml, parse_yaml, validation_message


def test_lines_of_key_paths():
    data, lines = parse_yaml("a: 1\nb:\n  c: 2\n  d: [1, 2]\n", "f.yaml")
    assert data == {"a": 1, "b": {"c": 2, "d": [1, 2]}}
    assert lines[("a",)] == 1 and lines[("b", "c")] == 3 and lines[("b", "d")] == 4


def test_alias_bomb_is_refused():
    text = "a: &a [1, 1]\nb: &b [*a, *a]\nc: [*b, *b]\n"
    with pytest.raises(HwnasError, match=r"f\.yaml line 2: .*aliases"):
        parse_yaml(text, "f.yaml")


def test_deep_nesting_is_refused_without_recursion_error():
    with pytest.raises(HwnasError, match="nested deeper"):
        parse_yaml("a: " + "[" * 5000 + "]" * 5000, "f.yaml")


def test_duplicate_key_is_refused():
    with pytest.raises(HwnasError, match=r"line 2: .*duplicate key 'goal'"):
        parse_yaml("goal: 0.8x\ngoal: 0.5x\n", "run.yaml")


def test_binary_file_names_the_file(tmp_path):
    p = tmp_path / "run.yaml"
    p.write_bytes(b"\xf7\xfa\x00\x01")
    with pytest.raises(HwnasError, match=r"run\.yaml: not a text file"):
        load_yaml(p)


def test_missing_file(tmp_path):
    with pytest.raises(HwnasError, match="cannot read"):
        load_yaml(tmp_path / "nope.yaml")


class _Inner(BaseModel):
    model_config = ConfigDict(extra="forbid")
    x: int


class _Outer(BaseModel):
    model_config = ConfigDict(extra="forbid")
    inner: _Inner
    name: str


def test_validation_message_names_line_field_and_value():
    from pydantic import ValidationError

    raw, lines = parse_yaml("name: a\ninner:\n  x: nope\n", "run.yaml")
    with pytest.raises(ValidationError) as e:
        _Outer(**raw)
    msg = validation_message(e.value, _Outer, "run.yaml", lines)
    assert msg.startswith("run.yaml line 3: inner.x: ") and "'nope'" in msg


def test_validation_message_lists_accepted_fields():
    from pydantic import ValidationError

    raw, lines = parse_yaml("name: a\ninner:\n  x: 1\n  y: 2\n", "run.yaml")
    with pytest.raises(ValidationError) as e:
        _Outer(**raw)
    assert "unknown field (accepted: x)" in validation_message(e.value, _Outer, "run.yaml", lines)


def test_long_values_are_cut():
    from pydantic import ValidationError

    with pytest.raises(ValidationError) as e:
        _Inner(x="z" * 10_000)
    assert len(validation_message(e.value, _Inner, "f")) < 200

"""run.yaml validation: one-line errors with file, line, field and accepted values."""

from __future__ import annotations

import pytest
import yaml
from netadapt_helpers import TINY_YAML, write_yaml

from hwnas.netadapt.config import load_config, parse_amount, parse_config


def test_example_validates():
    cfg = load_config(TINY_YAML)
    assert cfg.mode == "mobilenetv3" and cfg.selection == "per_latency"
    assert cfg.goal_amount == (0.8, "x")
    assert cfg.dr_amount == (0.05, "x") and cfg.dr.decay == 0.9


@pytest.mark.parametrize("path", sorted(TINY_YAML.parent.glob("*.yaml")), ids=lambda p: p.name)
def test_every_example_validates(path):
    cfg = load_config(path)
    assert cfg.goal_amount[1] in ("ms", "x") and cfg.out


def test_amounts():
    assert parse_amount("40ms", "goal") == (40.0, "ms")
    assert parse_amount("0.04s", "goal") == (40.0, "ms")
    assert parse_amount("0.75x", "goal") == (0.75, "x")
    with pytest.raises(ValueError, match="expected a latency like 40ms .* or a fraction"):
        parse_amount("75%", "goal")


def test_bad_yaml_names_the_line(tmp_path):
    p = tmp_path / "run.yaml"
    p.write_text("target: pixel\ngoal: 0.75x\ninput: [unclosed\nmode: filters\n")
    with pytest.raises(ValueError) as e:
        load_config(p)
    msg = str(e.value)
    assert "\n" not in msg and "not valid YAML" in msg and "line 4" in msg


def _error(tmp_path, raw: dict) -> str:
    with pytest.raises(ValueError) as e:
        load_config(write_yaml(tmp_path / "run.yaml", raw))
    assert "\n" not in str(e.value)
    return str(e.value)


def test_schema_errors_name_line_field_and_accepted_values(tmp_path, tiny_raw):
    raw = {**tiny_raw, "mode": "layers"}
    msg = _error(tmp_path, raw)
    lines = (tmp_path / "run.yaml").read_text().splitlines()
    line = next(i for i, t in enumerate(lines, 1) if t.startswith("mode:"))
    assert f"line {line}: mode:" in msg and "'filters' or 'mobilenetv3'" in msg and "'layers'" in msg

    msg = _error(tmp_path, {**tiny_raw, "selection": "best"})
    assert "selection:" in msg and "'accuracy' or 'per_latency'" in msg

    msg = _error(tmp_path, {**tiny_raw, "goal": "fast"})
    assert "goal:" in msg and "40ms" in msg and "0.75x" in msg

    msg = _error(tmp_path, {**tiny_raw, "goal": "1.5x"})
    assert "below 1x" in msg

    msg = _error(tmp_path, {**tiny_raw, "dr": {"initial": "0.01x", "decay": 1.5}})
    assert "dr.decay:" in msg and "less than or equal to 1" in msg

    msg = _error(tmp_path, {**tiny_raw, "short_term": {"steps": 0}})
    assert "short_term.steps:" in msg

    msg = _error(tmp_path, {**tiny_raw, "epochs": 3})
    assert "epochs: unknown field (accepted: format_version, input, target, goal" in msg

    msg = _error(tmp_path, {**tiny_raw, "dataset": {"nme": "x"}})
    assert "dataset.nme: unknown field (accepted: name, resolution, val_size, train_subset)" in msg

    raw = dict(tiny_raw)
    del raw["target"]
    assert "target: required field is missing" in _error(tmp_path, raw)

    msg = _error(tmp_path, {**tiny_raw, "input": {"reference": "mobilenetv3_large", "arch": "x"}})
    assert "input:" in msg and "exactly one of run, reference, arch" in msg


def test_not_a_mapping(tmp_path):
    p = tmp_path / "run.yaml"
    p.write_text("- a\n- b\n")
    with pytest.raises(ValueError, match="expected a mapping"):
        load_config(p)
    with pytest.raises(ValueError, match="cannot read"):
        load_config(tmp_path / "missing.yaml")


def test_newer_format_refused(tiny_raw):
    with pytest.raises(ValueError, match="newer than this hwnas reads"):
        parse_config({**tiny_raw, "format_version": 99})


def test_resolved_config_round_trips(tiny_raw):
    cfg = parse_config(tiny_raw)
    again = parse_config(yaml.safe_load(cfg.to_yaml()))
    assert again == cfg

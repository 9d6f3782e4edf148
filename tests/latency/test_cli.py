"""``nas-latency``: outputs, exit codes and one-line errors (in-process and as a subprocess)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from hwnas.latency.cli import main
from hwnas.latency.registry import load_target, target_names, target_path
from hwnas.latency.table import META_FILE, TABLE_FILE
from hwnas.space.references import reference

EXIT_USAGE = 2


@pytest.fixture(autouse=True)
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("HWNAS_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("COLUMNS", "200")
    return tmp_path / "home"


def run(capsys: pytest.CaptureFixture, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def assert_one_line_error(code: int, err: str, *needles: str) -> None:
    assert code == EXIT_USAGE
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("nas-latency ") and "Traceback" not in err
    for n in needles:
        assert n in lines[0], lines[0]


def test_predict_pixel(capsys) -> None:
    code, out, _ = run(capsys, "predict", "--target", "pixel", "--arch", "mobilenetv3_large")
    ms = load_target("pixel").predict(reference("mobilenetv3_large"))  # 52.0: docs/latency.md
    assert code == 0 and f"mobilenetv3_large on pixel @ 224px: {ms:.2f} ms" in out
    code, out, _ = run(
        capsys,
        "predict",
        "--target",
        "pixel",
        "--arch",
        "mobilenetv3-small",
        "--width",
        "0.75",
        "--json",
        "--budget",
        "12ms",
    )
    info = json.loads(out)
    want = load_target("pixel").predict(reference("mobilenetv3_small", 0.75))
    assert code == 0 and info["ms"] == pytest.approx(want) and info["fits"] is False
    assert (
        info["budget_ms"] == 12.0
        and len(info["layers"]) == 2 + reference("mobilenetv3_small").depth
    )


def test_predict_arch_string_and_breakdown(capsys) -> None:
    text = reference("mnasnet_a1").to_str()
    code, out, _ = run(
        capsys,
        "predict",
        "--target",
        "pixel1",
        "--arch",
        text,
        "--breakdown",
        "--resolution",
        "192",
        "--budget",
        "0.1s",
    )
    assert code == 0 and "within the 100 ms budget" in out and "head_v2" in out


@pytest.mark.parametrize(
    ("argv", "needles"),
    [
        (
            ["predict", "--target", "nope", "--arch", "mobilenetv2"],
            ["unknown target 'nope'", "known are host, pixel, pixel1"],
        ),
        (
            ["predict", "--target", "pixel", "--arch", "mobilenetv2", "--budget", "50"],
            ["latency '50' has no unit"],
        ),
        (["predict", "--target", "pixel", "--arch", "resnet50"], ["unknown network 'resnet50'"]),
        (["predict", "--target", "pixel", "--arch", "mobilenetv2", "--width", "9"], ["width"]),
        (["build", "--target", "pixel"], ["fitted model"]),
        (["build", "--target", "newboard"], ["unknown target 'newboard'", "--runner"]),
        (["build", "--target", "b", "--runner", "ssh"], ["--runner ssh needs --host"]),
        (["build", "--target", "b", "--runner", "adb", "--host", "x"], ["--host does not apply"]),
        (["build", "--target", "b", "--device", "x"], ["--device needs --runner"]),
        (
            ["build", "--target", "b", "--runner", "adb", "--device", "x", "--timeout", "0"],
            ["--timeout must be a positive"],
        ),
        (
            ["build", "--target", "b", "--runner", "local", "--timeout", "5"],
            ["--timeout does not apply to --runner local"],
        ),
        (["build", "--target", "host", "--runner", "ssh", "--host", "x"], ["local runner"]),
        (
            ["build", "--target", "b", "--space", "resnets", "--runner", "local"],
            ["unknown search space 'resnets'"],
        ),
        (["validate", "--target", "pixel"], ["fitted model"]),
        (["validate", "--target", "host", "--n", "0"], ["network count"]),
        (["measure", "--arch", "mobilenetv2", "--target", "pixel"], ["fitted model"]),
    ],
)
def test_bad_input_is_one_line_exit_2(
    capsys, home: Path, argv: list[str], needles: list[str]
) -> None:
    code, out, err = run(capsys, *argv)
    assert_one_line_error(code, err, *needles)
    assert not (home / "targets" / "newboard").exists() and not (home / "targets" / "b").exists()


def test_unreachable_device_is_one_line_and_leaves_nothing(capsys, home: Path) -> None:
    code, _, err = run(
        capsys,
        "build",
        "--target",
        "phone",
        "--runner",
        "ssh",
        "--host",
        "no-such-host.invalid",
        "--port",
        "2",
    )
    assert_one_line_error(code, err, "ssh to no-such-host.invalid failed")
    assert not target_path("phone").exists()


def test_corrupt_table_is_one_line(capsys, home: Path) -> None:
    load_target("host")  # creates the empty host table
    (target_path("host") / META_FILE).write_text(
        '{"format": "hwnas-latency-table", "format_version": 5}'
    )
    code, _, err = run(capsys, "predict", "--target", "host", "--arch", "mobilenetv2")
    assert_one_line_error(code, err, str(target_path("host") / META_FILE), "format version 5")
    (target_path("host") / META_FILE).write_text(
        '{"format": "hwnas-latency-table", "format_version": 1}'
    )
    (target_path("host") / TABLE_FILE).write_bytes(b"garbage")
    code, _, err = run(capsys, "build", "--target", "host")
    assert_one_line_error(code, err, str(target_path("host") / TABLE_FILE), "corrupt parquet")


def test_targets_lists_builtin_and_user_targets(capsys, home: Path) -> None:
    from hwnas.latency.registry import create_target

    create_target("rpi4", {"kind": "ssh", "host": "rpi.invalid"}, check=False)
    code, out, _ = run(capsys, "targets", "--json")
    rows = {r["name"]: r for r in json.loads(out)}
    assert code == 0 and {"host", "pixel", "pixel2", "pixel3", "rpi4"} <= set(rows)
    assert rows["pixel"]["validation"]["max_error"] == pytest.approx(0.089, abs=1e-3)
    assert rows["rpi4"]["runner"] == "ssh rpi.invalid" and rows["rpi4"]["entries"] == 0
    assert not target_path("host").exists()  # listing creates nothing
    code, out, _ = run(capsys, "targets")
    assert code == 0 and "rpi4" in out and "MAPE 3.7%" in out


def test_help(capsys) -> None:
    code, out, _ = run(capsys, "--help")
    assert code == 0 and "build" in out and "validate" in out


def test_subprocess_exit_code_and_single_line(home: Path) -> None:
    env = {**os.environ, "HWNAS_HOME": str(home)}
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "hwnas.latency.cli",
            "predict",
            "--target",
            "nowhere",
            "--arch",
            "mobilenetv2",
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        check=False,
    )
    assert done.returncode == EXIT_USAGE and done.stdout == ""
    assert done.stderr.strip().splitlines() == [
        "nas-latency predict: error: unknown target 'nowhere': known are "
        f"{', '.join(target_names())} "
        "(make one with: nas-latency build --target NAME --runner adb|ssh ...)"
    ]


# --- real measurements on this machine (small) ---------------------------------
REAL_RES = "32"


def test_build_predict_measure_validate_on_host(
    capsys, home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from hwnas.latency import commands, space_keys

    few = space_keys("mnasnet", 32)[:12]
    monkeypatch.setattr(commands, "space_keys", lambda space, res: few)
    code, out, err = run(
        capsys, "build", "--target", "host", "--space", "mnasnet", "--resolution", REAL_RES
    )
    assert code == 0, err
    assert "12 entries, 12 measured" in out
    code, out, err = run(
        capsys, "build", "--target", "host", "--space", "mnasnet", "--resolution", REAL_RES
    )
    assert code == 0 and "0 measured" in out  # resumable
    code, out, _ = run(
        capsys,
        "predict",
        "--target",
        "host",
        "--arch",
        "mobilenetv3_small",
        "--resolution",
        REAL_RES,
        "--json",
    )
    pred = json.loads(out)
    assert code == 0
    assert pred["layers"][-1] == {
        "part": "overhead",
        "key": "overhead",
        "ms": pred["overhead_ms"],
        "source": "measured",
    }
    assert pred["ms"] == pytest.approx(sum(r["ms"] for r in pred["layers"]))
    code, out, _ = run(
        capsys, "measure", "--arch", "mobilenetv3_small", "--resolution", REAL_RES, "--json"
    )
    meas = json.loads(out)
    assert code == 0 and meas["p10"] <= meas["median"] <= meas["p90"] and meas["n"] >= 50
    code, out, err = run(
        capsys,
        "validate",
        "--target",
        "host",
        "--n",
        "3",
        "--space",
        "mnasnet",
        "--resolution",
        REAL_RES,
        "--out",
        str(tmp_path / "val"),
        "--json",
    )
    assert code == 0, err
    val = json.loads(out)
    assert val["n"] == 3 and val["mape"] >= 0 and -1 <= val["spearman"] <= 1
    assert (tmp_path / "val" / "validation.png").stat().st_size > 0
    assert len((tmp_path / "val" / "validation.csv").read_text().splitlines()) == 4
    assert load_target("host").provenance["validation"]["n"] == 3
    code, out, _ = run(capsys, "targets", "--json")
    host = next(r for r in json.loads(out) if r["name"] == "host")
    assert host["validation"]["mape"] == pytest.approx(val["mape"])


def test_validate_prints_the_level_corrected_line(
    capsys, home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With a stored anchor panel, validate prints the level-corrected numbers on a line of
    their own and keeps them under level_corrected in --json (nothing measured here)."""
    from hwnas.latency import commands
    from hwnas.latency.validation import Validation, fidelity

    rows = _validation_rows([0.0, 0.1])
    raw = fidelity(rows.predicted_ms, rows.measured_ms)
    level = {**fidelity(rows.predicted_ms * 0.9, rows.measured_ms), "level": 0.9, "anchors": 3,
             "anchor_levels": {"a": 0.95, "b": 0.9, "c": 0.85}}
    result = Validation(rows, raw["mape"], raw["max_error"], raw["spearman"], raw, None, 6, 0,
                        level)
    monkeypatch.setattr(commands, "validate", lambda *a, **k: result)
    code, out, err = run(capsys, "validate", "--target", "host", "--n", "2",
                         "--out", str(tmp_path / "v"))
    assert code == 0, err
    text = " ".join(out.split())  # the console may wrap
    assert ("level-corrected (predictions x 0.900: median of 3 anchor networks now / at "
            f"calibration, each 0.850-0.950): {level['within']:.0%} within ±10%") in text
    code, out, err = run(capsys, "validate", "--target", "host", "--n", "2",
                         "--out", str(tmp_path / "v"), "--json")
    got = json.loads(out)
    assert got["level_corrected"]["level"] == 0.9 and got["mape"] == pytest.approx(raw["mape"])


@pytest.mark.parametrize(("spreads", "noisy"), [([0.02, 0.04], False), ([0.12, 0.30], True)])
def test_validate_says_how_noisy_the_measurement_was(
    capsys, home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, spreads, noisy
) -> None:
    """The median round spread is printed; above the ±10% band validate says errors of that
    size are the measurement's (nothing measured here)."""
    from hwnas.latency import commands
    from hwnas.latency.validation import Validation, fidelity

    rows = _validation_rows(spreads)
    raw = fidelity(rows.predicted_ms, rows.measured_ms)
    result = Validation(rows, raw["mape"], raw["max_error"], raw["spearman"], raw, None, 6, 0)
    monkeypatch.setattr(commands, "validate", lambda *a, **k: result)
    code, out, err = run(capsys, "validate", "--target", "host", "--n", "2",
                         "--out", str(tmp_path / "v"))
    assert code == 0, err
    text = " ".join(out.split())
    assert f"6 rounds differ by {sum(spreads) / 2:.1%}" in text
    assert ("busy or noisy" in text) is noisy


def _validation_rows(spreads: list[float]):
    """Two validated networks as ``validate`` tabulates them (predicted 0% and +10% off)."""
    import pandas as pd

    return pd.DataFrame({"arch": ["a", "b"], "predicted_ms": [1.0, 2.2],
                         "measured_ms": [1.0, 2.0], "p10_ms": [0.9, 1.9], "p90_ms": [1.1, 2.1],
                         "round_spread": spreads, "error": [0.0, 0.1]})

"""``nas-space``: output equals the library's numbers; bad input is one stderr line, exit 2."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from hwnas.space import REFERENCE_NAMES, Arch, reference
from hwnas.space.cli import main

SMALL = "stem_k3_s2_c16_nre:ds_r1_k3_s1_c16:ir_r2_k5_s2_e3_c24_se0.25_nhs:head_v2_c256_nre"


def run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    code = main(argv)
    out, err = capsys.readouterr()
    return code, out, err


def usage_error(argv: list[str], capsys: pytest.CaptureFixture[str]) -> str:
    code, out, err = run(argv, capsys)
    assert code == 2 and out == ""
    lines = err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("nas-space") and "error: " in lines[0]
    return lines[0]


def test_show_json_matches_the_library(capsys) -> None:
    code, out, err = run(["show", "mobilenetv3_large", "--json"], capsys)
    assert code == 0 and err == ""
    info = json.loads(out)
    assert info["totals"] == {"params": 5_483_032, "madds": 216_589_760}
    assert sum(r["params"] for r in info["rows"]) == info["totals"]["params"]
    assert sum(r["madds"] for r in info["rows"]) == info["totals"]["madds"]
    assert Arch.from_str(info["arch"]) == reference("mobilenetv3_large")
    assert [r["part"] for r in info["rows"]][:2] == ["stem", "s0.b0"] and info["rows"][-1]["part"] == "head"
    assert info["rows"][1]["in_shape"] == [16, 112, 112] and len(info["rows"]) == 2 + 15


def test_show_table_has_blocks_and_totals(capsys) -> None:
    code, out, _ = run(["show", "mnasnet_a1"], capsys)
    assert code == 0
    assert "3,887,038" in out and "311,579,072" in out
    assert "ir_r1_k5_s2_e3_c40_se0.25_sig_sein_nre" in out  # whole block strings, never folded
    assert "32x112x112" in out and reference("mnasnet_a1").to_str() in out


def test_show_width_resolution_and_classes(capsys) -> None:
    code, out, _ = run(["show", "mobilenetv3-large", "--width", "0.75", "--json"], capsys)
    assert code == 0 and json.loads(out)["totals"] == {"params": 3_993_528, "madds": 154_560_624}
    code, out, _ = run(["show", SMALL, "--resolution", "97", "--num-classes", "10", "--json"], capsys)
    arch = Arch.from_str(SMALL)
    info = json.loads(out)
    assert code == 0 and info["totals"] == {"params": arch.params(10), "madds": arch.madds(97, 10)}
    assert info["rows"][0]["in_shape"] == [3, 97, 97] and info["rows"][-1]["in_shape"] == [24, 25, 25]  # 97 -> 49 -> 49 -> 25


@pytest.mark.parametrize("argv, fragment", [
    (["show", "mobilenetv4"], "unknown network 'mobilenetv4': known are mobilenetv3_large"),
    (["show", SMALL.replace("_k5_", "_x5_")], "bad token 'x5'"),
    (["show", SMALL.replace("_k5_", "_k4_")], "got 4"),
    (["show", SMALL.replace("head_v2", "hd_v2")], "expected 'stem_"),
    (["show", SMALL, "--width", "0.5"], "--width 0.5 applies to reference names only"),
    (["show", "mnasnet_a1", "--width", "0"], "'0' is not a width multiplier in (0, 4]"),
    (["show", "mnasnet_a1", "--width", "abc"], "'abc' is not a width multiplier"),
    (["show", "mnasnet_a1", "--width", "nan"], "'nan' is not a width multiplier"),
    (["show", "mnasnet_a1", "--resolution", "-3"], "'-3' is not a valid resolution"),
    (["show", "mnasnet_a1", "--num-classes", "1.5"], "'1.5' is not a valid class count"),
    (["show"], "required: NAME_OR_STRING"),
    (["frobnicate"], "invalid choice: 'frobnicate'"),
    (["show", "mnasnet_a1", "--depth", "2"], "unrecognized arguments: --depth 2"),
    (["sample"], "required: --space"),
    (["sample", "--space", "mobilenetv3", "--seed", "-1"], "'-1' is not a seed"),
])
def test_bad_input_is_one_line(argv: list[str], fragment: str, capsys) -> None:
    assert fragment in usage_error(argv, capsys)


@pytest.mark.parametrize("sub, options", [
    ([], ["show", "sample", "list"]),
    (["show"], ["--width", "--resolution", "--num-classes", "--json", "NAME_OR_STRING", "mnasnet_small"]),
    (["sample"], ["--space", "--seed"]),
    (["list"], ["reference"]),
])
def test_help_is_complete(sub: list[str], options: list[str], capsys) -> None:
    code, out, _ = run([*sub, "--help"], capsys)
    assert code == 0
    for opt in options:
        assert opt in out


def test_real_process_exit_code_and_single_stderr_line() -> None:
    proc = subprocess.run([sys.executable, "-m", "hwnas.space.cli", "show", "nosuchnet"],
                          capture_output=True, text=True, check=False)
    assert proc.returncode == 2 and proc.stdout == ""
    assert len(proc.stderr.splitlines()) == 1 and "Traceback" not in proc.stderr
    assert "'nosuchnet'" in proc.stderr


def test_console_script() -> None:
    script = Path(sys.executable).with_name("nas-space")
    if not script.exists():
        pytest.skip(f"console script not installed next to {sys.executable}")
    proc = subprocess.run([str(script), "show", "spnasnet", "--json"], capture_output=True, text=True, check=False)
    assert proc.returncode == 0 and json.loads(proc.stdout)["totals"]["params"] == 4_421_616
    bad = subprocess.run([str(script), "show", "spnasnet", "--width", "9"], capture_output=True, text=True,
                         check=False)
    assert bad.returncode == 2 and len(bad.stderr.splitlines()) == 1 and "'9'" in bad.stderr


def test_list_shows_references_with_their_sizes(capsys) -> None:
    code, out, _ = run(["list"], capsys)
    assert code == 0
    for name in REFERENCE_NAMES:
        assert f"{name} " in out and f"{reference(name).params():,}" in out


def test_sample_prints_a_seeded_arch_string(capsys) -> None:
    from hwnas.space import searchspace
    code, out, err = run(["sample", "--space", "mobilenetv3", "--seed", "7"], capsys)
    assert code == 0 and err == ""
    arch = Arch.from_str(out.strip())
    expected = searchspace.get_space("mobilenetv3").sample_random(np.random.default_rng(7))
    assert arch == expected and out == expected.to_str() + "\n"
    seen = set()
    for seed in range(5):
        assert main(["sample", "--space", "mnasnet", "--seed", str(seed)]) == 0
        seen.add(capsys.readouterr().out)
    assert len(seen) > 1
    line = usage_error(["sample", "--space", "resnet"], capsys)
    assert "unknown search space 'resnet': known are " in line
    assert all(name in line for name in searchspace.SPACE_NAMES)

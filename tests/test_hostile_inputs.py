"""Hostile and broken input, through the real CLI entry points (issue 15's sweep).

Every case runs in a fresh temporary folder with a private ``$HWNAS_HOME`` and
must end with exit code 2, exactly one line on stderr that names the bad value
(cut to a short length), no traceback, and the folder as it was. The cases that
once hung or allocated gigabytes (a YAML alias bomb, huge sizes) run in a child
process under a memory limit, with a timeout as a guard against a hang.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
import yaml

REPO = Path(__file__).resolve().parents[1]
TINY_YAML = REPO / "examples" / "netadapt_tiny.yaml"
MEMORY_CAP = 4 << 30  # bytes of address space for a child; a blow-up hits it long before the guard
GUARD_S = 120  # a hang guard only: the cases finish in seconds
SHOWN = 300  # an error line never repeats a huge value


def _listing(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*"))


@pytest.fixture
def box(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    home = tmp_path / "home"
    work = tmp_path / "work"
    home.mkdir()
    work.mkdir()
    monkeypatch.setenv("HWNAS_HOME", str(home))
    monkeypatch.chdir(work)
    return work


def _tiny_yaml(work: Path, **changes: object) -> Path:
    raw = yaml.safe_load(TINY_YAML.read_text())
    raw["out"] = "out"
    for k, v in changes.items():
        if isinstance(v, dict) and isinstance(raw.get(k), dict):
            raw[k] = {**raw[k], **v}
        else:
            raw[k] = v
    p = work / "run.yaml"
    p.write_text(yaml.safe_dump(raw, sort_keys=False))
    return p


def _main(tool: str) -> Callable[[list[str]], int]:
    if tool == "nas-search":
        from hwnas.search.cli import main
    elif tool == "netadapt":
        from hwnas.netadapt.cli import main
    elif tool == "nas-latency":
        from hwnas.latency.cli import main
    else:
        from hwnas.space.cli import main
    return main


def _refused(capsys: pytest.CaptureFixture[str], box: Path, tool: str, argv: list[str],
             names: str) -> None:
    before = _listing(box)
    code = _main(tool)(argv)
    err = capsys.readouterr().err
    assert code == 2, err
    assert len(err.strip().splitlines()) == 1, err
    assert "Traceback" not in err and len(err) < SHOWN + len(names) + 200, err
    assert names in err, err
    assert _listing(box) == before


SEARCH = ["--target", "pixel", "--lat", "50ms", "--trials", "2", "--epochs", "1",
          "--train-subset", "500", "--val-size", "200", "--quiet"]


# ----------------------------------------------------------------- in process ---
def test_dashed_latency_value(capsys, box):
    _refused(capsys, box, "nas-search", ["--target", "pixel", "--lat", "-5ms", "--quiet"], "-5ms")


def test_dashed_budget_value(capsys, box):
    _refused(capsys, box, "nas-latency",
             ["predict", "--target", "pixel", "--arch", "mobilenetv3_small", "--budget", "-5ms"],
             "-5ms")


def test_negative_seed_names_flag_and_value(capsys, box):
    _refused(capsys, box, "nas-search", [*SEARCH, "--seed", "-1"], "-1")
    # and the flag: argparse or the config names it
    code = _main("nas-search")([*SEARCH, "--seed", "-1"])
    assert code == 2 and "seed" in capsys.readouterr().err


def test_long_arch_string_is_cut(capsys, box):
    arch = "stem_k3_s2_c16_nre:" + "x" * 10_000 + ":head_v2_c1280_nre"
    _refused(capsys, box, "nas-space", ["show", arch], "xxxx")


def test_pixel_far_outside_its_data(capsys, box):
    _refused(capsys, box, "nas-latency",
             ["predict", "--target", "pixel", "--arch", "mobilenetv3_small", "--resolution",
              "100000"], "100000")


def test_out_is_an_existing_file(capsys, box):
    (box / "taken").write_text("mine")
    _refused(capsys, box, "nas-search", [*SEARCH, "--out", "taken"], "taken")


def test_one_class_image_folder(capsys, box):
    from PIL import Image

    data = box / "data"
    for i in range(8):
        (data / "cats").mkdir(parents=True, exist_ok=True)
        Image.new("RGB", (8, 8), (i, i, i)).save(data / "cats" / f"{i}.png")
    _refused(capsys, box, "nas-search",
             [*SEARCH[:4], "--data", str(data), "--val-size", "64", "--quiet", "--trials", "1"],
             "class")


def test_binary_run_yaml(capsys, box):
    (box / "run.yaml").write_bytes(b"\xf7\xfa\x00garbage\xff")
    _refused(capsys, box, "netadapt", ["refine", "run.yaml"], "run.yaml")


def test_duplicate_goal_key(capsys, box):
    p = _tiny_yaml(box)
    p.write_text(p.read_text() + "goal: 0.5x\n")
    _refused(capsys, box, "netadapt", ["refine", "run.yaml"], "goal")


def test_deeply_nested_yaml(capsys, box):
    p = _tiny_yaml(box)
    p.write_text(p.read_text().replace("input:\n", "extra: " + "[" * 5000 + "]" * 5000 + "\ninput:\n", 1))
    _refused(capsys, box, "netadapt", ["refine", "run.yaml"], "run.yaml")


def test_empty_dataset_folder(capsys, box):
    (box / "empty").mkdir()
    _tiny_yaml(box, dataset={"name": str(box / "empty")})
    _refused(capsys, box, "netadapt", ["refine", "run.yaml"], "empty")
    # the hint names run.yaml's field, not a flag netadapt does not have
    _main("netadapt")(["refine", "run.yaml"])
    assert "--data" not in capsys.readouterr().err


def _weights_case(box: Path, payload: Callable[[Path], None]) -> None:
    w = box / "w.pt"
    payload(w)
    raw = yaml.safe_load(TINY_YAML.read_text())
    _tiny_yaml(box, input={"arch": raw["input"]["arch"], "weights": "w.pt"})


def test_empty_weights_file(capsys, box):
    _weights_case(box, lambda w: w.write_bytes(b""))
    _refused(capsys, box, "netadapt", ["refine", "run.yaml"], "w.pt")


def test_pickled_object_as_weights(capsys, box):
    class Evil:
        def __reduce__(self):
            return (os.system, ("echo pwned > pwned.txt",))

    _weights_case(box, lambda w: torch.save({"x": Evil()}, w))
    _refused(capsys, box, "netadapt", ["refine", "run.yaml"], "w.pt")
    assert not (box / "pwned.txt").exists()


def test_nan_weights(capsys, box):
    from hwnas.space import Arch, build

    raw = yaml.safe_load(TINY_YAML.read_text())
    model = build(Arch.from_str(raw["input"]["arch"]), num_classes=10)
    state = {k: (torch.full_like(v, float("nan")) if v.is_floating_point() else v)
             for k, v in model.state_dict().items()}
    _weights_case(box, lambda w: torch.save(state, w))
    _refused(capsys, box, "netadapt", ["refine", "run.yaml"], "w.pt")


def test_corrupt_study_db(capsys, box):
    run = box / "run"
    run.mkdir()
    from hwnas.search.config import parse_config

    cfg = parse_config({"target": "pixel", "latency": "50ms", "out": str(run)})
    (run / "config.yaml").write_text(cfg.to_yaml())
    (run / "study.db").write_bytes(os.urandom(4096))
    _refused(capsys, box, "nas-search", ["--out", str(run), "--resume", "--quiet"], "study.db")


# A read-only run folder: tests/search (root ignores chmod, so it fakes os.access there).


# ------------------------------------------------------- in a capped child ---
def _capped(box: Path, tool_main: str, argv: list[str]) -> subprocess.CompletedProcess[str]:
    code = textwrap.dedent(f"""
        import resource, sys
        resource.setrlimit(resource.RLIMIT_AS, ({MEMORY_CAP}, {MEMORY_CAP}))
        from {tool_main} import main
        sys.exit(main({argv!r}))
    """)
    env = {**os.environ, "PYTHONPATH": ""}
    return subprocess.run([sys.executable, "-c", code], cwd=box, env=env, capture_output=True,
                          text=True, timeout=GUARD_S)


def _capped_refused(box: Path, tool_main: str, argv: list[str], names: str) -> None:
    before = _listing(box)
    p = _capped(box, tool_main, argv)
    assert p.returncode == 2, p.stderr[-2000:]
    assert len(p.stderr.strip().splitlines()) == 1 and names in p.stderr, p.stderr[-2000:]
    assert _listing(box) == before


def test_yaml_alias_bomb(box):
    anchors = ["a0: &a0 [x, x, x, x, x, x, x, x, x]"]
    anchors += [f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 9)}]" for i in range(1, 9)]
    p = _tiny_yaml(box)
    p.write_text("\n".join(anchors) + "\n" + p.read_text())
    _capped_refused(box, "hwnas.netadapt.cli", ["refine", "run.yaml"], "run.yaml")


def test_huge_resolution_on_host(box):
    _capped_refused(box, "hwnas.latency.cli",
                    ["predict", "--target", "host", "--arch", "mobilenetv3_small", "--resolution",
                     "100000"], "100000")


def test_huge_channels_on_host(box):
    arch = "stem_k3_s2_c16_nre:ds_r1_k3_s1_c999999_nre:head_v2_c1280_nre"
    _capped_refused(box, "hwnas.latency.cli", ["predict", "--target", "host", "--arch", arch],
                    "999999")

"""nas-supernet: train prints id and folder, info lists, eval scores; bad input is one line, exit 2."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from hwnas.supernet.cli import main
from hwnas.supernet.store import CHECKPOINT, WEIGHTS


def _train_args(data: Path) -> list[str]:
    return ["train", "--space", "mobilenetv3", "--data", str(data), "--epochs", "1",
            "--train-subset", "128", "--val-size", "96", "--proxy-resolution", "16", "--seed", "0", "--no-progress"]


def test_train_info_eval(tiny_space, toy_data: Path, home: Path, capsys: pytest.CaptureFixture) -> None:
    assert main(_train_args(toy_data)) == 0
    sid, folder = capsys.readouterr().out.split()
    assert Path(folder) == home / "supernets" / sid and (Path(folder) / WEIGHTS).exists()
    assert main(["info"]) == 0
    assert sid in capsys.readouterr().out
    assert main(["info", sid]) == 0
    assert json.loads(capsys.readouterr().out)["status"] == "complete"
    arch = tiny_space.smallest().to_str()
    assert main(["eval", sid, "--arch", arch, "--eval-images", "50"]) == 0
    assert 0.0 <= float(capsys.readouterr().out) <= 1.0


def _one_line_error(capsys: pytest.CaptureFixture, prog: str, words: str) -> None:
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith(f"nas-supernet {prog}: error: ") and words in err, err


def test_bad_input_is_one_line_and_writes_nothing(tiny_space, toy_data: Path, home: Path,
                                                  capsys: pytest.CaptureFixture) -> None:
    assert main(["train", "--space", "nope", "--data", str(toy_data), "--no-progress"]) == 2
    _one_line_error(capsys, "train", "supernet space must be one of mobilenetv3, mnasnet, got 'nope'")
    assert main(["train", "--data", str(toy_data / "missing"), "--val-size", "96", "--no-progress"]) == 2
    capsys.readouterr()
    assert main(["eval", "no-such-id", "--arch", "mobilenetv3_large"]) == 2
    _one_line_error(capsys, "eval", "no supernet 'no-such-id'")
    assert main(["info", "no-such-id"]) == 2
    _one_line_error(capsys, "info", "no supernet 'no-such-id'")
    assert not home.exists()
    assert main(_train_args(toy_data)) == 0
    sid = capsys.readouterr().out.split()[0]
    assert main(["eval", sid, "--arch", "mnasnet_a1"]) == 2
    _one_line_error(capsys, "eval", "does not fit the mobilenetv3 supernet")
    weights = home / "supernets" / sid / WEIGHTS
    weights.write_bytes(b"\x00garbage")
    assert main(["eval", sid, "--arch", "mobilenetv3_large"]) == 2
    _one_line_error(capsys, "eval", "corrupt supernet checkpoint")
    assert not (home / "supernets" / sid / CHECKPOINT).exists()

"""Training is cached by settings, resumable after kill -9, and bad files are one-line errors."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
from supernet_helpers import tiny_settings

from hwnas.common.errors import HwnasError
from hwnas.supernet import (
    SupernetConfig,
    find_or_train,
    find_supernet,
    list_supernets,
    load_supernet,
    supernet_id,
    train_supernet,
)
from hwnas.supernet.store import CHECKPOINT, PROVENANCE, WEIGHTS

HERE = Path(__file__).resolve().parent


def test_id_is_deterministic_and_changes_with_any_setting(toy_data: Path) -> None:
    a = SupernetConfig(**tiny_settings(toy_data))
    assert supernet_id(a) == supernet_id(SupernetConfig(**tiny_settings(toy_data)))
    assert supernet_id(a).startswith("mobilenetv3-toy-r16-spos-e2-s0-")
    for change in ({"seed": 1}, {"epochs": 3}, {"lr": 0.1}, {"recipe": "sandwich"}, {"train_subset": 200}):
        assert supernet_id(SupernetConfig(**tiny_settings(toy_data, **change))) != supernet_id(a)


def test_train_once_then_reuse(tiny_space, toy_data: Path, home: Path) -> None:
    settings = tiny_settings(toy_data)
    sn = find_or_train(**settings, progress=False)
    prov = json.loads((sn.folder / PROVENANCE).read_text())
    assert prov["status"] == "complete" and prov["epochs_done"] == 2 and len(prov["history"]) == 2
    assert prov["settings"]["train_subset"] == 256 and prov["data"]["train_images"] == 256
    assert {"torch", "hwnas", "python"} <= set(prov["versions"]) and prov["machine"]["device"] == "cpu"
    assert not (sn.folder / CHECKPOINT).exists() and (sn.folder / WEIGHTS).exists()
    stamp = (sn.folder / WEIGHTS).stat().st_mtime_ns
    calls = []
    folder = train_supernet(SupernetConfig(**settings), progress=False,
                            on_epoch=lambda e, r: calls.append(e))
    assert folder == sn.folder and calls == [] and (sn.folder / WEIGHTS).stat().st_mtime_ns == stamp
    assert [p["id"] for p in list_supernets()] == [sn.id]
    assert find_supernet("mobilenetv3", str(toy_data), 16, 0) == sn.id
    assert find_supernet("mobilenetv3", str(toy_data), 16, 1) is None
    again = load_supernet(sn.id)
    for k, v in sn.net.state_dict().items():
        assert torch.equal(v, again.net.state_dict()[k]), k


_KILLER = """
import os, signal, sys
import torch
torch.set_num_threads(1)  # as the test process below: the same reduction order, the same weights
sys.path.insert(0, {here!r})
import supernet_helpers as h
h.use_tiny_space()
from hwnas.supernet import SupernetConfig, train_supernet
config = SupernetConfig(**h.tiny_settings({data!r}))
train_supernet(config, progress=False,
               on_epoch=lambda e, r: e == 0 and os.kill(os.getpid(), signal.SIGKILL))
"""


@pytest.fixture
def one_thread():
    """Weights equal to 1e-6 need one reduction order: the child and this process at 1 thread."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def test_resume_after_kill_9_matches_an_uninterrupted_run(tiny_space, toy_data: Path, home: Path,
                                                          tmp_path: Path, one_thread) -> None:
    settings = tiny_settings(toy_data)
    code = textwrap.dedent(_KILLER.format(here=str(HERE), data=str(toy_data)))
    proc = subprocess.run([sys.executable, "-c", code], env={**os.environ}, capture_output=True,
                          timeout=120)
    assert proc.returncode == -9, proc.stderr.decode()[-2000:]
    folder = home / "supernets" / supernet_id(SupernetConfig(**settings))
    prov = json.loads((folder / PROVENANCE).read_text())
    assert prov["status"] == "training" and prov["epochs_done"] == 1 and (folder / CHECKPOINT).exists()
    with pytest.raises(HwnasError, match="not fully trained .1 of 2 epochs"):
        load_supernet(folder.name)
    resumed = find_or_train(**settings, progress=False)
    assert [h["epoch"] for h in resumed.provenance["history"]] == [0, 1]
    os.environ["HWNAS_HOME"] = str(tmp_path / "other")
    try:
        fresh = find_or_train(**settings, progress=False)
    finally:
        os.environ["HWNAS_HOME"] = str(home)
    for k, v in fresh.net.state_dict().items():
        assert torch.allclose(v, resumed.net.state_dict()[k], atol=1e-6), k


def test_corrupt_checkpoint_is_one_line_and_nothing_is_written(tiny_space, toy_data: Path,
                                                               home: Path) -> None:
    config = SupernetConfig(**tiny_settings(toy_data))
    with pytest.raises(KeyboardInterrupt):  # an interrupted first epoch leaves a checkpoint
        train_supernet(config, progress=False, on_epoch=lambda e, r: (_ for _ in ()).throw(KeyboardInterrupt))
    folder = home / "supernets" / supernet_id(config)
    (folder / CHECKPOINT).write_bytes(b"not a torch file")
    before = {p.name: p.stat().st_mtime_ns for p in folder.iterdir()}
    with pytest.raises(HwnasError, match="corrupt supernet checkpoint") as e:
        train_supernet(config, progress=False)
    assert "\n" not in str(e.value)
    assert {p.name: p.stat().st_mtime_ns for p in folder.iterdir()} == before


def test_unknown_id_and_bad_settings(home: Path) -> None:
    with pytest.raises(HwnasError, match="no supernet 'nope'"):
        load_supernet("nope")
    with pytest.raises(HwnasError, match="supernet space must be one of mobilenetv3, mnasnet, got 'x'"):
        SupernetConfig(space="x")
    with pytest.raises(HwnasError, match="recipe must be one of spos, sandwich"):
        SupernetConfig(recipe="ofa")
    assert not home.exists()


def test_sandwich_recipe_trains(tiny_space, toy_data: Path, home: Path) -> None:
    sn = find_or_train(**tiny_settings(toy_data, recipe="sandwich", epochs=1), progress=False)
    assert sn.provenance["settings"]["recipe"] == "sandwich"
    assert 0.0 <= sn.estimate(tiny_space.smallest()) <= 1.0

"""Storage checks before anything is written: a damaged study.db on --resume,
--ray-address without a storage every node reaches."""

from __future__ import annotations

import os
from pathlib import Path

import optuna
import pytest

from hwnas.search.cli import main
from hwnas.search.config import parse_config
from hwnas.search.storage import StorageError, check_shared_storage, check_sqlite_study


def _run_with_study(tmp_path: Path) -> Path:
    run = tmp_path / "run"
    run.mkdir()
    c = parse_config({"target": "pixel", "latency": "50ms", "out": str(run)})
    (run / "config.yaml").write_text(c.to_yaml())
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(study_name="run", storage=f"sqlite:///{run / 'study.db'}")
    study.enqueue_trial({"x": 1.0})
    return run


def test_a_sound_study_passes(tmp_path: Path) -> None:
    run = _run_with_study(tmp_path)
    check_sqlite_study(run / "study.db", "run")
    check_sqlite_study(run / "absent.db", "run")  # not there yet: nothing to check
    with pytest.raises(StorageError, match="holds no study 'other'"):
        check_sqlite_study(run / "study.db", "other")


@pytest.mark.parametrize("damage", ["truncated", "random", "empty"])
def test_damaged_study_db_on_resume_is_one_line(tmp_path: Path, capsys, damage: str) -> None:
    run = _run_with_study(tmp_path)
    db = run / "study.db"
    data = db.read_bytes()
    db.write_bytes({"truncated": data[: len(data) // 3], "random": os.urandom(len(data)),
                    "empty": b""}[damage])
    before = {p.name: p.read_bytes() for p in run.iterdir()}
    code = main(["--out", str(run), "--resume", "--quiet"])
    err = capsys.readouterr().err
    assert code == 2 and len(err.splitlines()) == 1 and "Traceback" not in err, err
    assert "study.db" in err and "start a new --out" in err
    assert {p.name: p.read_bytes() for p in run.iterdir()} == before


def test_ray_address_needs_a_shared_storage() -> None:
    c = parse_config({"target": "pixel", "latency": "50ms", "ray_address": "10.0.0.1:6379"})
    with pytest.raises(StorageError, match="needs a --storage every node can reach"):
        check_shared_storage(c)
    # a server storage is reachable by construction; nothing to prove
    check_shared_storage(c.model_copy(update={"storage": "postgresql://u@head/db"}))

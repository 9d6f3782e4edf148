"""Accuracy estimators: ``--estimator supernet`` end to end on a tiny supernet, the
cache reused for another budget, retraining the winner, and the registry.

The tiny frame and toy data are the supernet tests' (``supernet_helpers``): a
supernet at 16 px on a few hundred images trains in seconds.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from supernet_helpers import TINY_RESOLUTION, make_toy_data, tiny_space_for

from hwnas.search.config import parse_config
from hwnas.search.estimators import (
    ESTIMATOR_NAMES,
    ESTIMATOR_REGISTRY,
    SupernetEstimator,
    TrainEstimator,
    make_estimator,
)
from hwnas.search.run import run_search
from hwnas.space import Arch, build


@pytest.fixture
def tiny_space(monkeypatch: pytest.MonkeyPatch):  # noqa: ANN201
    yield from tiny_space_for(monkeypatch)


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    h = tmp_path / "home"
    monkeypatch.setenv("HWNAS_HOME", str(h))
    return h


def _config(data: Path, out: Path, **kw):  # noqa: ANN202
    return parse_config({"target": "pixel", "latency": "50ms", "data": str(data),
                         "proxy_resolution": TINY_RESOLUTION, "train_subset": 256, "val_size": 96,
                         "batch_size": 64, "trials": 4, "timeout_s": None, "seed": 0,
                         "sampler": "random", "estimator": "supernet", "supernet_epochs": 1,
                         "out": str(out), **kw})


def test_registry_makes_each_estimator() -> None:
    assert ESTIMATOR_NAMES == ("train", "supernet")
    assert isinstance(make_estimator("train"), TrainEstimator)
    assert isinstance(make_estimator("supernet"), SupernetEstimator)
    assert [k.needs_supernet for k in ESTIMATOR_REGISTRY.values()] == [False, True]
    with pytest.raises(ValueError, match="unknown estimator 'oracle'; known: train, supernet"):
        make_estimator("oracle")


def test_supernet_search_end_to_end(tiny_space, home: Path, tmp_path: Path) -> None:
    from hwnas.supernet import load_supernet

    data = make_toy_data(tmp_path / "toy")
    notes: list[str] = []
    run_dir = run_search(_config(data, tmp_path / "run", retrain_epochs=1), notify=notes.append)
    assert any(n.startswith("training supernet ") for n in notes), notes
    # at 16 px the tiny frame's smallest map is 4x4, where 3, 5 and 7 all differ: no warning
    assert not [n for n in notes if n.startswith("warning: ")], notes
    for f in ("best.json", "best.pt", "best.onnx", "acc_vs_latency.png", "family.json",
              "retrain.json", "retrained.pt"):
        assert (run_dir / f).is_file(), f
    best = json.loads((run_dir / "best.json").read_text())
    saved = yaml_config(run_dir)
    assert best["estimator"] == saved["estimator"] == "supernet"
    assert best["supernet"] == saved["supernet"] and best["weights"] == "inherited"
    # best.pt: the supernet's inherited weights, BN recalibrated as the estimate was
    sn = load_supernet(best["supernet"], device="cpu")
    arch = Arch.from_str(best["arch"])
    state = torch.load(run_dir / "best.pt", weights_only=True)
    expected = sn.recalibrated(arch).state_dict()
    assert state.keys() == expected.keys()
    assert all(torch.equal(state[k], expected[k].cpu()) for k in state)
    build(arch, num_classes=state["head.classifier.weight"].shape[0]).load_state_dict(state)
    assert best["accuracy"] == pytest.approx(sn.estimate(arch))
    # both accuracies recorded
    assert best["estimated_accuracy"] == best["accuracy"]
    assert 0.0 <= best["retrained_accuracy"] <= 1.0 and best["retrain_epochs"] == 1

    # Another budget on the same cache: no supernet training, the same supernet id.
    notes.clear()
    again = run_search(_config(data, tmp_path / "run2", latency="30ms", trials=2),
                       notify=notes.append)
    assert not any(n.startswith("training supernet") for n in notes), notes
    assert any("cached" in n for n in notes)
    assert yaml_config(again)["supernet"] == saved["supernet"]


def yaml_config(run_dir: Path) -> dict:
    import yaml

    return yaml.safe_load((run_dir / "config.yaml").read_text())

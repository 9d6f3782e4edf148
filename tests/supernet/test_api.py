"""Scoring: BN recalibration touches only BN statistics; estimates are fixed and in [0, 1]."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from supernet_helpers import TINY_SKELETON, make_toy_data, tiny_settings
from torch import nn

from hwnas.space import searchspace
from hwnas.space.skeletons import SKELETONS
from hwnas.supernet import Supernet, find_or_train


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory):
    """One tiny supernet for the module (the tiny frame swapped in meanwhile)."""
    root = tmp_path_factory.mktemp("api")
    with pytest.MonkeyPatch.context() as mp:
        mp.setitem(SKELETONS, "mobilenetv3", TINY_SKELETON)
        mp.setenv("HWNAS_HOME", str(root / "home"))
        searchspace._space.cache_clear()
        searchspace._smallest.cache_clear()
        data = make_toy_data(root / "toy")
        sn = find_or_train(**tiny_settings(data, epochs=1), progress=False)
        yield searchspace.get_space("mobilenetv3"), sn
    searchspace._space.cache_clear()
    searchspace._smallest.cache_clear()


def test_recalibration_changes_only_bn_statistics(trained: tuple) -> None:
    tiny_space, sn = trained
    arch = tiny_space.sample_random(np.random.default_rng(3))
    supernet_before = {k: v.clone() for k, v in sn.net.state_dict().items()}
    raw = sn.extract(arch).state_dict()
    recal = sn.recalibrated(arch).state_dict()
    assert raw.keys() == recal.keys()
    stats = {k for k in raw if k.endswith(("running_mean", "running_var", "num_batches_tracked"))}
    assert stats and all(torch.equal(raw[k], recal[k]) for k in raw if k not in stats)
    assert any(not torch.equal(raw[k], recal[k]) for k in stats if k.endswith("running_mean"))
    bn_layers = [m for m in sn.recalibrated(arch).modules() if isinstance(m, nn.BatchNorm2d)]
    assert all(m.momentum == 0.1 for m in bn_layers)  # the momentum is put back
    for k, v in sn.net.state_dict().items():  # the shared weights are untouched
        assert torch.equal(v, supernet_before[k]), k


def test_estimate_is_repeatable_and_uses_fixed_sets(trained: tuple) -> None:
    tiny_space, sn = trained
    assert isinstance(sn, Supernet)
    rng = np.random.default_rng(0)
    archs = [tiny_space.sample_random(rng) for _ in range(3)]
    first = sn.estimate_many(archs)
    assert all(0.0 <= a <= 1.0 for a in first)
    assert sn.estimate_many(archs) == first
    calib, _, val_x, _ = sn._fixed_sets()
    assert len(calib) == min(sn.calib_images, 256) and len(val_x) == min(sn.eval_images, 96)


def test_finetuned_estimate_trains_a_copy_and_scores_the_fixed_images(trained: tuple) -> None:
    tiny_space, sn = trained
    arch = tiny_space.sample_random(np.random.default_rng(5))
    before = {k: v.clone() for k, v in sn.net.state_dict().items()}
    tuned = Supernet(sn.folder, sn.net, sn.config, sn.provenance, finetune_steps=3)
    tuned._data = sn.data
    acc = tuned.estimate(arch)
    assert 0.0 <= acc <= 1.0 and tuned.estimate(arch) == acc  # same steps, same seed
    model = tuned.scored_model(arch)
    _, _, val_x, val_y = tuned._fixed_sets()
    from hwnas.proxy.train import evaluate

    assert evaluate(model, val_x, val_y) == pytest.approx(acc)  # scored on the fixed images
    inherited = sn.extract(arch).state_dict()
    assert any(not torch.equal(v, inherited[k]) for k, v in model.state_dict().items()
               if k.endswith("weight"))  # it did train
    for k, v in sn.net.state_dict().items():  # the shared weights are untouched
        assert torch.equal(v, before[k]), k


@pytest.mark.parametrize("steps", [-1, 1.5, True])
def test_finetune_steps_must_be_a_count(trained: tuple, steps: object) -> None:
    from hwnas.common.errors import HwnasError

    _, sn = trained
    with pytest.raises(HwnasError, match="finetune_steps must be an int >= 0"):
        Supernet(sn.folder, sn.net, sn.config, sn.provenance, finetune_steps=steps)

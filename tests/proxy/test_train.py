"""Proxy trainer: learning, determinism, reporting, pruning, divergence, step cap, fine-tuning."""

from __future__ import annotations

import math

import optuna
import pytest
import torch
from torch import nn

from hwnas.proxy.data import Dataset
from hwnas.proxy.train import (
    ONECYCLE_PCT_START,
    NonFiniteLoss,
    TrainConfig,
    _scheduler,
    evaluate,
    recalibrate_bn,
    train,
)
from hwnas.space import Arch, build

TINY = Arch.from_str("stem_k3_s2_c8_nre:ir_r1_k3_s2_e3_c16_nre:"
                     "ir_r1_k3_s2_e3_c24_se0.25_nhs:head_v2_c64_nre")
CLASSES = 4
RES = 16


def synthetic(n_train: int = 512, n_val: int = 128, seed: int = 0) -> Dataset:
    """Grey noise with a bright horizontal band whose row gives the class (easy)."""
    g = torch.Generator().manual_seed(seed)

    def split(n: int) -> tuple[torch.Tensor, torch.Tensor]:
        y = torch.randint(0, CLASSES, (n,), generator=g)
        x = torch.randn(n, 1, RES, RES, generator=g) * 0.5
        for i, c in enumerate(y.tolist()):
            x[i, 0, 4 * c:4 * c + 3] += 2.0
        return x.expand(-1, 3, -1, -1), y

    tx, ty = split(n_train)
    vx, vy = split(n_val)
    return Dataset("toy", "synthetic", CLASSES, RES, tx, ty, vx, vy)


CPU = {"device": "cpu", "resolution": RES, "batch_size": 64}


@pytest.fixture(scope="module")
def data() -> Dataset:
    return synthetic()


def test_learns_easy_task(data: Dataset) -> None:
    res = train(TINY, data, TrainConfig(epochs=2, lr=0.1, **CPU))
    assert len(res.val_history) == 2 and len(res.train_loss) == 2
    assert res.train_loss[1] < res.train_loss[0] < math.log(CLASSES) + 0.2
    assert res.val_accuracy > 0.6  # chance is 0.25
    assert res.val_accuracy == res.val_history[-1] and res.steps == 2 * (512 // 64)
    assert isinstance(res.model, nn.Module) and not res.model.training
    assert next(res.model.parameters()).device.type == "cpu"
    assert res.model.head.classifier.out_features == CLASSES
    assert evaluate(res.model, data.val_x, data.val_y) == pytest.approx(res.val_accuracy)


def test_same_seed_same_result(data: Dataset) -> None:
    cfg = TrainConfig(epochs=1, max_steps=4, **CPU)
    a, b = train(TINY, data, cfg), train(TINY, data, cfg)
    assert a.val_history == b.val_history and a.train_loss == b.train_loss
    for (k, va), vb in zip(a.model.state_dict().items(), b.model.state_dict().values(),
                           strict=True):
        assert torch.equal(va, vb), k
    c = train(TINY, data, TrainConfig(epochs=1, max_steps=4, seed=1, **CPU))
    assert not torch.equal(a.model.stem.conv.weight, c.model.stem.conv.weight)


def test_report_each_epoch_and_pruning(data: Dataset) -> None:
    calls: list[tuple[int, float]] = []
    res = train(TINY, data, TrainConfig(epochs=3, max_steps=20, **CPU),
                report=lambda e, acc: calls.append((e, acc)))
    assert [e for e, _ in calls] == [0, 1, 2]
    assert [acc for _, acc in calls] == res.val_history

    seen: list[int] = []

    def prune(epoch: int, acc: float) -> None:
        seen.append(epoch)
        if epoch == 1:
            raise optuna.TrialPruned(f"pruned at {epoch}")

    with pytest.raises(optuna.TrialPruned):
        train(TINY, data, TrainConfig(epochs=4, max_steps=40, **CPU), report=prune)
    assert seen == [0, 1]


def test_divergence_raises(data: Dataset) -> None:
    with pytest.raises(NonFiniteLoss, match="lr|learning rate"):
        train(TINY, data, TrainConfig(epochs=1, lr=1e30, warmup=0.0, **CPU))


def test_max_steps_caps_optimizer_steps(data: Dataset) -> None:
    torch.manual_seed(0)
    model = build(TINY, num_classes=CLASSES)
    steps: list[int] = []  # one gradient per optimizer step
    model.stem.conv.weight.register_hook(lambda g: steps.append(1))
    res = train(model, data, TrainConfig(epochs=5, max_steps=3, **CPU))
    assert len(steps) == 3 and res.steps == 3
    assert len(res.val_history) == 1  # stopped inside the first epoch, evaluated once


def test_fine_tunes_given_module_in_place(data: Dataset) -> None:
    base = train(TINY, data, TrainConfig(epochs=1, max_steps=6, **CPU)).model
    before = {k: v.clone() for k, v in base.state_dict().items()}
    res = train(base, data, TrainConfig(epochs=1, max_steps=5, lr=0.02, **CPU))
    assert res.model is base and not base.training
    assert not torch.equal(before["stem.conv.weight"], base.stem.conv.weight)
    assert base.head.classifier.out_features == CLASSES
    assert res.val_accuracy > 0.25


def test_onecycle_schedule(data: Dataset) -> None:
    res = train(TINY, data, TrainConfig(epochs=1, schedule="onecycle", lr=0.1, **CPU))
    assert math.isfinite(res.train_loss[0]) and res.steps == 8
    # the learning rate of each of 10 steps: up from lr/25 to lr over the first 30%
    # (ONECYCLE_PCT_START), then cosine-annealed down to lr/25/1e4 (PyTorch's defaults)
    opt = torch.optim.SGD([nn.Parameter(torch.zeros(1))], lr=0.1)
    sched = _scheduler(opt, TrainConfig(schedule="onecycle", lr=0.1), total=10)
    lrs = []
    for _ in range(10):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    peak = round(ONECYCLE_PCT_START * 10) - 1
    assert lrs[0] == pytest.approx(0.1 / 25) and lrs[peak] == pytest.approx(0.1)
    assert lrs[-1] == pytest.approx(0.1 / 25 / 1e4, rel=1e-3)
    assert all(a < b for a, b in zip(lrs[:peak], lrs[1:peak + 1], strict=True))
    assert all(a > b for a, b in zip(lrs[peak:-1], lrs[peak + 1:], strict=True))


@pytest.mark.parametrize("kw, name", [
    ({"schedule": "step"}, "schedule"), ({"epochs": 0}, "epochs"), ({"lr": -1.0}, "lr"),
    ({"max_steps": 0}, "max_steps"), ({"warmup": 1.5}, "warmup"),
])
def test_config_rejects_bad_values(kw: dict, name: str) -> None:
    with pytest.raises(ValueError, match=name) as e:
        TrainConfig(**kw)
    assert repr(next(iter(kw.values()))) in str(e.value)


def test_rejects_other_inputs(data: Dataset) -> None:
    with pytest.raises(TypeError, match="Arch or a torch.nn.Module"):
        train("mobilenetv3_large", data, TrainConfig(**CPU))  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="device"):
        train(TINY, data, TrainConfig(device="toaster"))


def test_evaluate_counts_correct() -> None:
    x = torch.eye(4)[torch.tensor([0, 1, 2, 3, 0, 1])]
    y = torch.tensor([0, 1, 2, 3, 1, 1])
    assert evaluate(nn.Flatten(), x.view(6, 4, 1, 1), y, batch_size=4) == pytest.approx(5 / 6)


def test_recalibrate_bn_uses_current_statistics() -> None:
    model = nn.Sequential(nn.BatchNorm2d(3))
    x = torch.randn(64, 3, 4, 4) * 3 + 5
    model[0].running_mean.fill_(-7.0)
    recalibrate_bn(model, x, torch.arange(64), batch_size=16)
    torch.testing.assert_close(model[0].running_mean, x.mean((0, 2, 3)), atol=1e-4, rtol=1e-4)
    assert model[0].momentum == 0.1 and model.training


def test_resolve_device() -> None:
    from hwnas.common.errors import HwnasError
    from hwnas.proxy.train import resolve_device

    auto = "cuda" if torch.cuda.is_available() else "cpu"
    assert resolve_device("auto").type == auto and resolve_device(None).type == auto
    assert resolve_device("cpu") == torch.device("cpu")
    with pytest.raises(HwnasError, match="device must be one of auto, cpu, cuda") as e:
        resolve_device("gpu")
    assert "\n" not in str(e.value)
    if not torch.cuda.is_available():
        with pytest.raises(HwnasError, match="no CUDA GPU"):
            resolve_device("cuda")

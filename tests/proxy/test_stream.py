"""Streaming ImageFolder data: workers, same result as in memory, bounded memory, skips."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import warnings
from pathlib import Path

import pytest
import torch
from torch import nn

from hwnas.common.errors import HwnasError
from hwnas.proxy import stream as S
from hwnas.proxy.data import DataError, Dataset, load_dataset, load_test_split
from hwnas.proxy.stream import ImageView, StreamingDataset
from hwnas.proxy.train import TrainConfig, evaluate, train

RES = 32


def tiny_net(classes: int = 3) -> nn.Module:
    return nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(),
                         nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, classes))


def _train(data: Dataset, epochs: int = 2) -> float:
    torch.manual_seed(0)
    cfg = TrainConfig(epochs=epochs, batch_size=32, lr=0.1, bn_recalibration=64, device="cpu")
    return train(tiny_net(data.num_classes), data, cfg).val_accuracy


def test_streamed_trains_like_in_memory(folder_factory) -> None:
    """Two loader workers, train augmentation: the same accuracy as the in-memory path
    on the same images (an easy task, so both are near 1 and "within noise" is 0.1)."""
    root = folder_factory(300)
    mem = load_dataset(str(root), resolution=RES, val_size=60, seed=1, stream=False)
    st = load_dataset(str(root), resolution=RES, val_size=60, seed=1, stream=True, workers=2)
    assert type(mem) is Dataset and isinstance(st, StreamingDataset) and st.workers == 2
    assert isinstance(st.train_x, ImageView) and st.train_x.shape == (240, 3, RES, RES)
    assert mem.split_manifest() == st.split_manifest()  # the same split, recorded
    assert torch.equal(mem.val_y, st.val_y) and torch.equal(mem.train_y, st.train_y)
    # evaluation transform and normalisation agree (fewer than NORM_SAMPLE images: exact stats)
    torch.testing.assert_close(st.val_x[:], mem.val_x, atol=1e-4, rtol=0)
    acc_mem, acc_st = _train(mem), _train(st)
    assert acc_mem >= 0.9 and acc_st >= 0.9 and abs(acc_mem - acc_st) <= 0.1


def test_view_indexing_and_evaluate(folder_factory) -> None:
    st = load_dataset(str(folder_factory(60)), resolution=16, val_size=12, stream=True, workers=0)
    v = st.train_x
    assert v[3].shape == (3, 16, 16) and v[:5].shape == (5, 3, 16, 16)
    idx = torch.tensor([7, 2, 7])
    got = v[idx]
    assert torch.equal(got[0], got[2]) and torch.equal(got[1], v[2])
    assert torch.equal(v.to("cpu"), v[:])
    model = tiny_net().eval()
    assert evaluate(model, st.val_x, st.val_y, batch_size=5) == evaluate(model, st.val_x[:], st.val_y)


def test_view_to_refuses_too_big(folder_factory, monkeypatch: pytest.MonkeyPatch) -> None:
    st = load_dataset(str(folder_factory(30)), resolution=16, val_size=6, stream=True, workers=0)
    monkeypatch.setattr(S, "IN_MEMORY_BYTES", 1000)
    with pytest.raises(DataError, match="MiB limit") as e:
        st.train_x.to("cpu")
    assert "\n" not in str(e.value)


def test_large_folder_streams_by_itself(folder_factory, monkeypatch: pytest.MonkeyPatch) -> None:
    root = folder_factory(30)
    assert type(load_dataset(str(root), resolution=16, val_size=6)) is Dataset
    monkeypatch.setattr(S, "IN_MEMORY_BYTES", S.in_memory_bytes(29, 16))
    assert isinstance(load_dataset(str(root), resolution=16, val_size=6), StreamingDataset)


def test_idx_data_cannot_stream(tmp_path: Path) -> None:
    import numpy as np

    for name, arr in (("train-images-idx3-ubyte", np.zeros((8, 4, 4), np.uint8)),
                      ("train-labels-idx1-ubyte", np.arange(8, dtype=np.uint8) % 2)):
        head = bytes([0, 0, 0x08, arr.ndim]) + np.asarray(arr.shape, ">u4").tobytes()
        (tmp_path / name).write_bytes(head + arr.tobytes())
    with pytest.raises(HwnasError, match="needs an ImageFolder"):
        load_dataset(str(tmp_path), resolution=8, val_size=2, stream=True)


def test_test_split_streams(tmp_path: Path, make_folder_fn) -> None:
    root, make_folder = tmp_path / "split", make_folder_fn
    make_folder(root / "train", 30)
    make_folder(root / "test", 9, seed=1)
    x, y = load_test_split(str(root), resolution=16, stream=True, workers=0)
    x_mem, y_mem = load_test_split(str(root), resolution=16, stream=False)
    assert isinstance(x, ImageView) and torch.equal(y, y_mem)
    torch.testing.assert_close(x[:], x_mem, atol=1e-4, rtol=0)
    assert 0 <= evaluate(tiny_net().eval(), x, y) <= 1


def test_unreadable_images_are_skipped_and_reported_once(folder_factory) -> None:
    root = folder_factory(90)
    (root / "class0" / "bad.jpg").write_bytes(b"not a jpeg")
    good = (root / "class1" / "00001.jpg").read_bytes()
    (root / "class1" / "truncated.jpg").write_bytes(good[:len(good) // 3])
    st = load_dataset(str(root), resolution=16, val_size=10, stream=True, workers=2)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        acc = _train(st, epochs=2)
    said = [str(w.message) for w in caught if "unreadable" in str(w.message)]
    skipped = set(st.skipped)
    assert 0 <= acc <= 1 and skipped <= {"class0/bad.jpg", "class1/truncated.jpg"}
    assert "class0/bad.jpg" in skipped or "class0/bad.jpg" not in {p for p, _ in
                                                                   st.split_manifest()["train"]}
    # one warning per newly skipped file set, not one per epoch or per batch
    assert 1 <= len(said) <= 2 and f"skipped {len(skipped)} unreadable" in said[-1]


def test_memory_is_bounded(tmp_path: Path, make_folder_fn) -> None:
    """One epoch over 2,000 files (96 px) with 2 workers, in a child process.

    The in-memory path would hold 2,000 x 3 x 96 x 96 x 5 bytes = 276 MB; the
    streamed run may grow the trainer's peak resident memory by at most 150 MB
    over its own baseline (torch loaded, one training and one evaluation batch
    through the net: memory that does not depend on the folder), and each worker
    stays under 1.5 GB (a forked worker counts the parent's pages it touches).
    The 20,000-file version is bench/loader_throughput.py --memory (docs/data.md):
    generating 20,000 files takes ~50 s on this machine.
    """
    root = make_folder_fn(tmp_path / "big", 2000)
    child = textwrap.dedent(f"""
        import json, resource, torch
        from torch import nn
        from hwnas.proxy.data import load_dataset
        from hwnas.proxy.train import TrainConfig, train
        def peak(who):
            return resource.getrusage(who).ru_maxrss * 1024
        net = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(),
                            nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 3))
        net(torch.zeros(64, 3, 96, 96)).sum().backward()  # a training batch's memory
        with torch.no_grad():
            net.eval()(torch.zeros(512, 3, 96, 96))  # an evaluation batch's (evaluate's 512)
        net.train()
        base = peak(resource.RUSAGE_SELF)
        data = load_dataset({str(root)!r}, resolution=96, val_size=200, stream=True, workers=2)
        r = train(net, data, TrainConfig(epochs=1, batch_size=64, bn_recalibration=256,
                                         device="cpu"))
        print(json.dumps(dict(base=base, peak=peak(resource.RUSAGE_SELF),
                              workers=peak(resource.RUSAGE_CHILDREN), acc=r.val_accuracy,
                              steps=r.steps)))
    """)
    out = subprocess.run([sys.executable, "-c", child], capture_output=True, text=True,
                         timeout=600, check=True)
    m = json.loads(out.stdout.strip().splitlines()[-1])
    assert m["steps"] == 1800 // 64
    assert m["peak"] - m["base"] < 150 * 2**20, m
    assert m["workers"] < 1.5 * 2**30, m


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_cuda_streamed_epoch_amp_channels_last(folder_factory) -> None:
    st = load_dataset(str(folder_factory(300)), resolution=RES, val_size=60, stream=True)
    batch = next(st.train_batches(torch.arange(64), 32, torch.device("cuda")))
    assert batch[0].is_cuda and batch[0].is_contiguous(memory_format=torch.channels_last)
    torch.manual_seed(0)
    r = train(tiny_net(), st, TrainConfig(epochs=2, batch_size=32, lr=0.1, device="cuda"))
    assert r.val_accuracy >= 0.9

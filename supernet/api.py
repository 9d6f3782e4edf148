"""The supernet as the search uses it: find or train one, load it, score and extract paths.

>>> sn = find_or_train("mobilenetv3", "fashion-mnist", proxy_resolution=32, seed=0)  # doctest: +SKIP
>>> sn.estimate(reference("mobilenetv3_large"))  # doctest: +SKIP
0.81
>>> model = sn.extract(arch)  # a build(arch)-compatible module with inherited weights  # doctest: +SKIP

Scoring (:meth:`Supernet.estimate`) follows the one-shot evaluation of SPOS
(Guo et al., ECCV 2020, Sec. 3.3) and OFA/BigNAS: the path's inherited weights,
BatchNorm statistics recalibrated on a fixed set of training images (the same
images, in the same batches, for every candidate), then top-1 accuracy on a fixed
subset of the held-out split (never trained on).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import replace
from pathlib import Path

import torch

from hwnas.common.errors import HwnasError
from hwnas.proxy.data import Dataset
from hwnas.proxy.train import (
    TrainConfig,
    TrainResult,
    evaluate,
    recalibrate_bn,
    resolve_device,
    train,
)
from hwnas.space.build import Net
from hwnas.space.searchspace import get_space
from hwnas.space.spec import Arch

from .model import SuperNet
from .store import (
    list_supernets,
    load_data,
    read_provenance,
    read_weights,
    supernet_folder,
    supernet_id,
    supernets_root,
    train_supernet,
)
from .train import DEFAULT_EPOCHS, DEFAULT_TRAIN_SUBSET, SupernetConfig

# BN recalibration images per candidate: SPOS recalibrates on 20,000 ImageNet images
# (Guo et al. Sec. 4); at 32 px on a CPU that costs more than the evaluation, and the
# BN statistics of one path settle within a few hundred images (bench/supernet_fidelity.py
# measures the ranking with these defaults).
DEFAULT_CALIB_IMAGES = 512
DEFAULT_EVAL_IMAGES = 2000  # held-out images per candidate (standard error ~0.8% at 85%)
CALIB_BATCH = 128  # the training batch size
# Steps of the optional fine-tune before scoring (``finetune_steps``; 0: score the
# inherited weights as they are). bench/supernet_finetune.py measures what it buys.
DEFAULT_FINETUNE_STEPS = 0


class Supernet:
    """A trained supernet loaded for scoring (read-only; share the folder, not the object).

    Attributes:
        id: the supernet's id (folder name under ``$HWNAS_HOME/supernets``).
        folder: its folder.
        config: the settings it was trained with.
        provenance: the provenance record (``provenance.json``).
        net: the :class:`~hwnas.supernet.model.SuperNet` module (eval mode).
    """

    def __init__(self, folder: Path, net: SuperNet, config: SupernetConfig, provenance: dict,
                 device: str | None = None, calib_images: int = DEFAULT_CALIB_IMAGES,
                 eval_images: int = DEFAULT_EVAL_IMAGES,
                 finetune_steps: int = DEFAULT_FINETUNE_STEPS) -> None:
        if not isinstance(finetune_steps, int) or isinstance(finetune_steps, bool) or finetune_steps < 0:
            raise HwnasError(f"finetune_steps must be an int >= 0, got {finetune_steps!r}")
        if not isinstance(calib_images, int) or calib_images < 2:
            raise HwnasError(f"calib_images must be an int >= 2, got {calib_images!r}")
        if not isinstance(eval_images, int) or eval_images < 1:
            raise HwnasError(f"eval_images must be an int >= 1, got {eval_images!r}")
        self.folder, self.net, self.config, self.provenance = folder, net.eval(), config, provenance
        self.id = folder.name
        self.device = resolve_device(device)
        self.calib_images, self.eval_images = calib_images, eval_images
        self.finetune_steps = finetune_steps
        self._data: Dataset | None = None
        self._fixed: tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor] | None = None

    def __repr__(self) -> str:
        return f"Supernet({self.id!r})"

    @property
    def data(self) -> Dataset:
        """The proxy task it was trained on (loaded on first use)."""
        if self._data is None:
            self._data = load_data(self.config)
        return self._data

    def _fixed_sets(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """(calibration images, their batch order, held-out images, labels), fixed per supernet."""
        if self._fixed is None:
            d = self.data
            gen = torch.Generator().manual_seed(self.config.seed)
            n_cal = min(self.calib_images, len(d.train_y))
            idx = torch.randperm(len(d.train_y), generator=gen)[:n_cal]
            calib = d.train_x[idx].to(self.device)
            n_val = min(self.eval_images, len(d.val_y))
            self._fixed = (calib, torch.arange(n_cal, device=self.device),
                           d.val_x[:n_val].to(self.device), d.val_y[:n_val])
        return self._fixed

    def fits(self, arch: Arch) -> bool:
        """Whether ``arch`` is a path of this supernet (every point of its space is)."""
        return self.net.fits(arch)

    def extract(self, arch: Arch) -> Net:
        """``arch`` with its inherited weights as a standalone module (CPU, eval mode).

        BatchNorm statistics are the supernet's own (shared, so not those of this
        path); :meth:`estimate` recalibrates them, and so should a caller that
        evaluates the module. ``extract(arch).state_dict()`` loads into
        ``hwnas.space.build(arch, num_classes=...)``.

        Raises:
            HwnasError: ``arch`` is not a path of this supernet (names the part).
        """
        return self.net.extract(arch)

    def recalibrated(self, arch: Arch) -> Net:
        """:meth:`extract` with BN statistics re-estimated on the fixed calibration images."""
        calib, order, _, _ = self._fixed_sets()
        model = self.extract(arch).to(device=self.device, memory_format=torch.channels_last)
        recalibrate_bn(model, calib, order, CALIB_BATCH)
        return model.eval()

    def finetuned(self, arch: Arch) -> Net:
        """:meth:`extract` trained ``finetune_steps`` steps (see :meth:`_finetune`), CPU, eval mode."""
        return self._finetune(arch).model

    def _finetune(self, arch: Arch) -> TrainResult:
        """:meth:`extract` trained ``finetune_steps`` steps of the proxy recipe (CPU, eval mode).

        The recipe is ``hwnas.proxy.train``'s (SGD, cosine over the steps, the
        supernet's learning rate and batch size, seed = the supernet's seed), so
        the same ``arch`` always gives the same weights on one device; its BN
        statistics are recalibrated by the trainer. The supernet is not changed
        (``extract`` copies the path).
        """
        _, _, val_x, val_y = self._fixed_sets()
        # The trainer scores on data.val_*: give it the fixed held-out images only.
        data = self.data
        if isinstance(data, Dataset):  # (a streamed folder keeps its own held-out split)
            data = replace(data, val_x=val_x.cpu(), val_y=val_y.cpu(), manifest=None)
        config = TrainConfig(epochs=1, max_steps=self.finetune_steps, lr=self.config.lr,
                             batch_size=self.config.batch_size,
                             resolution=self.config.proxy_resolution, seed=self.config.seed,
                             device=str(self.device))
        return train(self.extract(arch).train(), data, config)

    def estimate(self, arch: Arch) -> float:
        """Estimated accuracy of ``arch`` in [0, 1] on the fixed held-out images.

        Inherited weights with recalibrated BN, or, with ``finetune_steps``, the
        inherited weights fine-tuned that many steps (:meth:`finetuned`).
        """
        if self.finetune_steps:
            return self._finetune(arch).val_accuracy  # scored on the same fixed images
        _, _, val_x, val_y = self._fixed_sets()
        return evaluate(self.recalibrated(arch), val_x, val_y)

    def scored_model(self, arch: Arch) -> Net:
        """The module :meth:`estimate` scores (its weights are what a search exports)."""
        return self.finetuned(arch) if self.finetune_steps else self.recalibrated(arch)

    def estimate_many(self, archs: Iterable[Arch]) -> list[float]:
        return [self.estimate(a) for a in archs]


def load_supernet(sid: str, device: str | None = None, **scoring: int) -> Supernet:
    """The complete supernet ``sid`` from ``$HWNAS_HOME/supernets`` (read-only).

    ``scoring`` may set ``calib_images``, ``eval_images`` and ``finetune_steps``.

    Raises:
        HwnasError: unknown id, training incomplete, or a corrupt file (one line).
    """
    folder = supernet_folder(sid)
    prov = read_provenance(folder)
    try:
        config = SupernetConfig(**prov["settings"])
        classes = int(prov["data"]["classes"])
    except (KeyError, TypeError, ValueError) as e:
        raise HwnasError(f"corrupt supernet provenance {folder}: {e}; delete the folder to retrain") from None
    with torch.device("meta"):
        net = SuperNet(get_space(config.space), num_classes=classes)
    try:
        net.load_state_dict(read_weights(folder), assign=True)
    except RuntimeError as e:
        raise HwnasError(f"corrupt supernet checkpoint {folder}: "
                         f"{' '.join(str(e).split())[:200]}; delete the folder to retrain") from None
    net.to(resolve_device(device))
    return Supernet(folder, net, config, prov, device=device, **scoring)


def find_or_train(space: str = "mobilenetv3", data: str = "fashion-mnist", proxy_resolution: int = 32,
                  seed: int = 0, epochs: int = DEFAULT_EPOCHS,
                  train_subset: int | None = DEFAULT_TRAIN_SUBSET, recipe: str = "spos", *,
                  device: str | None = None, progress: bool = True, **settings) -> Supernet:
    """The supernet for these settings: loaded from the cache, or trained (or resumed) first.

    ``settings`` may override the other fields of :class:`SupernetConfig`
    (``val_size``, ``batch_size``, ``lr``, ...); every field is part of the id.
    """
    config = SupernetConfig(space=space, data=str(data), proxy_resolution=proxy_resolution,
                            recipe=recipe, seed=seed, epochs=epochs, train_subset=train_subset,
                            **settings)
    folder = train_supernet(config, device=device, progress=progress)
    return load_supernet(folder.name, device=device)


def find_supernet(space: str, data: str, proxy_resolution: int, seed: int) -> str | None:
    """The id of a complete cached supernet with these settings (the most epochs), or None."""
    best = None
    for p in list_supernets():
        s = p.get("settings", {})
        if (p.get("status") == "complete" and s.get("space") == space and s.get("data") == str(data)
                and s.get("proxy_resolution") == proxy_resolution and s.get("seed") == seed
                and (best is None or s.get("epochs", 0) > best[0])):
            best = (s.get("epochs", 0), p["id"])
    return best[1] if best else None


__all__ = ["Supernet", "find_or_train", "find_supernet", "load_supernet", "supernet_id",
           "supernets_root"]

"""Retrain the winner standalone: ``nas-search --retrain-epochs N``.

A search estimates accuracy cheaply (a 2-epoch proxy, or a supernet's
inherited weights); what a user deploys is the net trained on its own. After
the search, the best net is trained from scratch with the full recipe of
``hwnas.proxy.train`` (SGD with Nesterov, cosine schedule with warm-up, label
smoothing) for ``--retrain-epochs`` epochs on the whole train split minus the
held-out images, at the proxy resolution and seed of the run; it is scored on
the same held-out split the search used and on the test split (which the
search never saw). ``best.json`` then holds both numbers:
``estimated_accuracy`` (what the search saw) and ``retrained_accuracy``
(``retrained_test_accuracy`` too); the weights go to ``retrained.pt``, while
``best.pt``/``best.onnx`` keep the search's weights.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hwnas.common.atomic import atomic_save_state_dict, atomic_write_text
from hwnas.proxy.data import DataError, load_dataset, load_test_split
from hwnas.proxy.train import TrainConfig, evaluate, train
from hwnas.space.spec import Arch

if TYPE_CHECKING:
    from .config import SearchConfig

RETRAIN_JSON = "retrain.json"
RETRAINED_WEIGHTS = "retrained.pt"
# best.json fields the retrain adds (kept when results are rewritten for the same net)
RETRAIN_FIELDS = ("estimated_accuracy", "retrained_accuracy", "retrained_test_accuracy",
                  "retrain_epochs", "retrain_s")


def retrain_record(run_dir: Path, arch: str) -> dict[str, Any]:
    """The retrain fields for ``best.json`` if ``arch`` was retrained in this run, else {}."""
    f = run_dir / RETRAIN_JSON
    if not f.is_file():
        return {}
    rec = json.loads(f.read_text())
    return {k: rec[k] for k in RETRAIN_FIELDS if k in rec} if rec.get("arch") == arch else {}


def retrain_best(config: SearchConfig, run_dir: Path,
                 notify: Callable[[str], None] | None = None) -> dict[str, Any] | None:
    """Train the run's best net from scratch; update best.json; return the record.

    Nothing happens without a best net, or when that net was already retrained
    with as many epochs (a resumed run does not repeat it).
    """
    best_file = run_dir / "best.json"
    if not best_file.is_file():
        return None
    best = json.loads(best_file.read_text())
    done = retrain_record(run_dir, best["arch"])
    if done.get("retrain_epochs") == config.retrain_epochs:
        return done
    if notify:
        notify(f"retraining the best net (trial {best['number']}) from scratch for "
               f"{config.retrain_epochs} epochs")
    c = config
    data = load_dataset(c.data, resolution=c.proxy_resolution, val_size=c.val_size,
                        train_subset=None, seed=c.seed)
    kw: dict[str, Any] = dict(epochs=c.retrain_epochs, batch_size=c.batch_size,
                              resolution=c.proxy_resolution, seed=c.seed, device=c.device)
    if c.lr is not None:
        kw["lr"] = c.lr
    t0 = time.perf_counter()
    result = train(Arch.from_str(best["arch"]), data, TrainConfig(**kw))
    seconds = time.perf_counter() - t0
    try:
        test_x, test_y = load_test_split(c.data, resolution=c.proxy_resolution)
        test_acc: float | None = evaluate(result.model, test_x, test_y)
    except DataError:  # a data set without a test split
        test_acc = None
    rec = {"arch": best["arch"], "estimated_accuracy": best.get("accuracy"),
           "retrained_accuracy": float(result.val_accuracy),
           "retrained_test_accuracy": test_acc, "retrain_epochs": c.retrain_epochs,
           "retrain_s": round(seconds, 1), "train_images": len(data.train_y)}
    atomic_save_state_dict({k: v.detach().cpu() for k, v in result.model.state_dict().items()},
                           run_dir / RETRAINED_WEIGHTS)
    atomic_write_text(run_dir / RETRAIN_JSON, json.dumps(rec, indent=2) + "\n")
    best.update({k: rec[k] for k in RETRAIN_FIELDS})
    atomic_write_text(best_file, json.dumps(best, indent=2) + "\n")
    if notify:
        notify(f"retrained: {rec['retrained_accuracy']:.4f} held-out accuracy "
               f"(estimated {best.get('accuracy')}) in {seconds:.0f} s")
    return rec


__all__ = ["RETRAIN_FIELDS", "retrain_best", "retrain_record"]

"""Fidelity of the supernet estimator: its ranking against standalone-trained accuracy.

Run from the repository root (nice'd; each phase resumes where it stopped)::

    nice -n 10 .venv/bin/python bench/supernet_fidelity.py --phase truth     # standalone training
    nice -n 10 .venv/bin/python bench/supernet_fidelity.py --phase supernet  # train the supernet
    nice -n 10 .venv/bin/python bench/supernet_fidelity.py --phase score     # estimate + correlations

Architectures: ``--random`` (default 24) samples of the ``mobilenetv3`` space, picked
evenly over the MAdds range from 400 seeded draws, plus MobileNetV3-Large and -Small
at widths 0.75, 1.0 and 1.25 (30 in all).

Ground truth: each architecture trained standalone with the search's default proxy
recipe (``hwnas.proxy.train.TrainConfig`` defaults, ``hwnas.search.config``'s 10,000
training images x 2 epochs at 32 px, seed 0, Fashion-MNIST split seed 0) and scored on
the Fashion-MNIST TEST split (10,000 images); the validation accuracy is kept too.
Seeds: ``--seed S`` trains with training seed S (same data split) into
``supernet_truth.json`` (seed 0) or ``supernet_truth_s{S}.json``; :func:`truth_rows`
averages every seed present.

Estimator: one supernet (``hwnas.supernet``, same data split and 10,000 images) trained
with ``--recipe`` for ``--epochs``; each architecture scored by
``Supernet.estimate`` (inherited weights, BN recalibrated on 512 fixed training images,
top-1 on 2,000 fixed held-out images). Writes ``bench/results/supernet_truth.json``
and ``bench/results/supernet_fidelity.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path

import numpy as np
import torch

from hwnas.common.atomic import atomic_write_text
from hwnas.latency.runners.protocol import cpu_model
from hwnas.proxy.data import load_dataset, load_test_split
from hwnas.proxy.train import TrainConfig, evaluate, train
from hwnas.space import Arch, get_space, reference

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results"
TRUTH = RESULTS / "supernet_truth.json"
OUT = RESULTS / "supernet_fidelity.json"
SUBSET, EPOCHS, RESOLUTION, SEED = 10000, 2, 32, 0  # hwnas.search.config defaults
WIDTHS = (0.75, 1.0, 1.25)
POOL = 400  # random draws the evenly spread sample is picked from


def architectures(n_random: int) -> list[tuple[str, Arch]]:
    space = get_space("mobilenetv3")
    rng = np.random.default_rng(SEED)
    pool = [space.sample_random(rng) for _ in range(POOL)]
    pool.sort(key=lambda a: a.madds(224))
    picks = np.linspace(0, len(pool) - 1, n_random).round().astype(int)
    archs = [(f"random_{i:02d}", pool[p]) for i, p in enumerate(picks)]
    for name in ("mobilenetv3_large", "mobilenetv3_small"):
        for w in WIDTHS:
            archs.append((f"{name}_{w:g}", reference(name, w)))
    return archs


def _pixel_ms(arch: Arch) -> float | None:
    try:
        from hwnas.latency import load_target

        return float(load_target("pixel").predict(arch))
    except Exception:  # noqa: BLE001 (latency is context only)
        return None


def _load(path: Path) -> dict:
    return json.loads(path.read_text()) if path.exists() else {}


def _machine() -> dict:
    return {"host": platform.node(), "cpu": cpu_model(),
            "cpus": os.cpu_count(), "torch_threads": torch.get_num_threads(),
            "torch": torch.__version__, "loadavg": os.getloadavg()}


def truth_path(seed: int) -> Path:
    return TRUTH if seed == 0 else TRUTH.with_name(f"supernet_truth_s{seed}.json")


def truth_rows() -> dict[str, dict]:
    """Per architecture: seed 0's row plus ``test_seeds`` (every seed's test accuracy),
    ``test_mean`` and ``test_sem`` (standard error of the mean over seeds)."""
    rows = {k: dict(v) for k, v in _load(TRUTH).get("rows", {}).items()}
    for path in sorted(RESULTS.glob("supernet_truth_s*.json")):
        for name, row in _load(path).get("rows", {}).items():
            rows.setdefault(name, dict(row)).setdefault("extra", []).append(row["test_accuracy"])
    for row in rows.values():
        accs = [row["test_accuracy"], *row.pop("extra", [])]
        row["test_seeds"] = accs
        row["test_mean"] = float(np.mean(accs))
        row["test_sem"] = float(np.std(accs, ddof=1) / np.sqrt(len(accs))) if len(accs) > 1 else None
    return rows


def phase_truth(archs: list[tuple[str, Arch]], seed: int = SEED, dest: Path | None = None) -> None:
    """Train each of ``archs`` standalone (the recipe above) into ``dest`` (default: this
    benchmark's truth file for ``seed``); a name already there with the same arch is kept,
    not retrained."""
    dest = dest or truth_path(seed)
    rows = _load(dest).get("rows", {})
    data = load_dataset("fashion-mnist", RESOLUTION, val_size=5000, train_subset=SUBSET, seed=SEED)
    test_x, test_y = load_test_split("fashion-mnist", RESOLUTION)
    for name, arch in archs:
        if name in rows and rows[name]["arch"] == arch.to_str():
            continue
        t0 = time.perf_counter()
        res = train(arch, data, TrainConfig(epochs=EPOCHS, resolution=RESOLUTION, seed=seed))
        test = evaluate(res.model, test_x, test_y)
        rows[name] = {"arch": arch.to_str(), "val_accuracy": res.val_accuracy, "test_accuracy": test,
                      "train_seconds": res.seconds, "seconds": time.perf_counter() - t0,
                      "madds_224": arch.madds(224), "pixel_ms": _pixel_ms(arch)}
        print(f"{name}: test {test:.4f} val {res.val_accuracy:.4f} ({res.seconds:.0f} s)", flush=True)
        atomic_write_text(dest, json.dumps({
            "recipe": f"hwnas.proxy.train defaults, {SUBSET} images x {EPOCHS} epochs, {RESOLUTION} px, "
                      f"seed {seed} (split seed {SEED}); accuracy on the Fashion-MNIST test split",
            "machine": _machine(),
            "rows": rows}, indent=2) + "\n")


def phase_supernet(args: argparse.Namespace) -> None:
    from hwnas.supernet import find_or_train

    t0 = time.perf_counter()
    sn = find_or_train("mobilenetv3", "fashion-mnist", RESOLUTION, SEED, epochs=args.epochs,
                       train_subset=SUBSET, recipe=args.recipe, progress=True)
    print(sn.id, sn.provenance.get("train_seconds"), time.perf_counter() - t0)


def _from_checkpoint(args: argparse.Namespace):
    """The supernet as its last per-epoch checkpoint left it (training still running)."""
    from hwnas.supernet import Supernet, SupernetConfig, supernet_id, supernets_root
    from hwnas.supernet.model import SuperNet

    config = SupernetConfig(space="mobilenetv3", data="fashion-mnist", proxy_resolution=RESOLUTION,
                            recipe=args.recipe, seed=SEED, epochs=args.epochs, train_subset=SUBSET)
    folder = supernets_root() / supernet_id(config)
    state = torch.load(folder / "checkpoint.pt", map_location="cpu", weights_only=True)
    net = SuperNet(get_space("mobilenetv3"), num_classes=10)
    net.load_state_dict(state["net"])
    prov = {**_load(folder / "provenance.json"), "scored_from": f"checkpoint after epoch {state['epoch']}"}
    return Supernet(folder, net, config, prov)


def phase_score(args: argparse.Namespace, archs: list[tuple[str, Arch]]) -> None:
    from scipy.stats import kendalltau, spearmanr

    from hwnas.supernet import find_or_train

    truth = _load(TRUTH).get("rows", {})
    if args.checkpoint:
        sn = _from_checkpoint(args)
    else:
        sn = find_or_train("mobilenetv3", "fashion-mnist", RESOLUTION, SEED, epochs=args.epochs,
                           train_subset=SUBSET, recipe=args.recipe, progress=False)
    sn.estimate(archs[0][1])  # load the data and the fixed sets before timing
    rows, times = {}, []
    for name, arch in archs:
        t0 = time.perf_counter()
        est = sn.estimate(arch)
        times.append(time.perf_counter() - t0)
        rows[name] = {"estimate": est, **truth.get(name, {})}
        print(f"{name}: estimate {est:.4f} truth {truth.get(name, {}).get('test_accuracy')}", flush=True)
    both = [r for r in rows.values() if "test_accuracy" in r]
    out = {"supernet": sn.id, "provenance": sn.provenance, "machine": _machine(),
           "scoring": {"calib_images": sn.calib_images, "eval_images": sn.eval_images,
                       "candidates_per_second": len(times) / sum(times),
                       "median_seconds": float(np.median(times))},
           "ground_truth": _load(TRUTH).get("recipe"), "n": len(both), "rows": rows}
    if len(both) >= 3:
        est = [r["estimate"] for r in both]
        for key in ("test_accuracy", "val_accuracy"):
            tru = [r[key] for r in both]
            out[f"kendall_tau_{key}"] = float(kendalltau(est, tru).statistic)
            out[f"spearman_{key}"] = float(spearmanr(est, tru).statistic)
        rand = [r for n, r in rows.items() if n.startswith("random") and "test_accuracy" in r]
        if len(rand) >= 3:
            out["kendall_tau_random_only"] = float(kendalltau(
                [r["estimate"] for r in rand], [r["test_accuracy"] for r in rand]).statistic)
        mad = [r["madds_224"] for r in both]
        out["kendall_tau_madds_vs_test"] = float(kendalltau(mad, [r["test_accuracy"] for r in both]).statistic)
    dest = OUT
    if args.checkpoint:
        dest = OUT.with_name(f"supernet_fidelity_e{sn.provenance.get('epochs_done')}.json")
    atomic_write_text(dest, json.dumps(out, indent=2) + "\n")
    print({k: v for k, v in out.items() if k.startswith(("kendall", "spearman", "n"))}, out["scoring"])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--phase", choices=("truth", "supernet", "score", "all"), default="all")
    p.add_argument("--random", type=int, default=24)
    p.add_argument("--epochs", type=int, default=20, help="supernet epochs")
    p.add_argument("--recipe", default="spos")
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--seed", type=int, default=SEED, help="training seed of --phase truth")
    p.add_argument("--checkpoint", action="store_true",
                   help="score the running training's last checkpoint (and write OUT with _eN)")
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    RESULTS.mkdir(parents=True, exist_ok=True)
    archs = architectures(args.random)
    if args.phase in ("truth", "all"):
        phase_truth(archs, args.seed)
    if args.phase in ("supernet", "all"):
        phase_supernet(args)
    if args.phase in ("score", "all"):
        phase_score(args, archs)


if __name__ == "__main__":
    main()

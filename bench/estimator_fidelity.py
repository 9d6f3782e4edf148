"""How well does each accuracy estimator rank networks, and at what cost? One table, one plot.

The 30 architectures of ``bench/supernet_fidelity.py`` (24 random ``mobilenetv3`` nets
spread over the MAdds range + MobileNetV3-Large/Small at 0.75/1.0/1.25). Ground truth:
their standalone test accuracy with the search's proxy recipe (10,000 images x 2
epochs at 32 px), **the mean over the training seeds present** (``supernet_truth*.json``;
3 seeds when complete). Estimators:

- ``train proxy (one seed)``: that same recipe with one seed, against the mean of the
  *other* seeds -- what the search's ``train`` estimator sees, ~35 s a candidate;
- ``inherit``: the supernet's inherited weights, BN recalibrated (``Supernet.estimate``);
- ``inherit+K``: inherited weights fine-tuned K steps (``--supernet-finetune K``);
- ``scratch+K``: the same K steps from a fresh initialisation: the train proxy cut to
  the fine-tune's cost (the equal-cost control);
- ``synflow``, ``naswot``: the zero-cost scores of ``--prefilter`` (3 initialisation
  seeds each), globally and within latency bands (the prefilter only compares
  candidates within 1.25x of each other's predicted latency).

Per estimator with several seeds: Kendall tau (and Spearman) of each seed's estimates
against the truth, mean and standard deviation over seeds, and the median seconds
per candidate. Reads ``bench/results/supernet_finetune_{K}[_s{S}][_n30].json`` (from
``bench/supernet_finetune.py``); computes and caches the zero-cost scores::

    nice .venv/bin/python bench/estimator_fidelity.py

Writes ``bench/results/estimator_fidelity.json`` and ``estimator_fidelity.png``.
"""

from __future__ import annotations

import json
import re
import sys
import time
from itertools import combinations
from pathlib import Path

import numpy as np
from scipy.stats import kendalltau, spearmanr

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results"
sys.path.insert(0, str(ROOT / "bench"))
from supernet_fidelity import truth_rows  # noqa: E402

ZERO_COST = RESULTS / "zero_cost_scores.json"
OUT = RESULTS / "estimator_fidelity.json"
BAND = 1.25  # hwnas.search.prefilter's PREFILTER_LATENCY_BAND
ZC_SEEDS = (0, 1, 2)


def _tau(est: list[float], tru: list[float]) -> tuple[float, float]:
    return float(kendalltau(est, tru).statistic), float(spearmanr(est, tru).statistic)


def _banded_tau(est: list[float], tru: list[float], lat: list[float]) -> float:
    """Kendall tau over the pairs whose predicted latencies are within BAND of each other."""
    agree = total = 0
    for i, j in combinations(range(len(est)), 2):
        if max(lat[i], lat[j]) > BAND * min(lat[i], lat[j]):
            continue
        s = np.sign(est[i] - est[j]) * np.sign(tru[i] - tru[j])
        if s != 0:
            agree += s > 0
            total += 1
    return float((2 * agree - total) / total) if total else float("nan")


def zero_cost_scores(truth: dict[str, dict]) -> dict[str, dict[str, list[float]]]:
    """``{name: {method: [score per seed]}}``, cached in ZERO_COST."""
    cached = json.loads(ZERO_COST.read_text()) if ZERO_COST.exists() else {}
    todo = [n for n in truth if n not in cached.get("scores", {})]
    if todo:
        from hwnas.common.atomic import atomic_write_text
        from hwnas.proxy.data import load_dataset
        from hwnas.search.prefilter import PREFILTER_METHODS, zero_cost_score
        from hwnas.space import Arch

        data = load_dataset("fashion-mnist", 32, val_size=5000, train_subset=10000, seed=0)
        scores, seconds = cached.get("scores", {}), cached.get("seconds", {})
        for name in todo:
            arch = Arch.from_str(truth[name]["arch"])
            scores[name] = {}
            for m in PREFILTER_METHODS:
                t = time.perf_counter()
                scores[name][m] = [zero_cost_score(arch, data, m, seed=s) for s in ZC_SEEDS]
                seconds.setdefault(m, []).append((time.perf_counter() - t) / len(ZC_SEEDS))
            print(name, scores[name], flush=True)
        atomic_write_text(ZERO_COST, json.dumps({"seeds": list(ZC_SEEDS), "scores": scores,
                                                 "seconds": seconds}, indent=1) + "\n")
        cached = {"scores": scores, "seconds": seconds}
    return cached


def _finetune_runs() -> dict[int, list[dict]]:
    """``{K: [run, ...]}`` of the 30-net fine-tune runs, one per seed."""
    runs: dict[int, list[dict]] = {}
    for path in sorted(RESULTS.glob("supernet_finetune_*.json")):
        run = json.loads(path.read_text())
        if run.get("n", 0) < 30 or not re.fullmatch(r"supernet_finetune_\d+(_s\d+)?(_n30)?", path.stem):
            continue
        runs.setdefault(int(run["steps"]), []).append(run)
    return runs


def summarise(name: str, per_seed: list[dict[str, float]], truth: dict[str, dict],
              seconds: float, lat: dict[str, float]) -> dict:
    names = sorted(truth)
    tru = [truth[n]["test_mean"] for n in names]
    taus, rhos, banded = [], [], []
    for est in per_seed:
        e = [est[n] for n in names]
        t, r = _tau(e, tru)
        taus.append(t)
        rhos.append(r)
        banded.append(_banded_tau(e, tru, [lat[n] for n in names]))
    return {"estimator": name, "seeds": len(per_seed), "kendall_tau": float(np.mean(taus)),
            "kendall_tau_sd": float(np.std(taus, ddof=1)) if len(taus) > 1 else None,
            "kendall_tau_per_seed": taus, "spearman": float(np.mean(rhos)),
            "banded_kendall_tau": float(np.nanmean(banded)), "median_seconds": seconds}


def main() -> None:
    truth = truth_rows()
    n_seeds = min(len(r["test_seeds"]) for r in truth.values())
    lat = {n: r["pixel_ms"] for n, r in truth.items()}
    rows = []
    # the train proxy: each seed against the mean of the others
    if n_seeds >= 2:
        names = sorted(truth)
        taus, rhos = [], []
        for s in range(n_seeds):
            est = [truth[n]["test_seeds"][s] for n in names]
            rest = [np.mean([a for i, a in enumerate(truth[n]["test_seeds"][:n_seeds]) if i != s])
                    for n in names]
            t, r = _tau(est, rest)
            taus.append(t)
            rhos.append(r)
        secs = float(np.median([truth[n]["train_seconds"] for n in names]))
        rows.append({"estimator": "train proxy (one seed vs the others' mean)", "seeds": n_seeds,
                     "kendall_tau": float(np.mean(taus)), "kendall_tau_sd": float(np.std(taus, ddof=1)),
                     "kendall_tau_per_seed": taus, "spearman": float(np.mean(rhos)),
                     "median_seconds": secs})
    runs = _finetune_runs()
    if runs:
        any_run = next(iter(runs.values()))[0]
        rows.append(summarise("inherit", [{n: r["inherit"] for n, r in any_run["rows"].items()}],
                              truth, float(np.median([r["inherit_s"] for r in any_run["rows"].values()])),
                              lat))
    for k in sorted(runs):
        for key, label in (("inherit_ft", f"inherit+{k}"), ("scratch_ft", f"scratch+{k}")):
            per_seed = [{n: r[key] for n, r in run["rows"].items()} for run in runs[k]]
            secs = float(np.median([r[f"{key}_s"] for run in runs[k] for r in run["rows"].values()]))
            rows.append(summarise(label, per_seed, truth, secs, lat))
    zc = zero_cost_scores(truth)
    for m, secs in zc["seconds"].items():
        per_seed = [{n: zc["scores"][n][m][i] for n in truth} for i in range(len(ZC_SEEDS))]
        rows.append(summarise(m, per_seed, truth, float(np.median(secs)), lat))
    # context: what size alone says
    madds = {n: r["madds_224"] for n, r in truth.items()}
    rows.append(summarise("MAdds at 224 (context)", [madds], truth, 0.0, lat))
    sems = [r["test_sem"] for r in truth.values() if r["test_sem"] is not None]
    out = {"date": time.strftime("%Y-%m-%d"), "n": len(truth), "truth_seeds": n_seeds,
           "truth": "hwnas.proxy.train defaults, 10,000 Fashion-MNIST images x 2 epochs at 32 px, "
                    "test split, mean over training seeds",
           "truth_sem_median": float(np.median(sems)) if sems else None,
           "band": BAND, "rows": rows}
    from hwnas.common.atomic import atomic_write_text

    atomic_write_text(OUT, json.dumps(out, indent=2) + "\n")
    for r in rows:
        sd = f" ± {r['kendall_tau_sd']:.2f}" if r.get("kendall_tau_sd") is not None else ""
        band = f", banded {r['banded_kendall_tau']:.2f}" if "banded_kendall_tau" in r else ""
        print(f"{r['estimator']:45s} tau {r['kendall_tau']:+.2f}{sd} (n seeds {r['seeds']}), "
              f"rho {r['spearman']:+.2f}{band}, {r['median_seconds']:.1f} s")
    _plot(rows)


def _plot(rows: list[dict]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from hwnas.common.atomic import atomic_save_figure

    fig, ax = plt.subplots(figsize=(7, 4.5))
    for r in rows:
        if r["median_seconds"] <= 0:
            continue
        kind = ("C0" if r["estimator"].startswith("inherit") else
                "C1" if r["estimator"].startswith(("scratch", "train")) else "C2")
        ax.errorbar(r["median_seconds"], r["kendall_tau"], yerr=r.get("kendall_tau_sd") or 0,
                    fmt="o", color=kind, capsize=3)
        ax.annotate(r["estimator"].split(" (")[0], (r["median_seconds"], r["kendall_tau"]),
                    textcoords="offset points", xytext=(5, 3), fontsize=8)
    ax.axhline(0.6, color="grey", ls="--", lw=0.8)
    ax.set_xscale("log")
    ax.set_xlabel("median seconds per candidate (1 thread, this 2-core machine)")
    ax.set_ylabel("Kendall tau vs standalone accuracy (mean ± sd over seeds)")
    ax.set_title("Accuracy estimators on 30 mobilenetv3 nets: fidelity against cost")
    fig.tight_layout()
    atomic_save_figure(fig, OUT.with_suffix(".png"))


if __name__ == "__main__":
    main()

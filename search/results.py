"""Run folders: what a search leaves behind, and how a notebook opens it.

Layout of ``results/<run>/``::

    config.yaml      the resolved configuration (format_version inside)
    study.db         Optuna storage (SQLite; optuna-dashboard can open it)
    trials.parquet   one row per trial (also trials.csv)
    best.json        the best trial: arch string, latency, accuracy, reward
    best.pt          weights of the best net (state_dict): trained, or inherited from the supernet
    family.json      MobileNetV3 family scored by the supernet (estimator supernet)
    retrain.json, retrained.pt  the best net retrained from scratch (--retrain-epochs)
    weights/         weights of the trials on the Pareto front and the best (<number>.pt)
    best.onnx        the best net, exported with those weights
    pareto.csv       accuracy/latency Pareto front of finished trials
    reward.png       reward over trials
    acc_vs_latency.png  accuracy vs predicted latency, reference nets marked
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import yaml

from hwnas.common.atomic import atomic_copy, atomic_write_df, atomic_write_text
from hwnas.common.errors import HwnasError

from .budget import WARM_START_ATTR
from .config import SearchConfig
from .estimators import WEIGHTS_DIR, Estimator, SupernetEstimator, make_estimator, save_weights
from .family import ensure_family, load_family
from .retrain import retrain_record

TRIAL_COLUMNS = [
    "number", "state", "arch", "params", "madds", "latency_ms", "accuracy", "reward",
    "skipped", "error", "zero_cost", "duplicate_of", "warm_start", "epochs", "train_s", "duration_s",
    "datetime_start", "datetime_complete",
]


def trials_frame(study) -> pd.DataFrame:  # noqa: ANN001 - optuna.Study
    """One row per trial of ``study`` with the columns of :data:`TRIAL_COLUMNS`
    plus every architecture decision as ``p_<name>``."""
    rows = []
    for t in study.get_trials(deepcopy=False):
        ua = t.user_attrs
        values = t.values or []
        start, end = t.datetime_start, t.datetime_complete
        row = {
            "number": t.number,
            "state": t.state.name,
            "arch": ua.get("arch"),
            "params": ua.get("params"),
            "madds": ua.get("madds"),
            "latency_ms": ua.get("latency_ms"),
            "accuracy": ua.get("accuracy", math.nan),
            "reward": ua.get("reward", values[0] if len(values) == 1 else math.nan),
            "skipped": ua.get("skipped"),
            "error": ua.get("error"),
            "zero_cost": ua.get("zero_cost", math.nan),
            "duplicate_of": ua.get("duplicate_of"),
            "warm_start": bool(ua.get(WARM_START_ATTR, False)),
            "epochs": ua.get("epochs"),
            "train_s": ua.get("train_s"),
            "duration_s": (end - start).total_seconds() if start and end else math.nan,
            "datetime_start": start,
            "datetime_complete": end,
        }
        row.update({f"p_{k}": v for k, v in t.params.items()})
        rows.append(row)
    df = pd.DataFrame(rows)
    if df.empty:
        return pd.DataFrame(columns=TRIAL_COLUMNS)
    for c in ("accuracy", "reward", "latency_ms", "train_s", "zero_cost"):
        df[c] = pd.to_numeric(df[c], errors="coerce")
    return df.sort_values("number").reset_index(drop=True)


def pareto_front(df: pd.DataFrame) -> pd.DataFrame:
    """Finished trials not dominated in (accuracy up, latency down)."""
    ok = df[(df["state"] == "COMPLETE") & df["accuracy"].notna() & df["latency_ms"].notna()]
    ok = ok.sort_values(["latency_ms", "accuracy"], ascending=[True, False])
    best = -np.inf
    keep = []
    for idx, acc in zip(ok.index, ok["accuracy"], strict=True):
        if acc > best:
            keep.append(idx)
            best = acc
    return ok.loc[keep, ["number", "arch", "latency_ms", "accuracy", "reward", "params", "madds"]]


def best_trial_row(df: pd.DataFrame, multi_objective: bool = False,
                   target_ms: float | None = None) -> pd.Series | None:
    """The best finished, trained trial: highest reward; for a multi-objective
    (pareto) run, the most accurate net within ``target_ms`` (the fastest if
    none is within it)."""
    ok = df[(df["state"] == "COMPLETE") & df["accuracy"].notna()]
    if ok.empty:
        return None
    if multi_objective:
        within = ok[ok["latency_ms"] <= target_ms] if target_ms else ok
        if within.empty:
            return ok.sort_values(["latency_ms", "number"]).iloc[0]
        return within.sort_values(["accuracy", "latency_ms", "number"],
                                  ascending=[False, True, True]).iloc[0]
    return ok.sort_values(["reward", "number"], ascending=[False, True]).iloc[0]


# ---------------------------------------------------------------- writing ---
def write_results(config: SearchConfig, run_dir: Path, study) -> None:  # noqa: ANN001
    """trials.parquet/csv, pareto.csv, best.json/.pt/.onnx and plots.

    Weights of trials that are neither the best nor on the Pareto front are
    deleted: neither can become so later, as finished trials never change.
    """
    from .plots import save_run_plots

    df = trials_frame(study)
    atomic_write_df(df, run_dir / "trials.parquet")
    atomic_write_df(df, run_dir / "trials.csv")
    front = pareto_front(df)
    atomic_write_df(front, run_dir / "pareto.csv")
    best = best_trial_row(df, multi_objective=config.multi_objective,
                          target_ms=config.latency_ms)
    keep = {_weights_number(df, n) for n in front["number"]}
    if best is not None:
        keep.add(_weights_number(df, best["number"]))
    estimator = make_estimator(config.estimator)
    _materialise_weights(config, run_dir, df, keep, estimator)
    if best is not None:
        _write_best(config, run_dir, best, _weights_number(df, best["number"]))
    family = ensure_family(config, run_dir, estimator if isinstance(estimator, SupernetEstimator)
                           and config.supernet else None)
    save_run_plots(run_dir, df, front, config.reference_latency_ms, config.latency_ms,
                   family=family)
    running = {int(n) for n in df.loc[df["state"] == "RUNNING", "number"]}
    for f in (run_dir / WEIGHTS_DIR).glob("*.pt"):
        if f.stem.isdigit() and int(f.stem) not in keep | running:
            f.unlink()


def _materialise_weights(config: SearchConfig, run_dir: Path, df: pd.DataFrame, keep: set[int],
                         estimator: Estimator) -> None:
    """Write the weights of kept trials the estimator did not save while they ran
    (the supernet's inherited weights: extracted once, for these trials only)."""
    if not estimator.provides_weights:
        return
    for n in sorted(keep):
        if (run_dir / WEIGHTS_DIR / f"{n}.pt").is_file():
            continue
        arch = df.loc[df["number"] == n, "arch"]
        if arch.empty or not isinstance(arch.iloc[0], str):
            continue
        from hwnas.space import Arch

        state = estimator.weights(config, Arch.from_str(arch.iloc[0]))
        if state is not None:
            save_weights(run_dir, n, state)


def _weights_number(df, number) -> int:  # noqa: ANN001
    """The trial whose weights ``number`` uses (itself, or the one it duplicates)."""
    row = df.loc[df["number"] == number].iloc[0]
    dup = row.get("duplicate_of")
    return int(number) if dup is None or _isnan(dup) else int(dup)


def _write_best(config: SearchConfig, run_dir: Path, best, weights_of: int) -> None:  # noqa: ANN001
    import torch

    from hwnas.space import Arch, build, export_onnx, export_tflite

    info = {k: (None if _isnan(best[k]) else best[k]) for k in
            ("number", "arch", "params", "madds", "latency_ms", "accuracy", "reward")}
    info = {k: (v.item() if hasattr(v, "item") else v) for k, v in info.items()}
    info.update(target=config.target, latency_budget_ms=config.latency_ms,
                resolution=config.resolution, proxy_resolution=config.proxy_resolution,
                reward_fn=config.reward, data=config.data, weights_of_trial=weights_of)
    wfile = run_dir / WEIGHTS_DIR / f"{weights_of}.pt"
    if wfile.is_file():
        atomic_copy(wfile, run_dir / "best.pt")
        state = torch.load(run_dir / "best.pt", weights_only=True)
        arch = Arch.from_str(info["arch"])
        num_classes = state["head.classifier.weight"].shape[0]
        model = build(arch, num_classes=num_classes)
        model.load_state_dict(state)
        export_onnx(arch, run_dir / "best.onnx", resolution=config.resolution, model=model)
        export_tflite(arch, run_dir / "best.tflite", resolution=config.resolution, model=model)
        info["num_classes"] = int(num_classes)
    info.update(estimator=config.estimator, supernet=config.supernet)
    if config.estimator != "train":
        info["weights"] = "inherited"  # from the supernet, BN recalibrated
    info.update(retrain_record(run_dir, info["arch"]))
    atomic_write_text(run_dir / "best.json", json.dumps(info, indent=2) + "\n")


def _isnan(v: object) -> bool:
    return isinstance(v, float) and v != v


# ----------------------------------------------------------------- reading ---
@dataclass
class Run:
    """A finished or running search, opened from its folder.

    Attributes:
        path: the run folder.
        config: the resolved configuration (dict from config.yaml).
        trials: one row per trial (DataFrame).
        best: the best trial (dict from best.json), or None.
        pareto: the accuracy/latency Pareto front (DataFrame).
    """

    path: Path
    config: dict
    trials: pd.DataFrame
    best: dict | None
    pareto: pd.DataFrame

    def plot_rewards(self, ax=None):  # noqa: ANN001, ANN201 - matplotlib objects
        """Reward of each trial and the best so far."""
        from .plots import plot_rewards

        return plot_rewards(self.trials, ax=ax)

    def plot_accuracy_vs_latency(self, ax=None, references: bool = True):  # noqa: ANN001, ANN201
        """Accuracy vs predicted latency; reference nets marked at their predicted latency."""
        from .plots import plot_accuracy_vs_latency

        refs = self.config.get("reference_latency_ms", {}) if references else {}
        family = load_family(self.path) if references else []
        return plot_accuracy_vs_latency(self.trials, self.pareto, refs,
                                        target_ms=self.config.get("latency_ms"), ax=ax,
                                        family=family)


def load_run(path: str | os.PathLike) -> Run:
    """Open a run folder written by ``nas-search``.

    >>> run = load_run("results/demo")   # doctest: +SKIP
    >>> run.trials[["arch", "latency_ms", "accuracy", "reward"]].head()  # doctest: +SKIP
    """
    p = Path(path)
    cfg_path = p / "config.yaml"
    if not cfg_path.is_file():
        raise HwnasError(f"{p} is not a run folder: no config.yaml in it")
    config = yaml.safe_load(cfg_path.read_text()) or {}
    if not isinstance(config, dict):
        raise HwnasError(f"{cfg_path}: expected a mapping, got {type(config).__name__}")
    tp = p / "trials.parquet"
    trials = pd.read_parquet(tp) if tp.is_file() else pd.DataFrame(columns=TRIAL_COLUMNS)
    bp = p / "best.json"
    best = json.loads(bp.read_text()) if bp.is_file() else None
    pp = p / "pareto.csv"
    pareto = pd.read_csv(pp) if pp.is_file() else pareto_front(trials)
    return Run(path=p, config=config, trials=trials, best=best, pareto=pareto)

"""Run a search: create or resume the run folder and its study, execute trials
(locally, in ``workers`` processes, or on Ray Tune), then write the results.

Resuming (``--resume``) reopens the run folder: finished trials are kept as
they are; trials left RUNNING by a killed process are marked failed and their
architectures queued again, so nothing finished is lost or repeated.
"""

from __future__ import annotations

import json
import multiprocessing as mp
import os
import shutil
import time
from collections.abc import Callable
from datetime import datetime
from pathlib import Path

import optuna
from filelock import FileLock, Timeout
from optuna.trial import TrialState

from .config import SearchConfig
from .objective import WEIGHTS_DIR, Components, make_objective
from .results import (
    atomic_write_df,
    atomic_write_text,
    best_trial_row,
    pareto_front,
    trials_frame,
)

LOCK_NAME = ".lock"
DEFAULT_RESULTS = Path("results")
FINISHED = (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL)
SQLITE_TIMEOUT_S = 60  # several workers write one SQLite file


class RunError(ValueError):
    """Bad run set-up (existing folder, locked run, budget out of reach): one line."""


def default_run_dir(config: SearchConfig) -> Path:
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    return DEFAULT_RESULTS / f"{config.target}-{config.latency_ms:g}ms-{stamp}"


def storage_url(config: SearchConfig, run_dir: Path) -> str:
    if config.storage:
        url = config.storage
        if url.startswith("postgresql://"):  # psycopg 3 is the driver we ship
            url = "postgresql+psycopg://" + url[len("postgresql://"):]
        return url
    return f"sqlite:///{(run_dir / 'study.db').resolve()}"


def study_name(run_dir: Path) -> str:
    """One study per run folder (its name), so runs can share a PostgreSQL storage."""
    return run_dir.resolve().name


def make_storage(config: SearchConfig, run_dir: Path) -> optuna.storages.BaseStorage:
    url = storage_url(config, run_dir)
    kwargs = {"connect_args": {"timeout": SQLITE_TIMEOUT_S}} if url.startswith("sqlite") else {}
    return optuna.storages.RDBStorage(url, engine_kwargs=kwargs)


def make_pruner(name: str) -> optuna.pruners.BasePruner:
    if name == "median":
        return optuna.pruners.MedianPruner(n_startup_trials=3, n_warmup_steps=0)
    if name == "sha":
        return optuna.pruners.SuccessiveHalvingPruner()
    if name == "hyperband":
        return optuna.pruners.HyperbandPruner()
    return optuna.pruners.NopPruner()


def open_study(config: SearchConfig, run_dir: Path, create: bool) -> optuna.Study:
    from .samplers import make_sampler

    sampler = make_sampler(config.sampler, seed=config.seed, multi_objective=config.multi_objective)
    directions = ["maximize", "minimize"] if config.multi_objective else ["maximize"]
    return optuna.create_study(study_name=study_name(run_dir), storage=make_storage(config, run_dir),
                               sampler=sampler, pruner=make_pruner(config.pruner),
                               directions=directions, load_if_exists=not create)


def _requeue_interrupted(config: SearchConfig, run_dir: Path) -> int:
    """Fail trials a killed process left RUNNING and queue their params again.

    Only called while holding the run's lock, so no live process owns them.
    """
    storage = make_storage(config, run_dir)
    study = optuna.load_study(study_name=study_name(run_dir), storage=storage)
    study_id = storage.get_study_id_from_name(study_name(run_dir))
    n = 0
    for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        tid = storage.get_trial_id_from_study_id_trial_number(study_id, t.number)
        storage.set_trial_user_attr(tid, "error", "interrupted; re-queued on resume")
        storage.set_trial_state_values(tid, TrialState.FAIL)
        if t.params:
            study.enqueue_trial(t.params, user_attrs={"requeued_from": t.number})
        n += 1
    return n


def finished_count(study: optuna.Study) -> int:
    return len(study.get_trials(deepcopy=False, states=FINISHED))


# ------------------------------------------------------------ preparation ---
def prepare(config: SearchConfig, resume: bool = False) -> tuple[SearchConfig, Path]:
    """Check the inputs and lay out the run folder; nothing is written on bad input."""
    run_dir = Path(config.out) if config.out else default_run_dir(config)
    cfg_file = run_dir / "config.yaml"
    if resume:
        if not cfg_file.is_file():
            raise RunError(f"cannot resume {run_dir}: no config.yaml there (start it without --resume)")
        saved = SearchConfig.from_yaml(cfg_file)
        # A resumed run keeps its search settings; only the budget may change.
        config = saved.model_copy(update={"trials": config.trials, "timeout_s": config.timeout_s,
                                          "workers": config.workers})
    elif cfg_file.exists():
        raise RunError(f"run folder {run_dir} already holds a run: pass --resume to continue it "
                       "or --out to start a new one")
    comp = Components.build(config, run_dir, with_data=False)  # checks space, target, reward
    smallest = comp.space.smallest()
    floor = comp.target.predict(smallest, resolution=config.resolution)
    if config.latency_ms < floor:
        raise RunError(f"latency budget {config.latency} is below the smallest net of space "
                       f"{config.space!r} on target {config.target!r}: {floor:.2f} ms "
                       f"({smallest.to_str()})")
    if not config.reference_latency_ms:
        from hwnas.space.references import REFERENCE_NAMES, reference

        refs = {n: round(comp.target.predict(reference(n), resolution=config.resolution), 3)
                for n in REFERENCE_NAMES}
        config = config.model_copy(update={"reference_latency_ms": refs})
    return config, run_dir


# ---------------------------------------------------------------- running ---
def _worker(config_yaml: str, run_dir: str, n_trials: int, timeout: float | None, threads: int) -> None:
    import yaml

    from .config import parse_config

    torch_threads(threads)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    config = parse_config(yaml.safe_load(config_yaml))
    _optimize(config, Path(run_dir), n_trials, timeout, None)


def torch_threads(n: int) -> None:
    import torch

    torch.set_num_threads(max(1, n))


def _optimize(config: SearchConfig, run_dir: Path, n_trials: int, timeout: float | None,
              on_trial: Callable[[optuna.Study, optuna.trial.FrozenTrial], None] | None) -> None:
    comp = Components.build(config, run_dir)
    study = open_study(config, run_dir, create=False)
    callbacks = [optuna.study.MaxTrialsCallback(config.trials, states=FINISHED)]
    if on_trial:
        callbacks.append(on_trial)
    study.optimize(make_objective(comp), n_trials=n_trials, timeout=timeout, callbacks=callbacks,
                   catch=(Exception,), gc_after_trial=True)


def run_search(config: SearchConfig, resume: bool = False,
               progress: Callable[[int, int, float | None], None] | None = None) -> Path:
    """Run (or resume) a search described by ``config``; returns the run folder.

    ``progress(done, total, best_reward)`` is called after every trial.
    """
    config, run_dir = prepare(config, resume)
    run_dir.mkdir(parents=True, exist_ok=True)
    lock = FileLock(str(run_dir / LOCK_NAME))
    try:
        lock.acquire(timeout=0)
    except Timeout:
        raise RunError(f"run {run_dir} is in use by another nas-search process") from None
    try:
        atomic_write_text(run_dir / "config.yaml", config.to_yaml())
        study = open_study(config, run_dir, create=not resume)
        if resume:
            _requeue_interrupted(config, run_dir)
        remaining = config.trials - finished_count(study)
        if remaining > 0:
            if config.backend == "ray":
                from .ray_backend import run_ray

                run_ray(config, run_dir, remaining, progress)
            else:
                _run_local(config, run_dir, remaining, progress)
        write_results(config, run_dir)
    finally:
        lock.release()
    return run_dir


def _run_local(config: SearchConfig, run_dir: Path, remaining: int,
               progress: Callable[[int, int, float | None], None] | None) -> None:
    def on_trial(study: optuna.Study, _t: optuna.trial.FrozenTrial) -> None:
        if progress:
            progress(finished_count(study), config.trials, _best_value(study))

    if config.workers == 1:
        _optimize(config, run_dir, remaining, config.timeout_s, on_trial)
        return
    threads = max(1, (os.cpu_count() or 1) // config.workers)
    ctx = mp.get_context("spawn")
    procs = [ctx.Process(target=_worker, args=(config.to_yaml(), str(run_dir), remaining,
                                                config.timeout_s, threads))
             for _ in range(config.workers)]
    for p in procs:
        p.start()
    study = open_study(config, run_dir, create=False)
    while any(p.is_alive() for p in procs):
        time.sleep(2.0)
        if progress:
            progress(finished_count(study), config.trials, _best_value(study))
    for p in procs:
        p.join()


def _best_value(study: optuna.Study) -> float | None:
    done = [t for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
            if t.values and "accuracy" in t.user_attrs]
    if not done:
        return None
    return max(t.values[0] for t in done)


# ---------------------------------------------------------------- results ---
def write_results(config: SearchConfig, run_dir: Path) -> None:
    """trials.parquet/csv, pareto.csv, best.json/.pt/.onnx and plots."""
    from .plots import save_run_plots

    study = open_study(config, run_dir, create=False)
    df = trials_frame(study)
    atomic_write_df(df, run_dir / "trials.parquet")
    atomic_write_df(df, run_dir / "trials.csv")
    front = pareto_front(df)
    atomic_write_df(front, run_dir / "pareto.csv")
    best = best_trial_row(df, multi_objective=config.multi_objective)
    if best is not None:
        _write_best(config, run_dir, best)
    save_run_plots(run_dir, df, front, config.reference_latency_ms, config.latency_ms)


def _write_best(config: SearchConfig, run_dir: Path, best) -> None:  # noqa: ANN001
    import torch

    from hwnas.space import Arch, build, export_onnx

    info = {k: (None if _isnan(best[k]) else best[k]) for k in
            ("number", "arch", "params", "madds", "latency_ms", "accuracy", "reward")}
    info = {k: (v.item() if hasattr(v, "item") else v) for k, v in info.items()}
    info.update(target=config.target, latency_budget_ms=config.latency_ms,
                resolution=config.resolution, proxy_resolution=config.proxy_resolution,
                reward=config.reward, data=config.data)
    atomic_write_text(run_dir / "best.json", json.dumps(info, indent=2) + "\n")
    wfile = run_dir / WEIGHTS_DIR / f"{int(best['number'])}.pt"
    if wfile.is_file():
        shutil.copyfile(wfile, run_dir / ".best.pt.tmp")
        os.replace(run_dir / ".best.pt.tmp", run_dir / "best.pt")
        state = torch.load(run_dir / "best.pt", weights_only=True)
        arch = Arch.from_str(info["arch"])
        num_classes = state["head.classifier.weight"].shape[0]
        model = build(arch, num_classes=num_classes)
        model.load_state_dict(state)
        export_onnx(arch, run_dir / "best.onnx", resolution=config.resolution, model=model)


def _isnan(v: object) -> bool:
    return isinstance(v, float) and v != v

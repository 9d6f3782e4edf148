"""The run's Optuna study: storage, name, sampler and pruner, trial counts.

Both execution backends (local processes in :mod:`hwnas.search.run`, Ray
Tune in :mod:`hwnas.search.ray_backend`) open the study through here, so a
run folder's study looks the same whichever ran it.

Pruners are a registry (:data:`PRUNER_REGISTRY`): ``--pruner``'s choices and the
config's allowed values are its keys. To add one, add an entry.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import optuna
from optuna.trial import TrialState

from .samplers import INTERRUPTED_ATTR, make_sampler

if TYPE_CHECKING:
    from .config import SearchConfig

FINISHED = (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL)
SQLITE_TIMEOUT_S = 60  # several workers write one SQLite file
# MedianPruner: a trial may be stopped once 3 others have finished (Optuna's
# default is 5; a default run has only 16 trials), at any reported epoch.
MEDIAN_STARTUP_TRIALS = 3

# run_search's progress(done, total, best): finished trials, --trials, best reward so far.
Progress = Callable[[int, int, float | None], None]

# --pruner NAME -> the pruner: stops weak trials early from their per-epoch
# reward (the accuracy so far combined with the known latency through the run's
# reward; objective.make_objective reports it); single-objective studies only.
PRUNER_REGISTRY: dict[str, Callable[[], optuna.pruners.BasePruner]] = {
    "median": lambda: optuna.pruners.MedianPruner(n_startup_trials=MEDIAN_STARTUP_TRIALS,
                                                  n_warmup_steps=0),
    "sha": optuna.pruners.SuccessiveHalvingPruner,
    # Optuna's successive halving is asynchronous (ASHA, Li et al. 2020) already; under
    # --backend ray, asha is Ray Tune's ASHAScheduler instead (ray_backend.py).
    "asha": optuna.pruners.SuccessiveHalvingPruner,
    "hyperband": optuna.pruners.HyperbandPruner,
    "none": optuna.pruners.NopPruner,
}
PRUNER_NAMES = tuple(PRUNER_REGISTRY)


def make_pruner(name: str) -> optuna.pruners.BasePruner:
    """The pruner called ``name`` (one of :data:`PRUNER_NAMES`)."""
    return PRUNER_REGISTRY[name]()


def storage_url(config: SearchConfig, run_dir: Path) -> str:
    """``config.storage`` (PostgreSQL URLs get the psycopg 3 driver), or the run's SQLite file."""
    if config.storage:
        url = config.storage
        if url.startswith("postgresql://"):  # psycopg 3 is the driver we ship
            url = "postgresql+psycopg://" + url[len("postgresql://"):]
        return url
    return f"sqlite:///{(run_dir / 'study.db').resolve()}"


def study_name(config: SearchConfig, run_dir: Path) -> str:
    """The run's study: named once, after its folder, so runs can share a
    PostgreSQL storage; the name is kept in config.yaml, so a moved or renamed
    run folder still finds its study."""
    return config.study or run_dir.resolve().name


def make_storage(config: SearchConfig, run_dir: Path) -> optuna.storages.BaseStorage:
    url = storage_url(config, run_dir)
    kwargs = {"connect_args": {"timeout": SQLITE_TIMEOUT_S}} if url.startswith("sqlite") else {}
    return optuna.storages.RDBStorage(url, engine_kwargs=kwargs)


def trial_count(config: SearchConfig, run_dir: Path) -> int:
    """Trials in the run's study so far (any state)."""
    storage = make_storage(config, run_dir)
    sid = storage.get_study_id_from_name(study_name(config, run_dir))
    return len(storage.get_all_trials(sid, deepcopy=False))


def sampler_seed(config: SearchConfig, run_dir: Path, create: bool, seed_offset: int = 0) -> int:
    """``seed + seed_offset``, plus the trials so far when the study exists, so
    resumed runs and extra workers draw new candidates."""
    return config.seed + seed_offset + (0 if create else trial_count(config, run_dir))


def open_study(config: SearchConfig, run_dir: Path, create: bool,
               seed_offset: int = 0) -> optuna.Study:
    """Create (``create``) or load the run's study with a seeded sampler
    (:func:`sampler_seed`) and the configured pruner."""
    sampler = make_sampler(config.sampler, seed=sampler_seed(config, run_dir, create, seed_offset),
                           multi_objective=config.multi_objective, trials=config.trials)
    directions = ["maximize", "minimize"] if config.multi_objective else ["maximize"]
    return optuna.create_study(study_name=study_name(config, run_dir),
                               storage=make_storage(config, run_dir), sampler=sampler,
                               pruner=make_pruner(config.pruner), directions=directions,
                               load_if_exists=not create)


def requeue_interrupted(config: SearchConfig, run_dir: Path) -> int:
    """Fail trials a killed process left RUNNING and queue their params again.

    Only called while holding the run's lock, so no live process owns them.
    Returns how many were re-queued.
    """
    storage = make_storage(config, run_dir)
    study = optuna.load_study(study_name=study_name(config, run_dir), storage=storage)
    study_id = storage.get_study_id_from_name(study_name(config, run_dir))
    n = 0
    for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        tid = storage.get_trial_id_from_study_id_trial_number(study_id, t.number)
        storage.set_trial_user_attr(tid, "error", "interrupted; re-queued on resume")
        storage.set_trial_user_attr(tid, INTERRUPTED_ATTR, True)
        storage.set_trial_state_values(tid, TrialState.FAIL)
        if t.params:
            study.enqueue_trial(t.params, user_attrs={"requeued_from": t.number})
        n += 1
    return n


def finished_count(study: optuna.Study) -> int:
    """Finished trials that count against ``--trials`` (interrupted ones do not)."""
    return sum(1 for t in study.get_trials(deepcopy=False, states=FINISHED)
               if INTERRUPTED_ATTR not in t.user_attrs)


def started_count(study: optuna.Study) -> int:
    """Trials counted as finished plus those running now (in any process)."""
    return finished_count(study) + len(study.get_trials(deepcopy=False,
                                                        states=(TrialState.RUNNING,)))


def best_value(study: optuna.Study) -> float | None:
    """The best reward so far (pareto: the best accuracy), or None."""
    done = [t for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
            if t.values and "accuracy" in t.user_attrs]
    if not done:
        return None
    return max(t.values[0] for t in done)

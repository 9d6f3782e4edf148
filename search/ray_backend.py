"""Ray Tune execution: each candidate is a Ray Tune trial with its own CPU/GPU
resources; failed trials are retried (``max_failures``). The Optuna study
lives in the run's storage exactly as with the local backend, so the results
layout is the same.

``--backend ray`` starts a local Ray for the run; ``--ray-address ADDR``
joins an existing cluster (then use a shared ``--storage postgresql://...``
so every node reaches the study).
"""

from __future__ import annotations

import os
import signal
import threading
import warnings
from pathlib import Path

import optuna
import yaml

from .config import SearchConfig, parse_config
from .objective import Components, describe_arch, evaluate_arch, record_error
from .samplers import make_sampler
from .study import (
    Progress,
    best_value,
    finished_count,
    make_storage,
    open_study,
    sampler_seed,
    study_name,
)

# Fault injection for the retry test only: when this variable names a file
# that does not exist yet, the first trial creates it and kills its worker.
KILL_ONCE_ENV = "HWNAS_TEST_KILL_WORKER_ONCE"

_COMPONENTS: dict[str, Components] = {}
PROGRESS_POLL_S = 2.0
NEW_OUTPUT_ENV = "RAY_AIR_NEW_OUTPUT"


class _StorageTrial:
    """The slice of ``optuna.Trial`` a worker needs: its number, user attrs
    written straight to the study's storage, and the study (read-only use)."""

    def __init__(self, config: SearchConfig, run_dir: Path, number: int) -> None:
        self.number = number
        self._name = study_name(config, run_dir)
        self._storage = make_storage(config, run_dir)
        sid = self._storage.get_study_id_from_name(self._name)
        self._tid = self._storage.get_trial_id_from_study_id_trial_number(sid, number)
        self._study = None

    def set_user_attr(self, key: str, value: object) -> None:
        self._storage.set_trial_user_attr(self._tid, key, value)

    @property
    def study(self) -> optuna.Study:
        if self._study is None:
            self._study = optuna.load_study(study_name=self._name, storage=self._storage)
        return self._study


def _components(config_yaml: str, run_dir: str) -> Components:
    key = config_yaml + run_dir
    if key not in _COMPONENTS:  # once per Ray worker process
        _COMPONENTS[key] = Components.build(parse_config(yaml.safe_load(config_yaml)), Path(run_dir))
    return _COMPONENTS[key]


def _trainable(params: dict, config_yaml: str, run_dir: str) -> None:
    from ray import tune

    marker = os.environ.get(KILL_ONCE_ENV)
    if marker and not os.path.exists(marker):
        Path(marker).write_text("killed\n")
        os.kill(os.getpid(), signal.SIGKILL)
    comp = _components(config_yaml, run_dir)
    number = int(params["_trial_number"])
    lat = float(params["_latency_ms"])
    arch = comp.space.decode({k: v for k, v in params.items() if not k.startswith("_")})
    trial = _StorageTrial(comp.config, comp.run_dir, number)
    try:
        value = evaluate_arch(trial, comp, arch, lat)
    except optuna.TrialPruned:
        return  # no metric reported: OptunaSearch records the trial as PRUNED
    except Exception as e:
        record_error(trial, e)
        raise
    if comp.config.multi_objective:
        acc, lat_v = value
        tune.report({"accuracy": acc, "latency_ms": lat_v})
    else:
        tune.report({"reward": value})


class _Define:
    """The define-by-run space for Ray's OptunaSearch: sample a net, record its
    arch and predicted latency on the Optuna trial. Picklable (Ray checkpoints
    the searcher); the components are rebuilt after unpickling."""

    def __init__(self, config_yaml: str, run_dir: str) -> None:
        self.config_yaml = config_yaml
        self.run_dir = run_dir
        self._comp = None

    def __getstate__(self) -> dict:
        return {"config_yaml": self.config_yaml, "run_dir": self.run_dir, "_comp": None}

    def __call__(self, trial) -> dict:  # noqa: ANN001 - Ray's Optuna trial captor
        if self._comp is None:
            config = parse_config(yaml.safe_load(self.config_yaml))
            self._comp = Components.build(config, Path(self.run_dir), with_data=False)
        arch = self._comp.space.sample(trial)
        lat = describe_arch(trial, self._comp, arch)
        return {"_trial_number": trial.number, "_latency_ms": lat}


def run_ray(config: SearchConfig, run_dir: Path, remaining: int,
            progress: Progress | None = None) -> None:
    import ray
    from ray import tune
    from ray.tune.search.optuna import OptunaSearch

    storage = make_storage(config, run_dir)
    seed = sampler_seed(config, run_dir, create=False)  # as open_study
    define = _Define(config.to_yaml(), str(run_dir))

    if config.multi_objective:
        metric, mode = ["accuracy", "latency_ms"], ["max", "min"]
    else:
        metric, mode = "reward", "max"
    searcher = OptunaSearch(space=define, metric=metric, mode=mode,
                            sampler=make_sampler(config.sampler, seed=seed,
                                                 multi_objective=config.multi_objective,
                                                 trials=config.trials),
                            study_name=study_name(config, run_dir), storage=storage)
    started_here = not ray.is_initialized()
    if started_here:
        ray.init(address=config.ray_address, include_dashboard=False, log_to_driver=False,
                 configure_logging=False, **({} if config.ray_address else
                                             {"num_cpus": os.cpu_count() or 1}))
    cpus = max(1, int(ray.cluster_resources().get("CPU", 1)) // max(1, config.workers))
    n_gpus = ray.cluster_resources().get("GPU", 0)
    gpus = min(1.0, n_gpus / max(1, config.workers)) if n_gpus >= 1 else 0  # GPUs are shared
    trainable = tune.with_resources(
        tune.with_parameters(_trainable, config_yaml=config.to_yaml(), run_dir=str(run_dir.resolve())),
        {"cpu": cpus, "gpu": gpus})

    tuner = tune.Tuner(
        trainable,
        tune_config=tune.TuneConfig(search_alg=searcher, num_samples=remaining,
                                    max_concurrent_trials=config.workers,
                                    time_budget_s=config.timeout_s),
        run_config=tune.RunConfig(name="ray", storage_path=str((run_dir / "ray").resolve()),
                                  failure_config=tune.FailureConfig(max_failures=config.max_failures),
                                  verbose=0),
    )
    done = threading.Event()

    def report() -> None:  # polls the study: Tune pickles its callbacks, a progress bar won't
        study = open_study(config, run_dir, create=False)
        stop = False
        while not stop:
            stop = done.wait(PROGRESS_POLL_S)
            progress(finished_count(study), config.trials, best_value(study))

    poller = threading.Thread(target=report, daemon=True) if progress else None
    # Ray Tune's new console output prints an experiment table even at verbose=0;
    # the legacy reporter honours it (our progress bar says what is needed).
    old_output = os.environ.get(NEW_OUTPUT_ENV)
    os.environ[NEW_OUTPUT_ENV] = "0"
    try:
        if poller:
            poller.start()
        with warnings.catch_warnings():
            # Sampling asks Optuna ~40 questions and predicts latency: about a second
            # on SQLite, which Ray flags as slow for a define-by-run space.
            warnings.filterwarnings("ignore", message="Define-by-run function")
            tuner.fit()
    finally:
        if old_output is None:
            os.environ.pop(NEW_OUTPUT_ENV, None)
        else:
            os.environ[NEW_OUTPUT_ENV] = old_output
        done.set()
        if poller:
            poller.join()
        if started_here:
            ray.shutdown()

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
import tempfile
import threading
import warnings
from pathlib import Path

import optuna
import yaml

from .config import SearchConfig, parse_config
from .estimators import WEIGHTS_DIR
from .objective import Components, describe_arch, evaluate_arch, pruning_report, record_error
from .samplers import make_sampler
from .study import (
    Progress,
    best_value,
    finished_count,
    make_pruner,
    make_storage,
    open_study,
    sampler_seed,
    storage_url,
    study_name,
)

# Fault injection for the retry test only: when this variable names a file
# that does not exist yet, the first trial creates it and kills its worker.
KILL_ONCE_ENV = "HWNAS_TEST_KILL_WORKER_ONCE"

_COMPONENTS: dict[str, Components] = {}
_STORAGES: dict[str, optuna.storages.BaseStorage] = {}
PROGRESS_POLL_S = 2.0
NEW_OUTPUT_ENV = "RAY_AIR_NEW_OUTPUT"
# Our trials report per-epoch values under EPOCH_METRIC (for ASHA) and the search
# metric only at the end; Tune's strict check would reject the epoch reports.
STRICT_METRIC_ENV = "TUNE_DISABLE_STRICT_METRIC_CHECKING"
EPOCH_METRIC = "epoch_reward"
PRUNED_KEY = "pruned"  # as ray_searcher.PRUNED_KEY


class _StorageTrial:
    """The slice of ``optuna.Trial`` a worker needs: its number, user attrs, constraints and
    per-epoch values written straight to the study's storage, the run's pruner
    asked as ``Trial.should_prune`` would, and the study (read-only use)."""

    def __init__(self, config: SearchConfig, run_dir: Path, number: int) -> None:
        self.number = number
        self._name = study_name(config, run_dir)
        self._storage = _storage(config, run_dir)
        self._pruner = make_pruner(config.pruner)
        sid = self._storage.get_study_id_from_name(self._name)
        self._tid = self._storage.get_trial_id_from_study_id_trial_number(sid, number)
        self._study = None

    def set_user_attr(self, key: str, value: object) -> None:
        self._storage.set_trial_user_attr(self._tid, key, value)

    def set_constraint(self, key: str, value: float) -> None:
        # as optuna.Trial.set_constraint stores it (samplers read ``FrozenTrial.constraints``)
        self._storage.set_trial_system_attr(self._tid, f"constraints:{key}", float(value))

    def report(self, value: float, step: int) -> None:
        self._storage.set_trial_intermediate_value(self._tid, step, value)

    def should_prune(self) -> bool:
        return self._pruner.prune(self.study, self._storage.get_trial(self._tid))

    @property
    def study(self) -> optuna.Study:
        if self._study is None:
            self._study = optuna.load_study(study_name=self._name, storage=self._storage)
        return self._study


def _storage(config: SearchConfig, run_dir: Path) -> optuna.storages.BaseStorage:
    """The run's storage, opened once per Ray worker process (opening an RDB
    storage checks its schema: a round trip per trial otherwise)."""
    url = storage_url(config, run_dir)
    if url not in _STORAGES:
        _STORAGES[url] = make_storage(config, run_dir)
    return _STORAGES[url]


def _components(config_yaml: str, run_dir: str) -> Components:
    key = config_yaml + run_dir
    if key not in _COMPONENTS:  # once per Ray worker process
        # Trials write their weights here, on the worker's own disk; they travel to the
        # driver's run folder through the run's WeightSink (the run folder may not be
        # reachable, or writable, from this node).
        scratch = Path(tempfile.mkdtemp(prefix="hwnas-trial-"))
        _COMPONENTS[key] = Components.build(parse_config(yaml.safe_load(config_yaml)), scratch)
    return _COMPONENTS[key]


def _asha_report(trial: _StorageTrial, comp: Components, lat: float):  # noqa: ANN202
    """Per-epoch reward to Ray Tune (its ASHA scheduler decides) and to the study."""
    from ray import tune

    def report(epoch: int, val_acc: float) -> None:
        value = float(comp.reward(val_acc, lat))
        trial.report(value, epoch)
        if epoch + 1 < comp.config.epochs:  # stopped here, the trial keeps what it reached
            trial.set_user_attr("accuracy", val_acc)
            trial.set_user_attr("reward", value)
            tune.report({EPOCH_METRIC: value})

    return report


def _send_weights(comp: Components, number: int, sink: str) -> None:
    import ray

    path = comp.run_dir / WEIGHTS_DIR / f"{number}.pt"
    if path.is_file():
        ray.get(ray.get_actor(sink).save.remote(number, path.read_bytes()))
        path.unlink()


def _trainable(params: dict, config_yaml: str, run_dir: str, sink: str) -> None:
    from ray import tune

    marker = os.environ.get(KILL_ONCE_ENV)
    if marker and not os.path.exists(marker):
        Path(marker).write_text("killed\n")
        os.kill(os.getpid(), signal.SIGKILL)
    comp = _components(config_yaml, run_dir)
    number = int(params["_trial_number"])
    lat = float(params["_latency_ms"])
    arch = comp.space.decode({k: v for k, v in params.items() if not k.startswith("_")})
    trial = _StorageTrial(comp.config, Path(run_dir), number)
    asha = comp.config.pruner == "asha" and not comp.config.multi_objective
    report = (_asha_report if asha else pruning_report)(trial, comp, lat)
    try:
        value = evaluate_arch(trial, comp, arch, lat, report=report)
    except optuna.TrialPruned:
        tune.report({PRUNED_KEY: 1})  # no search metric: OptunaSearch records it PRUNED
        return
    except Exception as e:
        record_error(trial, e)
        raise
    _send_weights(comp, number, sink)
    if comp.config.multi_objective:
        acc, lat_v = value
        tune.report({"accuracy": acc, "latency_ms": lat_v})
    else:
        tune.report({"reward": value, EPOCH_METRIC: value})


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


def _resources(config: SearchConfig) -> dict:
    """CPUs and GPUs of one trial: as given, else the cluster's CPUs shared by
    ``workers`` and one whole GPU per trial when the cluster has GPUs."""
    import ray

    total = ray.cluster_resources()
    cpus = config.cpus_per_trial or max(1, int(total.get("CPU", 1)) // max(1, config.workers))
    gpus = config.gpus_per_trial
    if gpus is None:
        gpus = 1 if total.get("GPU", 0) >= 1 else 0
    return {"cpu": cpus, "gpu": gpus}


def _scheduler(config: SearchConfig):  # noqa: ANN202
    """Ray Tune's ASHA for ``--pruner asha``; otherwise None (FIFO): the study's
    own pruner acts, from inside each trial, exactly as with the local backend."""
    if config.pruner != "asha" or config.multi_objective:
        return None
    from ray.tune.schedulers import ASHAScheduler

    return ASHAScheduler(time_attr="training_iteration", metric=EPOCH_METRIC, mode="max",
                         max_t=config.epochs, grace_period=1)


def run_ray(config: SearchConfig, run_dir: Path, remaining: int,
            progress: Progress | None = None) -> None:
    import ray
    from ray import tune

    from .ray_searcher import RunSearcher, start_weight_sink

    storage = make_storage(config, run_dir)
    seed = sampler_seed(config, run_dir, create=False)  # as open_study
    define = _Define(config.to_yaml(), str(run_dir))

    if config.multi_objective:
        metric, mode = ["accuracy", "latency_ms"], ["max", "min"]
    else:
        metric, mode = "reward", "max"
    searcher = RunSearcher(space=define, metric=metric, mode=mode,
                           sampler=make_sampler(config.sampler, seed=seed,
                                                multi_objective=config.multi_objective,
                                                trials=config.trials),
                           study_name=study_name(config, run_dir), storage=storage,
                           timeout_s=config.timeout_s, timeout_kill=config.timeout_kill)
    started_here = not ray.is_initialized()
    if started_here:
        ray.init(address=config.ray_address, include_dashboard=False, log_to_driver=False,
                 configure_logging=False, **({} if config.ray_address else
                                             {"num_cpus": os.cpu_count() or 1}))
    sink_name = f"hwnas-weights-{os.getpid()}-{study_name(config, run_dir)}"
    sink = start_weight_sink(run_dir, sink_name)
    trainable = tune.with_resources(
        tune.with_parameters(_trainable, config_yaml=config.to_yaml(),
                             run_dir=str(run_dir.resolve()), sink=sink_name),
        _resources(config))

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
    saved_env = {k: os.environ.get(k) for k in (NEW_OUTPUT_ENV, STRICT_METRIC_ENV)}
    os.environ[NEW_OUTPUT_ENV] = "0"
    os.environ[STRICT_METRIC_ENV] = "1"
    try:  # from here on the sink and a Ray started here are released, whatever fails
        tuner = tune.Tuner(
            trainable,
            tune_config=tune.TuneConfig(search_alg=searcher, scheduler=_scheduler(config),
                                        num_samples=remaining, max_concurrent_trials=config.workers,
                                        # One actor per slot runs trial after trial: the worker
                                        # process, its imports and its loaded data (_components)
                                        # are paid once, not per trial (bench/ray_vs_local.py).
                                        reuse_actors=True,
                                        # --timeout-kill: Tune ends running trials at the timeout;
                                        # otherwise the searcher stops starting new ones.
                                        time_budget_s=config.timeout_s if config.timeout_kill else None),
            run_config=tune.RunConfig(name="ray", storage_path=str((run_dir / "ray").resolve()),
                                      failure_config=tune.FailureConfig(max_failures=config.max_failures),
                                      verbose=0),
        )
        if poller:
            poller.start()
        with warnings.catch_warnings():
            # Sampling asks Optuna ~40 questions and predicts latency: about a second
            # on SQLite, which Ray flags as slow for a define-by-run space.
            warnings.filterwarnings("ignore", message="Define-by-run function")
            tuner.fit()
    finally:
        for k, v in saved_env.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
        done.set()
        if poller:
            poller.join()
        ray.kill(sink)
        if started_here:
            ray.shutdown()

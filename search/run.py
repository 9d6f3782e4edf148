"""Run a search: create or resume the run folder and its study, execute trials
(locally, in ``workers`` processes, or on Ray Tune), then write the results.

Resuming (``--resume``) reopens the run folder: finished trials are kept as
they are; trials left RUNNING by a killed process are marked failed
(``interrupted``, not counted against ``--trials``) and their architectures
queued again, so nothing finished is lost or repeated. The sampler is reseeded
from the number of trials already in the study, so a resumed run does not
replay the first run's random draws.
"""

from __future__ import annotations

import gc
import logging
import multiprocessing as mp
import os
import shutil
import threading
import time
from collections.abc import Callable
from datetime import datetime
from pathlib import Path

import optuna
import torch
import yaml
from filelock import FileLock, Timeout
from optuna.trial import TrialState

from hwnas.common.atomic import atomic_write_text
from hwnas.common.errors import HwnasError
from hwnas.common.units import shorten
from hwnas.proxy import save_split_manifest
from hwnas.proxy.train import resolve_device
from hwnas.space.references import REFERENCE_NAMES, reference
from hwnas.space.visibility import invisible_decisions

from .budget import enqueue_warm_starts, fastest_latency
from .config import RESUMABLE_FIELDS, SearchConfig, parse_config
from .estimators import ESTIMATOR_REGISTRY, plan_supernet
from .objective import Components, make_objective
from .ray_backend import run_ray
from .results import write_results
from .retrain import retrain_best
from .storage import (
    STUDY_FILE,
    check_run_folder,
    check_shared_storage,
    check_sqlite_study,
    saved_config,
)
from .study import (
    FINISHED,
    INTERRUPTED_ATTR,
    SQLITE_TIMEOUT_S,
    Progress,
    best_value,
    finished_count,
    make_pruner,
    make_storage,
    open_study,
    requeue_interrupted,
    started_count,
    storage_url,
    study_name,
)

# Names that lived here before study.py held them; kept importable from here.
__all__ = [
    "FINISHED", "INTERRUPTED_ATTR", "SQLITE_TIMEOUT_S", "RunError", "best_value",
    "default_run_dir", "fastest_latency", "finished_count", "make_pruner", "make_storage",
    "open_study", "prepare", "run_search", "started_count", "storage_url", "study_name",
    "prefilter_warning",
    "visibility_warning",
]

LOCK_NAME = ".lock"
START_LOCK_NAME = ".start.lock"
DEFAULT_RESULTS = Path("results")
# Seed offset between local worker processes, so they do not draw the same nets.
WORKER_SEED_STRIDE = 1000


_log = logging.getLogger("hwnas.search")


class RunError(HwnasError):
    """Bad run set-up (existing folder, locked run, budget out of reach): one line."""


def default_run_dir(config: SearchConfig) -> Path:
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    return DEFAULT_RESULTS / f"{config.target}-{config.latency_ms:g}ms-{stamp}"


# ------------------------------------------------------------ preparation ---
def _check_storage(config: SearchConfig, run_dir: Path, resume: bool) -> None:
    if not config.storage:
        return
    try:
        storage = make_storage(config, run_dir)
        names = {s.study_name for s in storage.get_all_studies()}
    except Exception as e:  # bad URL, server down, driver missing
        detail = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise RunError(f"cannot open storage {config.storage!r}: {detail}") from None
    name = study_name(config, run_dir)
    if resume and name not in names:
        raise RunError(f"cannot resume: storage {config.storage!r} has no study {name!r}")
    if not resume and name in names:
        raise RunError(f"storage {config.storage!r} already holds a study {name!r}: pass "
                       "--resume to continue it or --out to start a new run")


def prepare(config: SearchConfig, resume: bool = False,
            with_data: bool = True) -> tuple[SearchConfig, Path, Components]:
    """Check the inputs; nothing is written on bad input.

    Returns the resolved config (reference latencies filled in), the run folder
    and the components (space, target, reward and, with ``with_data``, data).
    """
    run_dir = Path(config.out) if config.out else default_run_dir(config)
    cfg_file = run_dir / "config.yaml"
    check_run_folder(run_dir)
    if resume:
        if not cfg_file.is_file():
            raise RunError(f"cannot resume {run_dir}: no config.yaml there (start it without --resume)")
        saved = saved_config(cfg_file)
        # A resumed run keeps its search settings; only the budget may change.
        config = saved.model_copy(update={k: getattr(config, k) for k in RESUMABLE_FIELDS})
        if not config.storage:
            check_sqlite_study(run_dir / STUDY_FILE, study_name(config, run_dir))
    elif cfg_file.exists():
        raise RunError(f"run folder {run_dir} already holds a run: pass --resume to continue it "
                       "or --out to start a new one")
    check_shared_storage(config)
    local = config.backend == "local" or not config.ray_address
    if local:
        device = resolve_device(config.device)  # cuda asked for without one: one line, now
        if (not resume and config.backend == "local" and device.type == "cuda"
                and "workers" not in config.model_fields_set):
            config = config.model_copy(update={"workers": torch.cuda.device_count()})
    comp = Components.build(config, run_dir, with_data=False)  # checks space, target, reward
    floor, fastest = fastest_latency(comp)
    if config.latency_ms < floor:
        raise RunError(f"latency budget {config.latency} is below the fastest net of space "
                       f"{config.space!r} on target {config.target!r}: {floor:.2f} ms "
                       f"({fastest})")
    _check_storage(config, run_dir, resume)
    if with_data:
        comp.load_data()  # a missing data set is reported before anything is written
    if not config.study:
        config = config.model_copy(update={"study": study_name(config, run_dir)})
    if not config.reference_latency_ms:
        refs = {n: round(comp.predict_ms(reference(n)), 3) for n in REFERENCE_NAMES}
        config = config.model_copy(update={"reference_latency_ms": refs})
    comp.config = config
    return config, run_dir, comp


# Proxy resolutions tried, in order, for the one that makes every decision visible.
VISIBLE_RESOLUTIONS = (32, 48, 64, 96, 128, 160, 192, 224)


def visibility_warning(config: SearchConfig) -> str | None:
    """One line when decisions are invisible at ``config.proxy_resolution``, else None.

    A kernel larger than the feature map it slides on computes what a smaller
    one does (:func:`hwnas.space.visibility.invisible_decisions`): the search is
    charged its latency (priced at ``--resolution``) but cannot see its accuracy.
    """
    from hwnas.space.searchspace import get_space

    space = get_space(config.space)
    lines = invisible_decisions(space, config.proxy_resolution)
    if not lines:
        return None
    blocks = ", ".join(line.split(" ", 1)[0].removesuffix("_kernel") for line in lines)
    fix = next((r for r in VISIBLE_RESOLUTIONS if r > config.proxy_resolution
                and not invisible_decisions(space, r)), None)
    hint = f"; --proxy-resolution {fix} makes every decision visible" if fix else ""
    return (f"at --proxy-resolution {config.proxy_resolution} the kernel choices of blocks "
            f"{blocks} are invisible (feature map smaller than the kernel's reach: the search "
            f"pays their latency but cannot see their accuracy){hint}")


def prefilter_warning(config: SearchConfig) -> str | None:
    """One line when a zero-cost prefilter is on: measured, it ranks against accuracy here.

    ``bench/estimator_fidelity.py`` (docs/search.md): over 30 trained ``mobilenetv3``
    nets both scores rank the nets *against* their standalone accuracy, also
    within the prefilter's latency bands, so the prefilter tends to discard the
    better candidates of a band. It stays available for other data.
    """
    if config.prefilter == "none":
        return None
    return (f"--prefilter {config.prefilter}: on the 30-net benchmark (docs/search.md) zero-cost "
            "scores ranked networks against their trained accuracy, within latency bands too; "
            "it may discard the better candidates: check it on your data first")


def _ensure_supernet(config: SearchConfig, comp: Components, resume: bool,
                     notify: Callable[[str], None]) -> tuple[SearchConfig, object | None]:
    """Resolve the run's supernet id (estimator supernet); settings to train it, or None."""
    if not ESTIMATOR_REGISTRY[config.estimator].needs_supernet:
        return config, None
    if comp.data is None:
        comp.load_data()
    sid, to_train = plan_supernet(config, len(comp.data.train_y))
    if config.supernet != sid:
        config = config.model_copy(update={"supernet": sid})
    if to_train is None and not resume:
        notify(f"supernet {sid}: cached, no training needed")
    return config, to_train


# ---------------------------------------------------------------- running ---
def _exit_with_parent(parent: int) -> None:
    """A worker whose parent died (even by kill -9) stops at once."""

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(1.0)
        os._exit(1)

    threading.Thread(target=watch, daemon=True).start()


def _worker(config_yaml: str, run_dir: str, timeout: float | None, threads: int, index: int,
            parent: int) -> None:
    _exit_with_parent(parent)
    torch_threads(threads)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    config = parse_config(yaml.safe_load(config_yaml))
    gpus = torch.cuda.device_count() if config.device in ("auto", "cuda") else 0
    if gpus > 1:  # one trial per GPU: worker i trains on GPU i (mod the count)
        config = config.model_copy(update={"device": f"cuda:{index % gpus}"})
    comp = Components.build(config, Path(run_dir))
    _optimize(comp, timeout, None, seed_offset=WORKER_SEED_STRIDE * index)


def torch_threads(n: int) -> None:
    torch.set_num_threads(max(1, n))


def _optimize(comp: Components, timeout: float | None,
              on_trial: Callable[[optuna.Study, optuna.trial.FrozenTrial], None] | None,
              seed_offset: int = 0) -> None:
    """Run trials one at a time until ``config.trials`` are finished or running
    (in any process sharing the run) or ``timeout`` seconds have passed.

    Checking the count and starting a trial happen under one file lock, so
    workers never start more trials than asked for.
    """
    config, run_dir = comp.config, comp.run_dir
    study = open_study(config, run_dir, create=False, seed_offset=seed_offset)
    objective = make_objective(comp)
    deadline = None if timeout is None else time.monotonic() + timeout
    start_lock = FileLock(str(run_dir / START_LOCK_NAME))
    while deadline is None or time.monotonic() < deadline:
        with start_lock:
            if started_count(study) >= config.trials:
                return
            trial = study.ask()
        frozen = _run_trial(study, trial, objective)
        gc.collect()
        if on_trial:
            on_trial(study, frozen)


def _run_trial(study: optuna.Study, trial: optuna.Trial, objective: Callable) -> optuna.trial.FrozenTrial:
    """``objective(trial)`` told to the study: PRUNED, FAIL on any exception
    (the search goes on), else its value(s) (a NaN value is a FAIL too)."""
    try:
        value = objective(trial)
    except optuna.TrialPruned:
        return study.tell(trial, state=TrialState.PRUNED)
    except Exception as e:  # noqa: BLE001 - recorded on the trial by the objective
        _log.warning("trial %d failed: %s: %s", trial.number, type(e).__name__, e)
        return study.tell(trial, state=TrialState.FAIL)
    return study.tell(trial, value)


def run_search(config: SearchConfig, resume: bool = False,
               progress: Progress | None = None,
               notify: Callable[[str], None] | None = None) -> Path:
    """Run (or resume) a search described by ``config``; returns the run folder.

    ``notify(line)`` receives one-line notices once the inputs are checked
    (the invisible-decision warning, the supernet used or trained); default:
    the ``hwnas.search`` logger. With ``--estimator supernet`` a supernet is
    trained first when none is cached (its own progress bar with ``progress``).
    ``progress(done, total, best)`` is called once when the run is set up
    (inputs checked, folder and study created, supernet ready) and after every
    trial (best: the best reward, or for ``pareto`` the best accuracy, so far).
    """
    notify = notify or _log.warning
    local_data = config.backend == "local" or not config.ray_address
    config, run_dir, comp = prepare(config, resume, with_data=local_data)
    config, supernet_to_train = _ensure_supernet(config, comp, resume, notify)
    comp.config = config
    for warning in (visibility_warning(config), prefilter_warning(config)):
        if warning and not resume:
            notify("warning: " + warning)
    created = not run_dir.exists()
    run_dir.mkdir(parents=True, exist_ok=True)
    lock = FileLock(str(run_dir / LOCK_NAME))
    try:
        lock.acquire(timeout=0)
    except Timeout:
        raise RunError(f"run {run_dir} is in use by another nas-search process") from None
    except OSError as e:  # a read-only folder or file system
        if created:
            shutil.rmtree(run_dir, ignore_errors=True)
        raise RunError(f"cannot write the run folder {shorten(str(run_dir))} "
                       f"({e.strerror or type(e).__name__}): make it writable or pass another "
                       "--out") from None
    started = False
    try:
        study = open_study(config, run_dir, create=not resume)
        atomic_write_text(run_dir / "config.yaml", config.to_yaml())
        started = True
        if comp.data is not None and hasattr(comp.data, "split_manifest"):
            save_split_manifest(comp.data, run_dir)  # which images trained and scored the nets
        if resume:
            requeue_interrupted(config, run_dir)
        elif config.warm_start:
            notify(enqueue_warm_starts(study, comp, config.warm_start, config.seed))
        if supernet_to_train is not None:
            _train_supernet(supernet_to_train, config.supernet, notify, progress is not None,
                            config.device)
        if progress:  # set-up passed: the caller may show its progress from here on
            progress(finished_count(study), config.trials, best_value(study))
        remaining = config.trials - finished_count(study)
        if remaining > 0:
            if config.backend == "ray":
                run_ray(config, run_dir, remaining, progress)
            else:
                _run_local(comp, progress)
        write_results(config, run_dir, open_study(config, run_dir, create=False))
        if config.retrain_epochs:
            retrain_best(config, run_dir, notify)
    except KeyboardInterrupt:
        if started:  # keep what finished readable; the run continues with --resume
            write_results(config, run_dir, open_study(config, run_dir, create=False))
        raise
    except Exception:
        if created and not started:  # nothing of value there yet
            lock.release()
            shutil.rmtree(run_dir, ignore_errors=True)
        raise
    finally:
        lock.release()
    return run_dir


def _train_supernet(settings: object, sid: str | None, notify: Callable[[str], None],
                    bar: bool, device: str = "auto") -> None:
    from hwnas.supernet import train_supernet

    t0 = time.monotonic()
    notify(f"training supernet {sid} ({settings.epochs} epochs; once, then cached "
           f"under $HWNAS_HOME/supernets) before the search")
    train_supernet(settings, device=device, progress=bar)
    notify(f"supernet {sid} trained in {time.monotonic() - t0:.0f} s")


def _run_local(comp: Components,
               progress: Progress | None) -> None:
    config, run_dir = comp.config, comp.run_dir

    def on_trial(study: optuna.Study, _t: optuna.trial.FrozenTrial) -> None:
        if progress:
            progress(finished_count(study), config.trials, best_value(study))

    kill_at = (time.monotonic() + config.timeout_s
               if config.timeout_kill and config.timeout_s is not None else None)
    if config.workers == 1 and kill_at is None:
        _optimize(comp, config.timeout_s, on_trial)
        return
    threads = max(1, (os.cpu_count() or 1) // config.workers)
    ctx = mp.get_context("spawn")
    procs = [ctx.Process(target=_worker, args=(config.to_yaml(), str(run_dir), config.timeout_s,
                                                threads, i, os.getpid()))
             for i in range(config.workers)]
    for p in procs:
        p.start()
    study = open_study(config, run_dir, create=False)
    try:
        while any(p.is_alive() for p in procs):
            time.sleep(2.0)
            if kill_at is not None and time.monotonic() >= kill_at:
                break  # --timeout-kill: the running trials end (re-queued by --resume)
            if progress:
                progress(finished_count(study), config.trials, best_value(study))
    finally:
        for p in procs:
            if p.is_alive():
                p.terminate()
            p.join()

"""Ray-side pieces of the Ray backend (imported only when Ray runs a search).

* :class:`RunSearcher`: Ray's ``OptunaSearch`` made to behave like the local
  backend. Per-epoch values reach the study from the trial itself (the worker
  reports to the storage and asks the study's pruner, so the search's
  ``--pruner`` acts as it does locally); ``--timeout`` stops *starting*
  trials (running ones finish) unless ``--timeout-kill``, whose killed trials
  are left RUNNING in the study, which ``--resume`` re-queues.
* :class:`WeightSink`: an actor on the driver's node that writes the trials'
  weights into the run folder, so ``best.pt``/``best.onnx`` exist on the
  driver whatever file systems the workers have.
"""

from __future__ import annotations

import io
import time
from pathlib import Path

import ray
import torch
from ray.tune.search import Searcher
from ray.tune.search.optuna import OptunaSearch

from hwnas.common.atomic import atomic_save_state_dict

from .estimators import WEIGHTS_DIR

PRUNED_KEY = "pruned"  # in a trial's last result when the trial itself was pruned


class RunSearcher(OptunaSearch):
    """OptunaSearch with local-backend timeout semantics (see the module doc)."""

    def __init__(self, *args, timeout_s: float | None = None, timeout_kill: bool = False,
                 **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.timeout_s = timeout_s
        self.timeout_kill = timeout_kill
        self.deadline: float | None = None  # set by the first suggestion: the search's start

    def _past_deadline(self) -> bool:
        return self.deadline is not None and time.time() >= self.deadline

    def suggest(self, trial_id: str) -> dict | None:
        if self.deadline is None and self.timeout_s is not None:
            self.deadline = time.time() + self.timeout_s
        if self._past_deadline():
            return Searcher.FINISHED  # running trials finish; no new one starts
        return super().suggest(trial_id)

    def on_trial_result(self, trial_id: str, result: dict) -> None:
        """Per-epoch values were reported to the study by the trial itself."""

    def on_trial_complete(self, trial_id: str, result: dict | None = None,
                          error: bool = False) -> None:
        metrics = self.metric if isinstance(self.metric, list) else [self.metric]
        finished = bool(result) and (all(result.get(m) is not None for m in metrics)
                                     or result.get(PRUNED_KEY))
        if self.timeout_kill and self._past_deadline() and not finished and not error:
            # Ended by --timeout-kill mid-training: left RUNNING, re-queued by --resume.
            self._completed_trials.add(trial_id)
            return
        super().on_trial_complete(trial_id, result, error)


@ray.remote(num_cpus=0)
class WeightSink:
    """Writes ``weights/<number>.pt`` into the run folder on the driver's node."""

    def __init__(self, run_dir: str) -> None:
        self.folder = Path(run_dir) / WEIGHTS_DIR

    def save(self, number: int, payload: bytes) -> str:
        state = torch.load(io.BytesIO(payload), map_location="cpu", weights_only=True)
        self.folder.mkdir(parents=True, exist_ok=True)
        path = self.folder / f"{number}.pt"
        atomic_save_state_dict(state, path)
        return str(path)


def start_weight_sink(run_dir: Path, name: str) -> ray.actor.ActorHandle:
    """The run's :class:`WeightSink`, pinned to this (the driver's) node, named ``name``."""
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    here = ray.get_runtime_context().get_node_id()
    return WeightSink.options(name=name, scheduling_strategy=NodeAffinitySchedulingStrategy(
        here, soft=False)).remote(str(run_dir.resolve()))

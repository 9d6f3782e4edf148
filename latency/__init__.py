"""hwnas.latency: per-layer latency tables, targets, prediction and validation.

>>> from hwnas.latency import load_target
>>> from hwnas.space.references import reference
>>> round(load_target("pixel").predict(reference("mobilenetv3_large")))
51
"""

from .fast import SpaceLatency, space_keys
from .keys import LayerKey, layer_keys
from .measured import MeasuredTarget, make_runner, validate
from .registry import create_target, hwnas_home, load_target, target_names
from .runner import Runner, RunnerError, Stats
from .table import LatencyTable, TableError
from .target import SOURCE_MEASURED, SOURCE_MODELLED, Target

__all__ = [
    "SOURCE_MEASURED",
    "SOURCE_MODELLED",
    "LatencyTable",
    "LayerKey",
    "MeasuredTarget",
    "Runner",
    "RunnerError",
    "SpaceLatency",
    "Stats",
    "TableError",
    "Target",
    "create_target",
    "hwnas_home",
    "layer_keys",
    "load_target",
    "make_runner",
    "space_keys",
    "target_names",
    "validate",
]

"""hwnas.latency: per-layer latency tables, targets, prediction and validation.

>>> from hwnas.latency import load_target
>>> from hwnas.space.references import reference
>>> round(load_target("pixel").predict(reference("mobilenetv3_large")))
52
"""

from hwnas.common.home import hwnas_home

from .keys import LayerKey, layer_keys
from .measured_target import MeasuredTarget
from .measurement import measure_arch, measure_keys
from .registry import create_target, load_target, target_names
from .runners import RUNNER_KINDS, LocalRunner, Runner, RunnerError, Stats, make_runner
from .space_latency import SpaceLatency, space_keys
from .table import LatencyTable, TableError
from .target import SOURCE_MEASURED, SOURCE_MODELLED, Target
from .validation import validate

__all__ = [
    "RUNNER_KINDS",
    "SOURCE_MEASURED",
    "SOURCE_MODELLED",
    "LatencyTable",
    "LayerKey",
    "LocalRunner",
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
    "measure_arch",
    "measure_keys",
    "space_keys",
    "target_names",
    "validate",
]

"""hwnas.space: architecture specs, the search space, reference networks, builders."""

from .build import build
from .counts import breakdown
from .notation import NotationError
from .onnx_export import export_onnx
from .references import REFERENCE_NAMES, reference
from .searchspace import SPACE_NAMES, Decision, SearchSpace, get_space
from .skeletons import block_uniform
from .spec import Arch, BlockSpec, HeadSpec, Layer, StemSpec, make_divisible
from .tflite_export import export_tflite

__all__ = [
    "Arch", "BlockSpec", "Decision", "HeadSpec", "Layer", "StemSpec", "NotationError",
    "REFERENCE_NAMES", "SPACE_NAMES", "SearchSpace", "block_uniform", "breakdown", "build",
    "export_onnx", "export_tflite", "get_space", "make_divisible", "reference",
]

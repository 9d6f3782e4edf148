"""hwnas.space: architecture specs, the search space, reference networks, builders."""

from .build import build
from .counts import breakdown
from .notation import NotationError
from .onnx_export import export_onnx
from .references import REFERENCE_NAMES, reference
from .spec import Arch, BlockSpec, HeadSpec, Layer, StemSpec, make_divisible

__all__ = [
    "Arch", "BlockSpec", "HeadSpec", "Layer", "StemSpec", "NotationError", "REFERENCE_NAMES",
    "breakdown", "build", "export_onnx", "make_divisible", "reference",
]

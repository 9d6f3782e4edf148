"""The latency-target contract shared by measured (``host``, user devices) and
fitted (``pixel``) targets.

A target turns layer keys into milliseconds. A network's predicted latency is
the sum over its layers (stem, blocks, head): the per-call overhead of the
runtime is measured and subtracted when tables are built, so sums match whole
networks (see docs/latency.md).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterable, Sequence

import numpy as np
import pandas as pd

from hwnas.space.spec import Arch

from .keys import LayerKey, layer_keys

SOURCE_MEASURED = "measured"
SOURCE_MODELLED = "modelled"


class Target(ABC):
    """A device on which latencies are known.

    Subclasses implement :meth:`lookup`; everything else is shared.

    Attributes:
        name: the target's name (``host``, ``pixel``, ...).
        provenance: where the numbers come from: device, runtime and version,
            threads, date, method, sources; shown by ``nas-latency targets``.
    """

    name: str
    provenance: dict

    def __init__(self) -> None:
        self._cache: dict[LayerKey, tuple[float, str]] = {}

    @abstractmethod
    def lookup(self, keys: Sequence[LayerKey]) -> list[tuple[float, str]]:
        """Milliseconds and source (``measured`` / ``modelled``) for each key.

        Measured targets may measure missing keys here (on-demand fill).
        """

    # --- shared -------------------------------------------------------
    def layer_ms(self, keys: Sequence[LayerKey]) -> list[tuple[float, str]]:
        missing = list(dict.fromkeys(k for k in keys if k not in self._cache))
        if missing:
            for k, v in zip(missing, self.lookup(missing), strict=True):
                self._cache[k] = (float(v[0]), v[1])
        return [self._cache[k] for k in keys]

    def predict(self, arch: Arch, resolution: int = 224, num_classes: int = 1000) -> float:
        """Predicted end-to-end latency of ``arch`` in ms."""
        return float(sum(ms for ms, _ in self.layer_ms(layer_keys(arch, resolution, num_classes))))

    def predict_many(self, archs: Iterable[Arch], resolution: int = 224, num_classes: int = 1000) -> np.ndarray:
        """Predicted latencies (ms) of many networks as a numpy array."""
        archs = list(archs)
        keys_per = [layer_keys(a, resolution, num_classes) for a in archs]
        self.layer_ms([k for ks in keys_per for k in ks])  # one batched fill
        cache = self._cache
        return np.fromiter((sum(cache[k][0] for k in ks) for ks in keys_per), dtype=float, count=len(archs))

    def breakdown(self, arch: Arch, resolution: int = 224, num_classes: int = 1000) -> pd.DataFrame:
        """One row per layer: part, key, ms, source (measured or modelled)."""
        keys = layer_keys(arch, resolution, num_classes)
        rows = []
        for k, (ms, src) in zip(keys, self.layer_ms(keys), strict=True):
            rows.append({"part": k.part, "key": str(k), "ms": ms, "source": src})
        return pd.DataFrame(rows, columns=["part", "key", "ms", "source"])

    def describe(self) -> dict:
        """Name and provenance, for listings."""
        return {"name": self.name, **self.provenance}

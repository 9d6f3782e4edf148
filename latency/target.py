"""The latency-target contract shared by measured (``host``, user devices) and
fitted (``pixel``) targets.

A target turns layer keys into milliseconds. A network's predicted latency is
the sum over its layers (stem, blocks, head) plus the runtime's per-call
overhead, counted once per network (:attr:`Target.overhead_ms`): measured
tables subtract that overhead from every layer when they are built, so layer
sums plus one overhead match whole networks (see docs/latency.md). Fitted
targets (``pixel``) have no separate overhead (0).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np
import pandas as pd

from hwnas.space.spec import Arch

from .keys import LayerKey, layer_keys

SOURCE_MEASURED = "measured"
SOURCE_MODELLED = "modelled"
OVERHEAD_PART = "overhead"  # the extra breakdown row: once per network, not a layer


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
        self._fast: dict[tuple, Any] = {}

    @abstractmethod
    def lookup(self, keys: Sequence[LayerKey]) -> list[tuple[float, str]]:
        """Milliseconds and source (``measured`` / ``modelled``) for each key.

        Measured targets may measure missing keys here (on-demand fill).
        """

    @property
    def overhead_ms(self) -> float:
        """Per-call runtime overhead (ms), added once to every network's prediction."""
        return 0.0

    # --- shared -------------------------------------------------------
    def layer_ms(self, keys: Sequence[LayerKey]) -> list[tuple[float, str]]:
        missing = list(dict.fromkeys(k for k in keys if k not in self._cache))
        if missing:
            for k, v in zip(missing, self.lookup(missing), strict=True):
                self._cache[k] = (float(v[0]), v[1])
        return [self._cache[k] for k in keys]

    def predict(self, arch: Arch, resolution: int = 224, num_classes: int = 1000) -> float:
        """Predicted end-to-end latency of ``arch`` in ms (layers + one overhead)."""
        layers = sum(ms for ms, _ in self.layer_ms(layer_keys(arch, resolution, num_classes)))
        return float(layers + self.overhead_ms)

    def predict_many(
        self,
        archs: Iterable[Arch] | np.ndarray,
        resolution: int = 224,
        num_classes: int = 1000,
        *,
        space: Any = None,
    ) -> np.ndarray:
        """Predicted latencies (ms) of many networks as a numpy array.

        Args:
            archs: architectures, or with ``space`` an ``(n, d)`` integer matrix of
                decision indices of that search space (``SearchSpace.sample_indices``);
                the matrix takes the vectorised path of :mod:`hwnas.latency.fast`.
            space: a ``SearchSpace`` (or its name) when ``archs`` is an index matrix.
        """
        if space is not None:
            return self.space_latency(space, resolution, num_classes).predict_indices(archs)
        archs = list(archs)
        keys_per = [layer_keys(a, resolution, num_classes) for a in archs]
        self.layer_ms([k for ks in keys_per for k in ks])  # one batched fill
        cache = self._cache
        over = self.overhead_ms
        return np.fromiter(
            (sum(cache[k][0] for k in ks) + over for ks in keys_per), dtype=float, count=len(archs)
        )

    def space_latency(self, space: Any, resolution: int = 224, num_classes: int = 1000) -> Any:
        """The vectorised predictor of a search space on this target (cached)."""
        from .fast import SpaceLatency, resolve_space

        sp = resolve_space(space)
        key = (sp.name, resolution, num_classes, self.overhead_ms)
        if key not in self._fast:
            self._fast[key] = SpaceLatency(self, sp, resolution, num_classes)
        return self._fast[key]

    def breakdown(self, arch: Arch, resolution: int = 224, num_classes: int = 1000) -> pd.DataFrame:
        """One row per layer: part, key, ms, source (measured or modelled).

        When the target has a per-call overhead, a last row with part and key
        ``overhead`` carries it, so the ``ms`` column sums to :meth:`predict`.
        """
        keys = layer_keys(arch, resolution, num_classes)
        rows = []
        for k, (ms, src) in zip(keys, self.layer_ms(keys), strict=True):
            rows.append({"part": k.part, "key": str(k), "ms": ms, "source": src})
        if self.overhead_ms:
            rows.append(
                {
                    "part": OVERHEAD_PART,
                    "key": OVERHEAD_PART,
                    "ms": self.overhead_ms,
                    "source": SOURCE_MEASURED,
                }
            )
        return pd.DataFrame(rows, columns=["part", "key", "ms", "source"])

    def describe(self) -> dict:
        """Name and provenance, for listings."""
        return {"name": self.name, **self.provenance}

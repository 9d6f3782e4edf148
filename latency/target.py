"""The latency-target contract shared by measured (``host``, user devices) and
fitted (``pixel``) targets.

A target answers for itself, so no caller checks its type:
:meth:`Target.describe` gives its row in ``nas-latency targets``,
:meth:`Target.missing` the keys it would have to measure (none for a fitted
target), and :attr:`Target.can_measure` whether :meth:`Target.fill` and
:meth:`Target.measure` work; a fitted target refuses them with a one-line
:class:`~hwnas.common.errors.HwnasError`.

A target turns layer keys into milliseconds. A network's predicted latency is
the sum over its layers (stem, blocks, head) plus the runtime's per-call
overhead, counted once per network (:attr:`Target.overhead_ms`): measured
tables subtract that overhead from every layer when they are built, so layer
sums plus one overhead match whole networks (see docs/latency.md). Fitted
targets (``pixel``) have no separate overhead (0).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Sequence
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np
import pandas as pd

from hwnas.common.errors import HwnasError
from hwnas.space.spec import Arch

from .keys import LayerKey, layer_keys

if TYPE_CHECKING:
    from .runners.base import Stats

SOURCE_MEASURED = "measured"  # timed on the target device by a runner
# measured on the device, then scaled by a fitted model: pixel's ProxylessNAS entries (measured
# by others with a 2018 runtime, scaled to the Table-3 runtime by 0.61-0.94) and a measured
# table's layers under its learned correction (hwnas.latency.correction)
SOURCE_MEASURED_SCALED = "measured-scaled"
SOURCE_MODELLED = "modelled"  # predicted by a cost model fitted to measurements
SOURCES = (SOURCE_MEASURED, SOURCE_MEASURED_SCALED, SOURCE_MODELLED)
OVERHEAD_PART = "overhead"  # the extra breakdown row: once per network, not a layer
MEASURED_ONLY = "use host or a user target"


class Target(ABC):
    """A device on which latencies are known.

    Subclasses implement :meth:`lookup` and :meth:`describe`; measured
    targets also set ``can_measure`` and implement :meth:`missing`,
    :meth:`fill` and :meth:`measure`. Everything else is shared.

    Attributes:
        name: the target's name (``host``, ``pixel``, ...).
        provenance: where the numbers come from: device, runtime and version,
            threads, date, method, sources; shown by ``nas-latency targets``.
    """

    name: str
    provenance: dict
    can_measure: ClassVar[bool] = False  # fill() and measure() work

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

    @property
    def overhead_source(self) -> str:
        """Where :attr:`overhead_ms` comes from (one of :data:`SOURCES`)."""
        return SOURCE_MEASURED

    def check_resolution(self, resolution: int) -> str | None:
        """Warn when ``resolution`` is outside what the target's numbers cover.

        Returns the warning's one-line message, or None (measured targets
        measure any resolution; fitted ones override this).
        """
        return None

    # --- shared -------------------------------------------------------
    def layer_ms(self, keys: Sequence[LayerKey]) -> list[tuple[float, str]]:
        missing = list(dict.fromkeys(k for k in keys if k not in self._cache))
        if missing:
            for k, v in zip(missing, self.lookup(missing), strict=True):
                self._cache[k] = (float(v[0]), v[1])
        return [self._cache[k] for k in keys]

    def predict(self, arch: Arch, resolution: int = 224, num_classes: int = 1000) -> float:
        """Predicted end-to-end latency of ``arch`` in ms (layers + one overhead)."""
        self.check_resolution(resolution)
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
                the matrix takes the vectorised path of :mod:`hwnas.latency.space_latency`.
            space: a ``SearchSpace`` (or its name) when ``archs`` is an index matrix.
        """
        if space is not None:
            return self.space_latency(space, resolution, num_classes).predict_indices(archs)
        self.check_resolution(resolution)
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
        from .space_latency import SpaceLatency, resolve_space

        sp = resolve_space(space)
        key = (sp.name, resolution, num_classes, self.overhead_ms)
        if key not in self._fast:
            self.check_resolution(resolution)
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
                    "source": self.overhead_source,
                }
            )
        return pd.DataFrame(rows, columns=["part", "key", "ms", "source"])

    def source_shares(self, arch: Arch, resolution: int = 224, num_classes: int = 1000
                      ) -> dict[str, float]:
        """Share of the predicted milliseconds that comes from each source (sums to 1)."""
        frame = self.breakdown(arch, resolution, num_classes)
        total = float(frame["ms"].sum())
        by = frame.groupby("source")["ms"].sum()
        return {s: (float(by.get(s, 0.0)) / total if total > 0 else 0.0) for s in SOURCES
                if s in by.index}

    @abstractmethod
    def describe(self) -> dict:
        """This target's row in ``nas-latency targets``.

        Keys: name, kind (``measured``/``modelled``), device, runtime,
        threads, overhead_ms, updated, validation (``n``, ``mape``,
        ``max_error``, optionally ``spearman`` and ``what``), and for
        measured targets runner, entries and path.
        """

    # --- measuring (measured targets) ---------------------------------
    def missing(self, keys: Sequence[LayerKey]) -> list[LayerKey]:
        """Keys this target would measure before answering (none for a fitted target)."""
        return []

    def not_measured_here(self) -> HwnasError:
        """The one-line error of a target that cannot measure."""
        return HwnasError(
            f"target {self.name!r} is a fitted model, not measured here: {MEASURED_ONLY}"
        )

    def fill(
        self,
        keys: Sequence[LayerKey],
        *,
        workers: int = 1,
        progress: Callable[[int], None] | None = None,
    ) -> int:
        """Measure the ``keys`` the target lacks; returns how many were measured."""
        raise self.not_measured_here()

    def measure(self, arch: Arch, resolution: int = 224, num_classes: int = 1000,
                protocol: str = "flushed") -> Stats:
        """``arch`` measured end to end on this target's device, under ``protocol``
        (``flushed``: as the layers were measured; ``standard``: warm repeated runs)."""
        raise self.not_measured_here()

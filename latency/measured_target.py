"""Measured targets: a latency table filled on demand by a runner.

A :class:`MeasuredTarget` answers from its :class:`~hwnas.latency.table.LatencyTable`;
keys the table lacks are measured with its runner
(:func:`hwnas.latency.measurement.measure_keys`, per-call overhead subtracted)
and stored before they are used, in chunks, so an interrupted fill keeps what
it measured and a second process filling the same table loses nothing. A
prediction is the sum of the layers plus the overhead the first fill measured;
when the table's provenance holds a :class:`~hwnas.latency.correction.Correction`
(``nas-latency build --calibrate N``), every layer's time and the per-network
constant are corrected by it, on every path that reads the target (predict,
``predict_many``, the vectorised space path, breakdowns).

The one worker pool of the project is here: :meth:`MeasuredTarget.fill` with
``workers > 1`` measures chunks in that many processes, each with its own
local runner on its own cores (:meth:`LocalRunner.worker_cpus`).
"""

from __future__ import annotations

import concurrent.futures as cf
import multiprocessing
import uuid
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from hwnas.common.errors import HwnasError
from hwnas.space.spec import Arch

from .correction import CORRECTION, Correction
from .keys import LayerKey
from .measurement import FLUSHED, KEY_RUNS, KEY_WARMUP, measure_arch, measure_keys
from .runners import RUNNERS, LocalRunner, make_runner
from .runners.base import (
    DEFAULT_RUNS,
    DEFAULT_RUNTIME,
    DEFAULT_THREADS,
    DEFAULT_WARMUP,
    Runner,
    Stats,
)
from .table import META_FILE, LatencyTable, now_iso
from .target import SOURCE_MEASURED, SOURCE_MEASURED_SCALED, Target
from .user_config import programs_for

FILL_CHUNK = 32  # keys per measurement call and per table write: an interrupt loses at most this
METHOD = (
    "each layer alone as an ONNX graph (hwnas.latency.graphs) or, for tflite, a .tflite model "
    "(hwnas.latency.tflite_graphs), batch 1, fp32; median of the "
    "timed runs after warm-up; the per-call overhead (an empty graph) is subtracted from every "
    "layer and added once per network"
)


class MeasuredTarget(Target):
    """A target backed by a latency table and a runner that fills it on demand.

    Args:
        name: target name.
        table: its table (the protocol, ``threads``/``runs``/``warmup``, is read
            from the table's provenance).
        runner: the runner, or None to make one from ``provenance["runner"]``
            when a key is missing.
    """

    can_measure = True

    def __init__(
        self,
        name: str,
        table: LatencyTable,
        runner: Runner | None = None,
        *,
        programs: Mapping[str, str] | None = None,
        corrected: bool = True,
    ) -> None:
        super().__init__()
        self.name = name
        self.table = table
        self.corrected = corrected  # apply the stored correction (False: the raw layer sum)
        self._runner = runner
        self._programs = dict(programs) if programs is not None else None
        self._checked_device: dict | None = None  # device_info of this runner, once per target
        self._session = uuid.uuid4().hex[:12]  # one entry of provenance["fills"] per session
        self._correction: tuple[LatencyTable, Correction] | None = None  # parsed once per snapshot
        proto = table.provenance.get("protocol", {})
        self.threads = int(proto.get("threads", DEFAULT_THREADS))
        # whole networks (measure_arch): the runner protocol's defaults unless the table says
        self.runs = int(proto.get("runs", DEFAULT_RUNS))
        self.warmup = int(proto.get("warmup", DEFAULT_WARMUP))
        # layers (measure_keys): None leaves hwnas.latency.measurement's per-key defaults
        self.key_runs: int | None = proto.get("key_runs")
        self.key_warmup: int | None = proto.get("key_warmup")

    @property
    def provenance(self) -> dict:  # type: ignore[override]
        return self.table.provenance

    @property
    def overhead_ms(self) -> float:
        """The per-network constant: the correction's when there is one, else the
        per-call overhead the first fill measured."""
        corr = self.correction if self.corrected else None
        return corr.constant_ms if corr is not None else self.table.overhead_ms or 0.0

    @property
    def overhead_source(self) -> str:
        corrected = self.corrected and self.correction is not None
        return SOURCE_MEASURED_SCALED if corrected else SOURCE_MEASURED

    @property
    def correction(self) -> Correction | None:
        """The correction stored in the table's provenance (None before a calibration)."""
        raw = self.table.provenance.get(CORRECTION)
        if raw is None:
            return None
        if self._correction is None or self._correction[0] is not self.table:
            where = str(self.table.path / META_FILE)
            self._correction = (self.table, Correction.from_dict(raw, where))
        return self._correction[1]

    def set_correction(self, correction: Correction) -> None:
        """Store ``correction`` in the table's provenance and forget corrected answers."""
        self.table = self.table.update(provenance={CORRECTION: correction.to_dict()})
        self._cache.clear()
        self._fast.clear()

    @property
    def runner(self) -> Runner:
        if self._runner is None:
            settings = self.table.provenance.get("runner")
            if not settings:
                raise HwnasError(
                    f"target {self.name!r} has no runner settings in {self.table.path}"
                )
            kind = settings.get("kind") if isinstance(settings, Mapping) else None
            programs = self._programs
            if programs is None and kind in RUNNERS:
                programs = programs_for(self.name, RUNNERS[kind].programs)
            self._runner = make_runner(
                settings, programs=programs, where=str(self.table.path / META_FILE)
            )
        return self._runner

    @property
    def runtime(self) -> str:
        """``onnxruntime`` or ``tflite``: what the table was (or will be) measured with."""
        saved = (self.table.provenance.get("runner") or {}).get("runtime")
        return saved or DEFAULT_RUNTIME

    def describe(self) -> dict:
        prov = self.provenance
        dev = prov.get("device") or {}
        runner = prov.get("runner") or {}
        where = {"ssh": runner.get("host"), "adb": runner.get("serial")}.get(runner.get("kind"))
        device = " ".join(
            str(x)
            for x in (dev.get("model") or dev.get("cpu") or "", dev.get("hostname") or "")
            if x
        )
        runtime = " ".join(
            x for x in (prov.get("runtime", ""), prov.get("runtime_version", "")) if x
        )
        return {
            "name": self.name,
            "kind": "measured",
            "device": device or "not measured yet",
            "runner": runner.get("kind", "") + (f" {where}" if where else ""),
            "runtime": runtime,
            "threads": prov.get("threads"),
            "entries": len(self.table),
            "sources": {SOURCE_MEASURED: len(self.table)},
            "overhead_ms": self.table.overhead_ms,
            "updated": prov.get("updated") or prov.get("created"),
            "validation": prov.get("validation"),
            "correction": corr.summary() if (corr := self.correction) else None,
            "path": str(self.table.path),
        }

    def missing(self, keys: Sequence[LayerKey]) -> list[LayerKey]:
        return self.table.missing(list(keys))

    def raw_layer_ms(self, keys: Sequence[LayerKey]) -> list[float]:
        """Each key's table median (ms, overhead subtracted), measuring missing keys first."""
        if self.table.missing(list(keys)):
            self.fill(keys)
        return [self.table[k].median for k in keys]

    def lookup(self, keys: Sequence[LayerKey]) -> list[tuple[float, str]]:
        raw = self.raw_layer_ms(keys)
        corr = self.correction if self.corrected else None
        if corr is None:
            return [(ms, SOURCE_MEASURED) for ms in raw]
        return [
            (corr.layer_ms(k, ms), SOURCE_MEASURED_SCALED) for k, ms in zip(keys, raw, strict=True)
        ]

    def fill(
        self,
        keys: Sequence[LayerKey],
        *,
        workers: int = 1,
        progress: Callable[[int], None] | None = None,
    ) -> int:
        """Measure the keys the table lacks, storing every chunk as it is done.

        Args:
            keys: wanted keys; those already in the table (on disk, another
                process may have added them) are skipped.
            workers: parallel processes, each with its own runner on its own
                core (local runner only).
            progress: called with the number of keys stored after each chunk.

        Returns:
            How many keys were measured (keys another process stored meanwhile are skipped).
        """
        self.table = self.table.reload()
        missing = self.table.missing(list(keys))
        if not missing:
            return 0
        self._check_same_device()
        chunks = [missing[i : i + FILL_CHUNK] for i in range(0, len(missing), FILL_CHUNK)]
        if workers <= 1:
            measured = 0
            for chunk in chunks:
                todo = self.table.missing(chunk)  # each store re-reads: skip what others stored
                if todo:
                    stats, over = _measure(
                        todo, self.runner, self.key_runs, self.key_warmup, self.threads
                    )
                    self._store(stats, over)
                    measured += len(todo)
                if progress:
                    progress(len(chunk))
            return measured
        self._fill_parallel(chunks, workers, progress)
        return len(missing)

    def _fill_parallel(
        self, chunks: list[list[LayerKey]], workers: int, progress: Callable[[int], None] | None
    ) -> None:
        settings = dict(self.table.provenance.get("runner") or {})
        if settings.get("kind") != LocalRunner.name:
            raise HwnasError(
                f"--workers {workers} needs the local runner; target {self.name!r} "
                f"uses {settings.get('kind')!r} (one device measures one model at a time)"
            )
        local = make_runner(settings, where=str(self.table.path / META_FILE))
        assert isinstance(local, LocalRunner)
        cpus = local.worker_cpus(workers, self.threads)  # disjoint cores
        ctx = multiprocessing.get_context("spawn")  # onnxruntime threads do not survive fork
        slots = ctx.Queue()
        for c in cpus:
            slots.put(c)
        with cf.ProcessPoolExecutor(
            workers, mp_context=ctx, initializer=_worker_init, initargs=(settings, slots)
        ) as pool:
            todo = [
                pool.submit(
                    _worker_measure,
                    [str(k) for k in c],
                    self.key_runs,
                    self.key_warmup,
                    self.threads,
                )
                for c in chunks
            ]
            try:
                for fut in cf.as_completed(todo):
                    stats, over = fut.result()
                    self._store({LayerKey.parse(k): s for k, s in stats.items()}, over)
                    if progress:
                        progress(len(stats))
            except BaseException:
                for f in todo:
                    f.cancel()
                raise

    def _store(self, stats: Mapping[LayerKey, Stats], overhead: float) -> None:
        first = {} if self.table.overhead_ms is not None else self._first_fill(overhead)
        fills = list(self.table.provenance.get("fills") or [])
        if not fills or fills[-1].get("session") != self._session:
            fills.append({"session": self._session, "date": now_iso(), "overhead_ms": float(overhead)})
        fills[-1]["keys"] = int(fills[-1].get("keys", 0)) + len(stats)
        self.table = self.table.update(stats, provenance={"fills": fills}, defaults=first)

    def _check_same_device(self) -> None:
        """Refuse to add to a table measured with another runtime version or device."""
        if self._checked_device is None:
            self._checked_device = self.runner.device_info()
        prov = self.table.provenance
        saved = prov.get("fingerprint") or (
            fingerprint(prov["device"]) if prov.get("device") else None
        )
        if not saved:
            return  # nothing measured yet
        now = fingerprint(self._checked_device)
        diff = [k for k in sorted(set(saved) | set(now)) if saved.get(k) != now.get(k)]
        if diff:
            k = diff[0]
            raise HwnasError(
                f"target {self.name!r} was measured with {k} {saved.get(k)!r}, this runner has "
                f"{now.get(k)!r}: mixing them would corrupt {self.table.path / META_FILE}; build "
                f"a new target instead (e.g. --target {self.name}-2)"
            )

    def _first_fill(self, overhead: float) -> dict:
        info = self._checked_device or self.runner.device_info()
        return {
            "fingerprint": fingerprint(info),
            "overhead_ms": float(overhead),
            "device": info,
            "runtime": info.get("runtime", ""),
            "runtime_version": info.get("runtime_version", ""),
            "threads": self.threads,
            "key_protocol": self._key_protocol(),
            "measurement": self.runner.protocol(self.threads),
            "method": METHOD,
            "first_fill": now_iso(),
        }

    def _key_protocol(self) -> dict:
        base = _key_protocol_defaults()
        return {**base, **_protocol(self.key_runs, self.key_warmup, self.threads)}

    def measure(self, arch: Arch, resolution: int = 224, num_classes: int = 1000,
                protocol: str = FLUSHED) -> Stats:
        """``arch`` measured end to end with this target's runner, under ``protocol``."""
        return measure_arch(
            arch,
            resolution,
            self.runner,
            runs=self.runs,
            warmup=self.warmup,
            threads=self.threads,
            num_classes=num_classes,
            protocol=protocol,
        )


FINGERPRINT_FIELDS = ("runtime", "runtime_version", "serial", "model", "soc", "cpu", "machine")


def fingerprint(device: Mapping[str, Any]) -> dict:
    """What must not change between two fills of one table: runtime, its version, the device."""
    return {k: str(device[k]) for k in FINGERPRINT_FIELDS if device.get(k) not in (None, "")}


def _key_protocol_defaults() -> dict:
    return {"runs": KEY_RUNS, "warmup": KEY_WARMUP}


def _protocol(runs: int | None, warmup: int | None, threads: int) -> dict:
    return {
        "threads": threads,
        **({"runs": runs} if runs is not None else {}),
        **({"warmup": warmup} if warmup is not None else {}),
    }


def _measure(
    keys: list[LayerKey], runner: Runner, runs: int | None, warmup: int | None, threads: int
) -> tuple[dict[LayerKey, Stats], float]:
    return measure_keys(keys, runner, **_protocol(runs, warmup, threads))


_worker_runner: Runner | None = None


def _worker_init(settings: dict, slots: Any) -> None:
    """Each worker makes its own runner on its own cores (taken from ``slots``)."""
    global _worker_runner
    cpus = slots.get()
    _worker_runner = make_runner(settings, **({"cpus": cpus} if cpus else {}))


def _worker_measure(
    keys: list[str], runs: int | None, warmup: int | None, threads: int
) -> tuple[dict[str, Stats], float]:
    if _worker_runner is None:
        raise RuntimeError("worker used before its initializer ran")
    stats, over = _measure([LayerKey.parse(k) for k in keys], _worker_runner, runs, warmup, threads)
    return {str(k): s for k, s in stats.items()}, over

"""Measured targets: a latency table filled on demand by a runner, and their validation.

A :class:`MeasuredTarget` answers from its :class:`~hwnas.latency.table.LatencyTable`;
keys the table lacks are measured with its runner
(:func:`hwnas.latency.measure.measure_keys`, per-call overhead subtracted) and
stored before they are used, in chunks, so an interrupted fill keeps what it
measured and a second process filling the same table loses nothing. A
prediction is the sum of the layers plus the overhead the first fill measured.

:func:`validate` measures random networks of a space end to end
(:func:`hwnas.latency.measure.measure_arch`), compares them with the
predictions and stores the errors in the table's provenance.
"""

from __future__ import annotations

import concurrent.futures as cf
import multiprocessing
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from hwnas.common.errors import HwnasError
from hwnas.space.spec import Arch

from .keys import LayerKey
from .runner import DEFAULT_RUNS, DEFAULT_THREADS, DEFAULT_WARMUP, Runner, Stats
from .table import LatencyTable, now_iso
from .target import SOURCE_MEASURED, Target

FILL_CHUNK = 32  # keys per measurement call and per table write: an interrupt loses at most this
RUNNER_KINDS = ("local", "adb", "ssh")
METHOD = (
    "each layer alone as an ONNX graph (hwnas.latency.graphs), batch 1, fp32; median of the "
    "timed runs after warm-up; the per-call overhead (an empty graph) is subtracted from every "
    "layer and added once per network"
)


def make_runner(settings: Mapping[str, Any]) -> Runner:
    """A runner from its saved settings: ``{"kind": "local"|"adb"|"ssh", ...}``.

    ``ssh``: host, user, port, identity; ``adb``: serial; ``local``: the
    keyword arguments of ``LocalRunner``.
    """
    opts = dict(settings)
    kind = opts.pop("kind", None)
    if kind == "local":
        from .measure import LocalRunner

        return LocalRunner(**opts)
    if kind == "ssh":
        from .remote import SshRunner

        ident = opts.pop("identity", None)
        return SshRunner(identity=Path(ident) if ident else None, **opts)
    if kind == "adb":
        from .remote import AdbRunner

        return AdbRunner(**opts)
    raise HwnasError(f"runner kind must be one of {', '.join(RUNNER_KINDS)}, got {kind!r}")


class MeasuredTarget(Target):
    """A target backed by a latency table and a runner that fills it on demand.

    Args:
        name: target name.
        table: its table (the protocol, ``threads``/``runs``/``warmup``, is read
            from the table's provenance).
        runner: the runner, or None to make one from ``provenance["runner"]``
            when a key is missing.
    """

    def __init__(self, name: str, table: LatencyTable, runner: Runner | None = None) -> None:
        super().__init__()
        self.name = name
        self.table = table
        self._runner = runner
        proto = table.provenance.get("protocol", {})
        self.threads = int(proto.get("threads", DEFAULT_THREADS))
        # whole networks (measure_arch): the runner protocol's defaults unless the table says
        self.runs = int(proto.get("runs", DEFAULT_RUNS))
        self.warmup = int(proto.get("warmup", DEFAULT_WARMUP))
        # layers (measure_keys): None leaves hwnas.latency.measure's per-key defaults
        self.key_runs: int | None = proto.get("key_runs")
        self.key_warmup: int | None = proto.get("key_warmup")

    @property
    def provenance(self) -> dict:  # type: ignore[override]
        return self.table.provenance

    @property
    def overhead_ms(self) -> float:
        return self.table.overhead_ms or 0.0

    @property
    def runner(self) -> Runner:
        if self._runner is None:
            settings = self.table.provenance.get("runner")
            if not settings:
                raise HwnasError(
                    f"target {self.name!r} has no runner settings in {self.table.path}"
                )
            self._runner = make_runner(settings)
        return self._runner

    def lookup(self, keys: Sequence[LayerKey]) -> list[tuple[float, str]]:
        if self.table.missing(list(keys)):
            self.fill(keys)
        return [(self.table[k].median, SOURCE_MEASURED) for k in keys]

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
        if settings.get("kind") != "local":
            raise HwnasError(
                f"--workers {workers} needs the local runner; target {self.name!r} "
                f"uses {settings.get('kind')!r} (one device measures one model at a time)"
            )
        cpus = make_runner(settings).worker_cpus(workers, self.threads)  # disjoint cores
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
        self.table = self.table.update(stats, defaults=first)

    def _first_fill(self, overhead: float) -> dict:
        info = self.runner.device_info()
        return {
            "overhead_ms": float(overhead),
            "device": info,
            "runtime": info.get("runtime", ""),
            "runtime_version": info.get("runtime_version", ""),
            "threads": self.threads,
            "key_protocol": self._key_protocol(),
            "method": METHOD,
            "first_fill": now_iso(),
        }

    def _key_protocol(self) -> dict:
        base = _key_protocol_defaults()
        return {**base, **_protocol(self.key_runs, self.key_warmup, self.threads)}

    def measure(self, arch: Arch, resolution: int = 224, num_classes: int = 1000) -> Stats:
        """``arch`` measured end to end with this target's runner and protocol."""
        from .measure import measure_arch

        return measure_arch(
            arch,
            resolution,
            self.runner,
            runs=self.runs,
            warmup=self.warmup,
            threads=self.threads,
            num_classes=num_classes,
        )


def _key_protocol_defaults() -> dict:
    from .measure import KEY_RUNS, KEY_WARMUP

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
    from .measure import measure_keys

    return measure_keys(keys, runner, **_protocol(runs, warmup, threads))


_worker_runner: Runner | None = None


def _worker_init(settings: dict, slots: Any) -> None:
    """Each worker makes its own runner on its own cores (taken from ``slots``)."""
    global _worker_runner
    cpus = slots.get()
    _worker_runner = make_runner({**settings, **({"cpus": cpus} if cpus else {})})


def _worker_measure(
    keys: list[str], runs: int | None, warmup: int | None, threads: int
) -> tuple[dict[str, Stats], float]:
    if _worker_runner is None:
        raise RuntimeError("worker used before its initializer ran")
    stats, over = _measure([LayerKey.parse(k) for k in keys], _worker_runner, runs, warmup, threads)
    return {str(k): s for k, s in stats.items()}, over


# --- validation --------------------------------------------------------------
@dataclass(frozen=True)
class Validation:
    """Predicted vs measured end-to-end latencies of random networks of a space."""

    rows: pd.DataFrame  # arch, predicted_ms, measured_ms, p10_ms, p90_ms, error
    mape: float  # mean |predicted / measured - 1|
    max_error: float  # largest |predicted / measured - 1|
    spearman: float

    def summary(self) -> dict:
        return {
            "n": len(self.rows),
            "mape": self.mape,
            "max_error": self.max_error,
            "spearman": self.spearman,
        }


def validate(
    target: MeasuredTarget,
    space: Any,
    n: int = 20,
    seed: int = 0,
    resolution: int = 224,
    progress: Callable[[int], None] | None = None,
) -> Validation:
    """Measure ``n`` random networks of ``space`` end to end and compare with predictions.

    Predictions come first (missing layers are measured then); each network
    is measured with the target's runner and protocol.
    """
    from scipy.stats import spearmanr

    from .fast import resolve_space

    if n < 2:
        raise HwnasError(f"validation needs at least 2 networks, got {n}")
    sp = resolve_space(space)
    rng = np.random.default_rng(seed)
    archs = [sp.sample_random(rng) for _ in range(n)]
    predicted = [target.predict(a, resolution) for a in archs]
    rows = []
    for arch, pred in zip(archs, predicted, strict=True):
        s = target.measure(arch, resolution)
        rows.append(
            {
                "arch": arch.to_str(),
                "predicted_ms": pred,
                "measured_ms": s.median,
                "p10_ms": s.p10,
                "p90_ms": s.p90,
                "error": pred / s.median - 1.0,
            }
        )
        if progress:
            progress(1)
    frame = pd.DataFrame(rows)
    err = frame["error"].abs()
    rho = float(spearmanr(frame["predicted_ms"], frame["measured_ms"]).statistic)
    return Validation(frame, float(err.mean()), float(err.max()), rho)


def record_validation(target: MeasuredTarget, result: Validation, **context: Any) -> None:
    """Store the numbers of ``result`` (and e.g. space, seed, resolution) in the provenance."""
    target.table = target.table.update(
        provenance={"validation": {**result.summary(), **context, "date": now_iso()}}
    )


def write_validation(result: Validation, out: Path, title: str) -> tuple[Path, Path]:
    """``validation.csv`` and a predicted-vs-measured ``validation.png`` in ``out`` (atomic)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    from hwnas.common.atomic import atomic_save_figure, atomic_write_df

    out.mkdir(parents=True, exist_ok=True)
    csv, png = out / "validation.csv", out / "validation.png"
    atomic_write_df(result.rows, csv)
    fig = Figure(figsize=(5, 5))
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    r = result.rows
    ax.scatter(r["measured_ms"], r["predicted_ms"], s=18)
    lo = min(r["measured_ms"].min(), r["predicted_ms"].min()) * 0.95
    hi = max(r["measured_ms"].max(), r["predicted_ms"].max()) * 1.05
    ax.plot([lo, hi], [lo, hi], "k--", lw=0.8, label="predicted = measured")
    ax.set(
        xlim=(lo, hi),
        ylim=(lo, hi),
        xlabel="measured (ms)",
        ylabel="predicted (ms)",
        title=f"{title}\nMAPE {result.mape:.1%}, max {result.max_error:.1%}, "
        f"Spearman {result.spearman:.3f}",
    )
    ax.legend(loc="upper left")
    fig.tight_layout()
    atomic_save_figure(fig, png)
    return csv, png

"""What a per-layer sum misses, learned from whole networks and kept per layer.

A measured table times every layer *alone*: the cache is flushed before each
run, and onnxruntime's CPU provider pays a layout reorder (NCHWc) at the
layer's input and output and runs a residual ``Add`` unfused. Inside a whole
network, timed the way a user times it (warm, repeated ``session.run``), the
layer finds its input in cache, its neighbours keep the blocked layout, and
the ``Add`` is fused into the projection conv (docs/latency.md, "Host
fidelity"). Those effects scale with what a layer moves across its edges, not
with its compute, so the table's sum misses them unevenly.

A :class:`Correction` keeps the prediction a sum over layers. Each layer's
time becomes a linear function of its own terms (:func:`layer_terms`):

    corrected(key) = sum_f coef_f * term_f(key, table_ms(key))

with the table's milliseconds split by op kind (so each kind gets its own
scale) and the elements crossing the layer's edges; the per-network constant
(``constant_ms``) takes the place of the per-call overhead. So the search
space's vectorised path, breakdowns and ``fastest()`` use the correction
exactly as :meth:`~hwnas.latency.target.Target.predict` does.

:func:`fit_correction` learns the coefficients from whole networks measured
with the standard protocol (:data:`~hwnas.latency.measurement.STANDARD`), by
least squares on the *relative* error, shrunk towards "no correction" (each
kind's scale 1, the other terms 0, the constant the table's overhead) with a
ridge chosen by k-fold cross-validation; the fit's own error and its
cross-validated error go with it. :func:`calibrate` measures the networks
(:func:`calibration_archs`: a seed stream apart from ``validate``'s, so a
validation never draws them) and stores the correction, with the networks it
was fitted on, in the table's provenance under ``correction``, where
:class:`~hwnas.latency.measured_target.MeasuredTarget` reads it back, and the
machine's level it learned: each anchor's time (:func:`anchor_panel`) under
``anchors``, where ``validate`` finds it.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from hwnas.common.errors import HwnasError

from .keys import LayerKey, layer_keys
from .measurement import STANDARD

CORRECTION = "correction"  # the provenance entry
CORRECTION_FORMAT = 1
CALIBRATION_STREAM = 13  # seed-sequence word that keeps calibration draws apart from validate's
FOLDS = 5  # cross-validation folds for the ridge and the reported fit error
RIDGES = (1e-4, 1e-3, 1e-2, 1e-1, 1.0)  # candidate ridge strengths (relative to the data's scale)
SCALE_BOUNDS = (0.25, 4.0)  # a kind's scale stays positive and within 4x of the table's time
MIN_NETS = 8  # fewer networks than this cannot pin the terms down
MELEM = 1e-6  # edge terms in millions of elements (fp32 values)
# The band of every "within" share (validate, the correction's fit, the benchmarks): +-10%,
# nn-Meter's headline metric (Zhang et al., MobiSys 2021).
BAND = 0.10
# The machine's speed level (memory bandwidth left by other cores and tenants) drifts by 4% in
# 20 minutes and 4-9% between sessions, the same for every network (docs/latency.md, "Where
# the noise comes from"); one network's rounds lie 16-28% apart, more than the drift, so one
# reference network was a worse gauge than none (bench results `refscale`, 2026-12-02). A panel
# of fixed networks spanning the latency range (about 3-20 ms at 224 px) is measured in every
# round beside the networks; the level is the median over anchors of (now / at calibration).
ANCHORS = "anchors"  # the provenance entry
ANCHORS_FORMAT = 1
# (published network, width): MobileNetV2 1.4, a published width, reaches the slow end
ANCHOR_REFERENCES = (("mobilenetv3_small", 1.0), ("mobilenetv3_large", 1.0), ("mnasnet_a1", 1.0),
                     ("mobilenetv2", 1.4))
ANCHOR_SPACES = ("mobilenetv3", "mnasnet")  # each gives ANCHOR_SAMPLES seeded samples
ANCHOR_SAMPLES = 2
ANCHOR_STREAM = 17  # seed-sequence word of the anchors' samples (CALIBRATION_STREAM is 13)

# per-layer terms: the table's ms by op kind (one scale each), then edge traffic. The stem is a
# plain conv and takes conv's scale: a space has one stem, so a term of its own would only be a
# second per-space constant (a fit on two spaces used it so, with a scale of -17.6).
KINDS = ("conv", "ds", "ir", "ir_se", "head")
TERMS = (
    *(f"ms_{k}" for k in KINDS),
    "edge_melem",  # input + output elements: the reorders a lone layer pays at its edges
    "skip_melem",  # output elements of a layer with a residual add (unfused when alone)
)


def kind(key: LayerKey) -> str:
    """The op kind whose scale a layer's table time takes (one of :data:`KINDS`)."""
    if key.part != "block":
        return "conv" if key.part == "stem" else key.part
    return "ir_se" if key.op == "ir" and key.se_chs else key.op


def layer_terms(key: LayerKey, table_ms: float) -> np.ndarray:
    """The terms (:data:`TERMS`, in order) of one layer whose table time is ``table_ms``.

    >>> k = LayerKey.parse("ir_k3_s1_m72_c24_nre_skip|24x56x56")
    >>> t = dict(zip(TERMS, layer_terms(k, 0.5).tolist()))
    >>> t["ms_ir"], t["ms_ds"], round(t["edge_melem"], 6), round(t["skip_melem"], 6)
    (0.5, 0.0, 0.150528, 0.075264)
    """
    out = np.zeros(len(TERMS))
    out[KINDS.index(kind(key))] = table_ms
    in_el = key.in_chs * key.res * key.res
    out_el = key.out_chs * key.out_res * key.out_res if key.part != "head" else key.num_classes
    out[len(KINDS)] = (in_el + out_el) * MELEM
    out[len(KINDS) + 1] = out_el * MELEM if key.skip else 0.0
    return out


def network_terms(keys: Sequence[LayerKey], table_ms: Sequence[float]) -> np.ndarray:
    """The terms of a whole network: the sum of its layers' terms."""
    return np.sum([layer_terms(k, m) for k, m in zip(keys, table_ms, strict=True)], axis=0)


def identity_coef() -> np.ndarray:
    """The coefficients of "no correction": each kind's scale 1, edge terms 0."""
    return np.array([1.0 if t.startswith("ms_") else 0.0 for t in TERMS])


@dataclass(frozen=True)
class Correction:
    """Coefficients of :data:`TERMS` and the per-network constant, with provenance.

    ``fit``: ``n`` networks, ``mape``/``within``/``max_error`` of the fit on
    them, ``cv_mape``/``cv_within`` of :data:`FOLDS`-fold cross-validation,
    ``ridge``. ``nets``: the networks it was fitted on (``arch``,
    ``resolution``, ``num_classes``, ``ms``, ``p10``, ``p90``, ``space``,
    ``seed``, ``date``), kept so a later calibration adds to them.
    """

    coef: tuple[float, ...]
    constant_ms: float
    fit: dict = field(default_factory=dict)
    nets: tuple[dict, ...] = ()
    date: str = ""

    def layer_ms(self, key: LayerKey, table_ms: float) -> float:
        """One layer's corrected time (ms), floored at 0."""
        return max(0.0, float(layer_terms(key, table_ms) @ np.asarray(self.coef)))

    def to_dict(self) -> dict:
        return {
            "format": CORRECTION_FORMAT,
            "terms": list(TERMS),
            "coef": [float(c) for c in self.coef],
            "constant_ms": float(self.constant_ms),
            "protocol": STANDARD,
            "fit": dict(self.fit),
            "date": self.date,
            "nets": [dict(n) for n in self.nets],
            "method": "per-layer terms (table ms by op kind, edge elements) fitted to whole "
            "networks measured warm (standard protocol), relative least squares, ridge towards "
            "no correction chosen by cross-validation",
        }

    @classmethod
    def from_dict(cls, d: Any, where: str = "provenance") -> Correction:
        """Read a stored correction back; a one-line :class:`HwnasError` if it is not one."""

        def bad(what: str) -> HwnasError:
            return HwnasError(f"{where}: {CORRECTION} {what}; calibrate again (build --calibrate N)")

        if not isinstance(d, Mapping):
            raise bad(f"must be a mapping, got {type(d).__name__}")
        if d.get("format") != CORRECTION_FORMAT:
            raise bad(f"format {d.get('format')!r} is not {CORRECTION_FORMAT}")
        if list(d.get("terms") or []) != list(TERMS):
            raise bad(f"terms {d.get('terms')!r} are not this hwnas's {list(TERMS)}")
        coef, const = d.get("coef"), d.get("constant_ms")
        nums = [*(coef if isinstance(coef, list) else [None]), const]
        if not isinstance(coef, list) or len(coef) != len(TERMS) or not all(_finite(v) for v in nums):
            raise bad(f"needs {len(TERMS)} finite coefficients and a finite constant_ms")
        nets = d.get("nets") or []
        if not isinstance(nets, list) or not all(isinstance(n, Mapping) for n in nets):
            raise bad("nets must be a list of mappings")
        fit = d.get("fit") or {}
        return cls(
            tuple(float(c) for c in coef),
            float(const),
            dict(fit) if isinstance(fit, Mapping) else {},
            tuple(dict(n) for n in nets),
            str(d.get("date", "")),
        )

    def summary(self) -> dict:
        """What ``nas-latency targets`` shows: networks, spaces, fit and CV error, date."""
        spaces = sorted({str(n.get("space", "")) for n in self.nets} - {""})
        keep = ("n", "mape", "within", "cv_mape", "cv_within")
        return {**{k: self.fit[k] for k in keep if k in self.fit}, "spaces": spaces,
                "date": self.date}


def _finite(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _solve(x: np.ndarray, y: np.ndarray, prior: np.ndarray, ridge: float) -> np.ndarray:
    """Coefficients (terms and constant) minimising the relative squared error plus
    ``ridge`` times the scaled distance from ``prior``; each kind's scale within
    :data:`SCALE_BOUNDS`, the constant >= 0."""
    from scipy.optimize import lsq_linear

    a = x / y[:, None]  # rows relative to the measured time: relative error
    scale = np.sqrt(np.mean(a * a, axis=0))  # ridge in each column's own units
    on = scale > 0  # a term no network has (e.g. no plain conv in the space) keeps its prior
    a, scale = a[:, on], scale[on]
    # ridge as extra rows: || a b - 1 ||^2 + ridge n || scale (b - prior) ||^2
    rows = np.vstack([a, np.sqrt(ridge * len(y)) * np.diag(scale)])
    target = np.concatenate([np.ones(len(y)), np.sqrt(ridge * len(y)) * scale * prior[on]])
    is_ms = np.array([t.startswith("ms_") for t in TERMS] + [False])[on]
    lo = np.where(is_ms, SCALE_BOUNDS[0], -np.inf)
    hi = np.where(is_ms, SCALE_BOUNDS[1], np.inf)
    lo[-1] = 0.0  # the constant (always a column) is a time
    out = prior.copy()
    out[on] = lsq_linear(rows, target, bounds=(lo, hi)).x
    return out


def _errors(pred: np.ndarray, y: np.ndarray) -> dict:
    err = pred / y - 1.0
    return {
        "mape": float(np.mean(np.abs(err))),
        "within": float(np.mean(np.abs(err) <= BAND + 1e-12)),
        "max_error": float(np.max(np.abs(err))),
    }


def _folds(n: int, k: int) -> list[np.ndarray]:
    order = np.random.default_rng(CALIBRATION_STREAM).permutation(n)
    return [order[i::k] for i in range(k)]


def fit_correction(
    terms: np.ndarray,
    measured_ms: Sequence[float],
    overhead_ms: float,
    *,
    nets: Sequence[dict] = (),
    date: str = "",
) -> Correction:
    """Learn a :class:`Correction` from networks' summed terms and their measured times.

    Args:
        terms: ``(n, len(TERMS))``, each row :func:`network_terms` of one network.
        measured_ms: each network measured whole (standard protocol), ms.
        overhead_ms: the table's per-call overhead: the constant's prior.
        nets: what to store as the networks fitted on (same order).

    The ridge is the candidate of :data:`RIDGES` with the least cross-validated
    MAPE; ``fit`` reports the fit on all networks and that CV error.
    """
    x = np.asarray(terms, dtype=float)
    y = np.asarray(measured_ms, dtype=float)
    if x.ndim != 2 or x.shape != (y.size, len(TERMS)):
        raise HwnasError(f"terms must be (n, {len(TERMS)}) for n measured networks, got {x.shape}")
    if y.size < MIN_NETS:
        raise HwnasError(f"a correction needs at least {MIN_NETS} measured networks, got {y.size}")
    if not np.all(np.isfinite(x)) or not np.all(np.isfinite(y)) or (y <= 0).any():
        raise HwnasError("measured times must be finite and > 0 ms, terms finite")
    x1 = np.hstack([x, np.ones((y.size, 1))])
    prior = np.append(identity_coef(), overhead_ms)
    folds = _folds(y.size, min(FOLDS, y.size))
    best: tuple[float, float, np.ndarray] | None = None
    for ridge in RIDGES:
        cv = np.empty(y.size)
        for test in folds:
            train = np.setdiff1d(np.arange(y.size), test)
            cv[test] = x1[test] @ _solve(x1[train], y[train], prior, ridge)
        score = float(np.mean(np.abs(cv / y - 1.0)))
        if best is None or score < best[0]:
            best = (score, ridge, cv)
    assert best is not None
    _, ridge, cv = best
    beta = _solve(x1, y, prior, ridge)
    fit = {"n": int(y.size), **_errors(x1 @ beta, y), "ridge": ridge, "folds": len(folds)}
    fit.update({f"cv_{k}": v for k, v in _errors(cv, y).items()})
    return Correction(tuple(float(b) for b in beta[:-1]), float(beta[-1]), fit, tuple(nets), date)


def calibration_archs(space: Any, n: int, seed: int = 0) -> list[Any]:
    """``n`` random networks of ``space`` for a calibration, drawn from a stream of their own
    (``default_rng([CALIBRATION_STREAM, seed])``: never the networks ``validate`` draws)."""
    from .space_latency import resolve_space

    sp = resolve_space(space)
    rng = np.random.default_rng([CALIBRATION_STREAM, seed])
    return [sp.sample_random(rng) for _ in range(n)]


def calibrate(
    target: Any,
    space: Any,
    n: int,
    seed: int = 0,
    resolution: int = 224,
    num_classes: int = 1000,
    progress: Callable[[float], None] | None = None,
    rounds: int | None = None,
) -> Correction:
    """Measure ``n`` calibration networks of ``space`` whole and (re)fit ``target``'s correction.

    Each network is measured as ``validate`` measures it
    (:func:`~hwnas.latency.validation.measure_networks`, ``rounds`` interleaved
    rounds, default :data:`~hwnas.latency.validation.ROUNDS`).

    ``target`` is a measured target (``raw_layer_ms``, ``measure``,
    ``set_correction``, ``table``). The networks join those of the stored
    correction (a network measured again replaces its earlier row), the fit
    uses them all, and the correction is stored in the table's provenance.

    The anchor panel (:func:`anchor_panel`) is measured first in every round beside them;
    each anchor's median over its rounds, the machine's speed level that the correction
    learned, is stored in the provenance under :data:`ANCHORS`, where ``validate`` and
    ``bench/host_fidelity.py`` find it (:func:`~hwnas.latency.validation.stored_anchors`).
    """
    from .space_latency import resolve_space
    from .table import now_iso
    from .validation import ROUNDS, measure_with_anchors

    rounds = ROUNDS if rounds is None else rounds
    if not target.can_measure:
        raise target.not_measured_here()
    if n < 1:
        raise HwnasError(f"calibration needs at least 1 network, got {n}")
    sp = resolve_space(space)
    old = target.correction
    rows = {(r["arch"], int(r["resolution"]), int(r["num_classes"])): r for r in
            (old.nets if old else ())}
    archs = calibration_archs(sp, n, seed)
    target.raw_layer_ms([k for a in archs for k in layer_keys(a, resolution, num_classes)])
    panel = [{"name": name, "arch": a.to_str()} for name, a in anchor_panel()]
    measured, anchor_rounds = measure_with_anchors(target, archs, resolution, panel, STANDARD,
                                                   rounds, progress, num_classes)
    for arch, (s, spread) in zip(archs, measured, strict=True):
        row = {"arch": arch.to_str(), "resolution": resolution, "num_classes": num_classes,
               "ms": s.median, "p10": s.p10, "p90": s.p90, "round_spread": spread,
               "rounds": rounds, "space": sp.name, "seed": seed, "date": now_iso()}
        rows[(row["arch"], resolution, num_classes)] = row
    nets = list(rows.values())
    corr = fit_nets(target, nets)
    target.set_correction(corr)
    for anchor, got in zip(panel, anchor_rounds, strict=True):
        anchor["rounds_ms"] = [float(r.median) for r in got]
        anchor["then_ms"] = float(np.median(anchor["rounds_ms"]))
    target.table = target.table.update(provenance={ANCHORS: {
        "format": ANCHORS_FORMAT, "resolution": resolution, "num_classes": num_classes,
        "rounds": rounds, "protocol": STANDARD, "statistic": "median over rounds",
        "date": now_iso(), "nets": panel}})
    return corr


def anchor_panel() -> list[tuple[str, Any]]:
    """The fixed networks whose times gauge the machine's level, as ``(name, Arch)``: the
    :data:`ANCHOR_REFERENCES` and :data:`ANCHOR_SAMPLES` networks of each of
    :data:`ANCHOR_SPACES` drawn from ``default_rng([ANCHOR_STREAM, 0])``, a stream that
    neither ``validate`` (``default_rng(seed)``) nor a calibration draws from."""
    from hwnas.space.references import reference

    from .space_latency import resolve_space

    panel = [(name if w == 1 else f"{name}@{w}", reference(name, w)) for name, w in
             ANCHOR_REFERENCES]
    for space in ANCHOR_SPACES:
        rng = np.random.default_rng([ANCHOR_STREAM, 0])
        sp = resolve_space(space)
        panel += [(f"{space}#{i}", sp.sample_random(rng)) for i in range(ANCHOR_SAMPLES)]
    return panel


def fit_nets(target: Any, nets: Sequence[dict]) -> Correction:
    """Fit a correction of ``target``'s raw table to measured ``nets`` (rows as stored)."""
    from hwnas.space.spec import Arch

    from .table import now_iso

    terms, layers = [], []
    for r in nets:
        keys = layer_keys(Arch.from_str(r["arch"]), int(r["resolution"]), int(r["num_classes"]))
        ms = target.raw_layer_ms(keys)
        terms.append(network_terms(keys, ms))
        layers += list(zip(keys, ms, strict=True))
    raw_over = float(target.table.overhead_ms or 0.0)
    corr = fit_correction(np.array(terms), [float(r["ms"]) for r in nets], raw_over, nets=nets,
                          date=now_iso())
    # layers the lookup floors at 0 (a negative corrected time): the sum would part from the fit
    corr.fit["floored_layers"] = sum(
        float(layer_terms(k, m) @ np.asarray(corr.coef)) < 0 for k, m in set(layers))
    return corr


def refit(target: Any) -> Correction:
    """Fit ``target``'s stored correction again on its stored networks (no measuring), e.g.
    after its table's layers were measured again; stores and returns it."""
    old = target.correction
    if old is None:
        raise HwnasError(f"target {target.name!r} has no correction to refit: build --calibrate N")
    corr = fit_nets(target, old.nets)
    target.set_correction(corr)
    return corr

"""The ``pixel`` target (alias ``pixel1``): Google Pixel 1, TFLite fp32, one big core;
and ``pixel2``, ``pixel3``: the same model scaled to those phones' Table-3 columns.

Latencies are on the scale of Table 3 of the MobileNetV3 paper. Layers that
ProxylessNAS measured on the phone (72 table entries) are ``measured``,
carried to that scale; every other layer is ``modelled`` by the cost model
of :mod:`hwnas.latency.costmodel`, fitted offline by ``bench/fit_pixel.py``
into ``latency/data/pixel1_costmodel.json``. Loading only reads that file.
A resolution outside what the fitted data cover (network inputs of 96-224
px) gives an :class:`OutsideFittedRange` warning: the number is an
extrapolation.

>>> from hwnas.space.references import reference
>>> round(load_pixel_target("pixel").predict(reference("mobilenetv3_large")))
52
"""

from __future__ import annotations

import json
import warnings
from collections.abc import Sequence
from functools import cache
from importlib import resources

from hwnas.common.errors import HwnasError

from .costmodel import CostModel
from .keys import LayerKey
from .target import SOURCE_MEASURED_SCALED, SOURCE_MODELLED, Target

MODEL_FILE = "pixel1_costmodel.json"
FORMAT_VERSION = 2
READS_VERSIONS = (1, 2)  # 1: no c_wt, no pixel2/pixel3, no resolution range
PIXEL_NAMES = ("pixel", "pixel1", "pixel2", "pixel3")
PHONES = ("pixel2", "pixel3")  # scaled from pixel by their Table-3 columns
# version-1 files predate the resolution data: only 224 px was checked
V1_RESOLUTION_RANGE = (224, 224)


class OutsideFittedRange(UserWarning):
    """A fitted target was asked for an input size its data do not cover."""


# nn-Meter also has Pixel 4 and Pixel 6 tables, but no whole network was
# measured on those phones with a runtime we can match, so a target for them
# could not be checked the way this one is (docs/latency.md).
NOT_OFFERED = ("pixel4", "pixel6")


class PixelTarget(Target):
    """Table entries where measured, the fitted model elsewhere. Read-only."""

    def __init__(
        self,
        name: str,
        model: CostModel,
        measured: dict[LayerKey, float],
        provenance: dict,
        loo_errors: Sequence[float] = (),
        resolution_range: tuple[int, int] = V1_RESOLUTION_RANGE,
    ) -> None:
        super().__init__()
        self.name = name
        self.model = model
        self._measured = dict(measured)
        self.provenance = provenance
        self.loo_errors = tuple(loo_errors)  # leave-one-out relative errors on Table 3
        self.resolution_range = (int(resolution_range[0]), int(resolution_range[1]))

    def check_resolution(self, resolution: int) -> str | None:
        """Warn (:class:`OutsideFittedRange`) when ``resolution`` is outside the fitted data.

        Returns the one-line message, or None inside the range.
        """
        lo, hi = self.resolution_range
        if lo <= resolution <= hi:
            return None
        msg = (
            f"target {self.name!r} was never fitted at {resolution} px: its data cover "
            f"network inputs of {lo}-{hi} px, so this prediction is an extrapolation"
        )
        warnings.warn(msg, OutsideFittedRange, stacklevel=3)
        return msg

    def lookup(self, keys: Sequence[LayerKey]) -> list[tuple[float, str]]:
        modelled = self.model.predict(keys)
        return [
            (self._measured[k], SOURCE_MEASURED_SCALED)
            if k in self._measured
            else (float(m), SOURCE_MODELLED)
            for k, m in zip(keys, modelled, strict=True)
        ]

    def describe(self) -> dict:
        prov = self.provenance
        errs = [abs(e) for e in self.loo_errors]
        validation = (
            {
                "n": len(errs),
                "mape": sum(errs) / len(errs),
                "max_error": max(errs),
                "what": "MobileNetV3 Table 3, leave-one-out",
            }
            if errs
            else None
        )
        return {
            "name": self.name,
            "kind": "modelled",
            "device": prov.get("device", ""),
            "runtime": prov.get("runtime", ""),
            "threads": prov.get("threads"),
            "overhead_ms": 0.0,
            "updated": prov.get("fitted"),
            "validation": validation,
            "resolution_range": list(self.resolution_range),
            # layer keys by source: the scaled ProxylessNAS entries; every other key is modelled
            "sources": ({SOURCE_MEASURED_SCALED: len(self._measured), SOURCE_MODELLED: "all others"}
                        if self._measured else {SOURCE_MODELLED: "all"}),
            "provenance": prov,
        }


@cache
def _read_model() -> dict:
    text = resources.files("hwnas.latency").joinpath("data", MODEL_FILE).read_text()
    data = json.loads(text)
    version = data.get("format_version")
    if version not in READS_VERSIONS:
        raise HwnasError(
            f"{MODEL_FILE} has format version {version!r}; this hwnas reads "
            f"{', '.join(map(str, READS_VERSIONS))} (re-run bench/fit_pixel.py)"
        )
    return data


def load_pixel_target(name: str = "pixel") -> PixelTarget:
    """The Pixel target under ``name`` (``pixel``/``pixel1``, ``pixel2``, ``pixel3``)."""
    key = name.lower()
    if key in NOT_OFFERED:
        raise HwnasError(
            f"target {name!r} is not offered: without whole-network measurements on that phone "
            "its error cannot be shown (docs/latency.md); use 'pixel'"
        )
    if key not in PIXEL_NAMES:
        raise HwnasError(f"unknown pixel target {name!r}: known are {', '.join(PIXEL_NAMES)}")
    data = _read_model()
    span = tuple(data["provenance"].get("resolution_range", V1_RESOLUTION_RANGE))
    if key in PHONES:
        phone = data.get("phones", {}).get(key)
        if phone is None:
            raise HwnasError(f"{MODEL_FILE} has no {key!r} model (re-run bench/fit_pixel.py)")
        loo = [float(r["loo_err"]) for r in phone["table3_errors"]]
        model = CostModel(**phone["coefficients"])
        # every layer modelled: the ProxylessNAS entries were measured on a Pixel 1
        return PixelTarget(key, model, {}, dict(phone["provenance"]), loo, span)
    model = CostModel(**data["coefficients"]["table3"])
    measured = {LayerKey.parse(k): float(v) for k, v in data["measured_ms"].items()}
    loo = [float(r["loo_err"]) for r in data["table3_errors"]]
    return PixelTarget(key, model, measured, dict(data["provenance"]), loo, span)

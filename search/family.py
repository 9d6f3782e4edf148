"""The hand-designed frontier on a run's plot: MobileNetV3 at a few widths, through the run's estimator.

With ``--estimator supernet`` each network of :data:`FAMILY` that is a path of
the supernet is scored by the same :meth:`hwnas.supernet.Supernet.estimate`
the candidates were (a few calls, seconds), and its latency predicted on the
run's target at ``--resolution``; the points are kept in the run folder
(:data:`FAMILY_FILE`) and drawn on ``acc_vs_latency.png`` beside the trials,
so searched and hand-designed nets are compared on the same axes by the same
ruler. With the ``train`` estimator, scoring them would cost a proxy training
each; the plot then marks the reference nets' latencies only.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hwnas.common.atomic import atomic_write_text
from hwnas.space.references import reference

if TYPE_CHECKING:
    from .config import SearchConfig
    from .estimators import SupernetEstimator

# MobileNetV3 (Howard et al., ICCV 2019) Large and Small at the widths its paper
# reports (Table 3/4: 0.75 and 1.0; torchvision and timm also ship 0.5).
FAMILY = (("mobilenetv3_large", (0.5, 0.75, 1.0)), ("mobilenetv3_small", (0.5, 0.75, 1.0)))
FAMILY_FILE = "family.json"


def family_points(config: SearchConfig, estimator: SupernetEstimator) -> list[dict[str, Any]]:
    """``[{name, width, latency_ms, accuracy}]`` for the family members that are supernet paths."""
    from hwnas.latency import load_target

    from .objective import DEPLOY_NUM_CLASSES

    sn = estimator.supernet(config)
    target = load_target(config.target)
    out = []
    for name, widths in FAMILY:
        for w in widths:
            arch = reference(name, width=w)
            if not sn.fits(arch):
                continue
            ms = float(target.predict(arch, resolution=config.resolution,
                                      num_classes=DEPLOY_NUM_CLASSES))
            out.append({"name": name, "width": w, "latency_ms": round(ms, 3),
                        "accuracy": float(sn.estimate(arch))})
    return out


def load_family(run_dir: Path) -> list[dict[str, Any]]:
    f = run_dir / FAMILY_FILE
    return json.loads(f.read_text()) if f.is_file() else []


def ensure_family(config: SearchConfig, run_dir: Path,
                  estimator: SupernetEstimator | None) -> list[dict[str, Any]]:
    """The run's family points: read from the run folder, or scored once and written there."""
    f = run_dir / FAMILY_FILE
    if f.is_file() or estimator is None:
        return load_family(run_dir)
    points = family_points(config, estimator)
    atomic_write_text(f, json.dumps(points, indent=2) + "\n")
    return points


__all__ = ["FAMILY", "FAMILY_FILE", "ensure_family", "family_points", "load_family"]

"""The run's acc_vs_latency plot: trials, Pareto front, budget, and the MobileNetV3 family."""

from __future__ import annotations

import pandas as pd
from matplotlib.figure import Figure

from hwnas.search.plots import plot_accuracy_vs_latency


def test_family_points_share_the_axes_with_front_and_budget() -> None:
    trials = pd.DataFrame({"number": [0, 1, 2], "state": ["COMPLETE"] * 3,
                           "latency_ms": [20.0, 40.0, 35.0], "accuracy": [0.80, 0.85, 0.79]})
    pareto = trials.iloc[:2]
    family = [{"name": "mobilenetv3_small", "width": w, "latency_ms": ms, "accuracy": acc}
              for w, ms, acc in ((1.0, 18.0, 0.78), (0.5, 9.0, 0.70))]
    ax = Figure().add_subplot()
    plot_accuracy_vs_latency(trials, pareto, {"mobilenetv3_small": 18.0, "mnasnet_a1": 60.0},
                             target_ms=30.0, ax=ax, family=family)
    lines = {line.get_label(): line for line in ax.get_lines()}
    fam = lines["mobilenetv3_small x0.5, 1 (same estimator)"]
    assert list(fam.get_xdata()) == [9.0, 18.0] and list(fam.get_ydata()) == [0.70, 0.78]
    assert "Pareto front" in lines and "target 30 ms" in lines
    # a family member is drawn as points, not again as a vertical mark; others keep theirs
    assert not any(k.startswith("mobilenetv3_small 18.0") for k in lines)
    assert "mnasnet_a1 60.0 ms" in lines

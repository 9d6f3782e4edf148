"""The latency budget in the space: the fastest net (the floor a budget must
clear) and start-up candidates predicted within the budget (``--warm-start``).

Both price the whole space from the target's tables, vectorised
(:class:`hwnas.latency.SpaceLatency`), only when the target has every layer of
the space (:func:`space_priced`): a table that is not built is not measured
just for them.

Warm start: a sampler's first trials are random (TPE models nothing until 10
trials are in, NSGA-II's first generation is random). Under a tight budget most
of a space is too slow (``pixel``, 20 ms: random ``mobilenetv3`` nets are
19-170 ms), so those trials are spent on nets a ``hard`` reward skips: in
``bench/tight_budget.py`` TPE's first trial within 20 ms came at trial 13-77 of
100, and a 48-trial search ended with none (docs/benchmarks.md). A warm start
queues, before the search, ``n`` distinct nets predicted within the budget, drawn the same way whatever the
sampler: a uniform random net, then, while it is over budget, one random
decision moved to a random choice that makes the net faster (a walk down the
target's latency, so the start lands just under the budget, where the reward is
best, from many directions). The search's samplers see these trials as their
own start-up (Optuna's ``enqueue_trial``: the sampler is asked nothing for a
queued trial's decisions, and learns from it as from any other trial). The
latency is the search's own prediction, so a queued net is never skipped.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import optuna

from .samplers import SAMPLER_REGISTRY, default_sampler

if TYPE_CHECKING:
    from .objective import Components

WARM_START_ATTR = "warm_start"  # user attr of a queued start-up trial (column warm_start)
# Each walk gets this many moves per decision of the space before it is given up
# (a walk stuck where no single move is faster, or budgets close to the fastest net).
MOVES_PER_DECISION = 8
# Walks started per net wanted (duplicates and walks given up are dropped).
WALKS_PER_NET = 4


def default_warm_start(sampler: str | None, multi_objective: bool, trials: int) -> int:
    """Trials queued within the budget when ``--warm-start`` is not given: the
    sampler's random start-up (tpe 10, nsga2 its first generation; random and rl
    none: random search stays uniform, and the RL controller learns from its own
    draws), at most ``trials``; 0 for a Pareto search (its front spans latencies)."""
    if multi_objective:
        return 0
    kind = SAMPLER_REGISTRY[sampler or default_sampler(False)]
    return min(trials, kind.startup(trials))


def feasible_indices(predict, high: np.ndarray, budget_ms: float, n: int,  # noqa: ANN001
                     rng: np.random.Generator) -> np.ndarray:
    """Up to ``n`` distinct rows of decision indices predicted within ``budget_ms``.

    Args:
        predict: ``(m, d)`` index matrix -> ``(m,)`` predicted ms.
        high: number of choices of each of the ``d`` decisions.
        budget_ms: the latency budget.
        n: rows wanted.
        rng: the random numbers (seeded: the same rows for the same seed).

    Returns:
        ``(k, d)`` int64, ``k <= n`` (fewer only when the walks found fewer
        distinct nets within the budget).
    """
    high = np.asarray(high, dtype=np.int64)
    d = len(high)
    if n <= 0:
        return np.zeros((0, d), dtype=np.int64)
    rows = rng.integers(0, high, size=(n * WALKS_PER_NET, d), dtype=np.int64)
    lat = predict(rows)
    cols = np.arange(int(high.max()))
    for _ in range(MOVES_PER_DECISION * d):
        over = np.flatnonzero(lat > budget_ms)
        if over.size == 0:
            break
        col = rng.integers(0, d, size=over.size)
        # every choice of the chosen decision, priced: (walks over budget, choices)
        alt = np.full((over.size, cols.size), np.inf)
        for v in cols:
            ok = v < high[col]
            if ok.any():
                trial = rows[over[ok]].copy()
                trial[np.arange(trial.shape[0]), col[ok]] = v
                alt[np.flatnonzero(ok), v] = predict(trial)
        faster = alt < lat[over, None]
        key = np.where(faster, rng.random(alt.shape), -1.0)  # a random faster choice
        pick = key.argmax(axis=1)
        moved = faster[np.arange(over.size), pick]
        w = over[moved]
        rows[w, col[moved]] = pick[moved]
        lat[w] = alt[np.flatnonzero(moved), pick[moved]]
    within = rows[lat <= budget_ms]
    _, first = np.unique(within, axis=0, return_index=True)
    return within[np.sort(first)][:n]


def space_priced(comp: Components) -> bool:
    """Whether the run's target prices every layer of its space without measuring."""
    from hwnas.latency import space_keys

    from .objective import DEPLOY_NUM_CLASSES

    return not comp.target.missing(space_keys(comp.space, resolution=comp.config.resolution,
                                              num_classes=DEPLOY_NUM_CLASSES))


def _space_latency(target, space, resolution: int):  # noqa: ANN001, ANN202 - hwnas.latency.SpaceLatency
    """The target's vectorised latency of the space as the search deploys it (cached by the target)."""
    from .objective import DEPLOY_NUM_CLASSES

    return target.space_latency(space, resolution=resolution, num_classes=DEPLOY_NUM_CLASSES)


def fastest_latency(comp: Components) -> tuple[float, str]:
    """The lowest predicted latency (ms) of any net in the space, and that net.

    Exact, by dynamic programming over the space's block tables
    (``SpaceLatency.fastest``). When the target would first have to measure
    layers of the space (never for a fitted target) it is the space's cheapest
    net (min MAdds) instead: an upper bound that needs only that net's layers
    measured (~20 layers, against minutes for the space: ``nas-latency build``).
    """
    if not space_priced(comp):
        arch = comp.space.smallest()
        return comp.predict_ms(arch), arch.to_str()
    best = _space_latency(comp.target, comp.space, comp.config.resolution).fastest()
    return float(best.ms), best.arch.to_str()


def warm_start_params(target, space, budget_ms: float, n: int, seed: int,  # noqa: ANN001
                      resolution: int = 224) -> list[dict]:
    """Up to ``n`` distinct params dicts of ``space`` predicted within ``budget_ms`` on
    ``target`` (:func:`feasible_indices` on the space's vectorised latency; the
    target must price every layer of the space at ``resolution``)."""
    latency = _space_latency(target, space, resolution)
    rows = feasible_indices(latency.predict_indices, latency.structure.high, budget_ms, n,
                            np.random.default_rng(seed))
    return [space.from_indices(row) for row in rows]


def enqueue_warm_starts(study: optuna.Study, comp: Components, n: int, seed: int) -> str:
    """Queue up to ``n`` nets predicted within the run's budget as the study's
    first trials; returns a one-line notice of what was queued (none when the
    target's table lacks layers of the space)."""
    c = comp.config
    if not space_priced(comp):
        return (f"warm start: none (target {c.target!r} lacks layers of space {c.space!r}; "
                f"nas-latency build --target {c.target} --space {c.space} measures them)")
    params = warm_start_params(comp.target, comp.space, c.latency_ms, n, seed, c.resolution)
    for p in params:
        study.enqueue_trial(p, user_attrs={WARM_START_ATTR: True})
    return (f"warm start: the first {len(params)} trials are nets predicted within "
            f"{c.latency} (--warm-start {n})")

"""Controllers at a fair scale: TPE, NSGA-II, RL and random on one cached supernet.

Issue 11's benchmark: >= 300 candidates x 5 seeds at two budgets; goal: the best
controller beats random in >= 4 of 5 paired seeds at both budgets. Each run is the
search's own loop without the run folder: the controller (``make_sampler``, with
the shipped warm start: ``hwnas.search.budget``), the space's decisions
(``SearchSpace.sample``), the ``pixel`` prediction at 224 px, the run's reward
(``make_reward``) and the supernet estimate (inherited weights, BN recalibrated).
Estimates are memoised by architecture string across every run (an estimate is a
deterministic function of the net), so a controller that repeats itself costs
nothing, as the search's duplicate rule makes it.

The estimate is cheapened for the 12,000 candidates: BN recalibrated on 256 images
and scored on 500 (the search's defaults: 512 and 2,000); it stays one fixed
function of the net, which is all that comparing optimisers needs. What it does
not say: whether the supernet's score ranks nets as training does (it does not:
docs/supernet.md, Kendall tau -0.09).

    taskset -c 1 nice .venv/bin/python bench/controllers.py \\
        --supernet mobilenetv3-fashion-mnist-r32-spos-e12-s0-d2d698ca8b --budget 25

Writes ``bench/results/controllers_<budget>ms.json`` (every run's best-so-far curve)
and ``.png`` (mean best-so-far per controller with the min-max band over seeds).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import supernet_fidelity as sf  # noqa: E402  (machine description)
from search_quality import _plot as plot_curves  # noqa: E402  (best so far, min-max band)

from hwnas.common.atomic import atomic_write_text  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"
CONTROLLERS = ("tpe", "nsga2", "rl", "random")


def one_run(name: str, seed: int, args: argparse.Namespace, score, space, target) -> list[float]:  # noqa: ANN001
    import optuna

    from hwnas.search.budget import default_warm_start, warm_start_params
    from hwnas.search.rewards import make_reward
    from hwnas.search.samplers import make_sampler

    reward = make_reward(args.reward, args.budget)
    study = optuna.create_study(direction="maximize",
                                sampler=make_sampler(name, seed=seed, trials=args.trials))
    for params in warm_start_params(target, space, args.budget,
                                    default_warm_start(name, False, args.trials), seed):
        study.enqueue_trial(params)  # the shipped warm start, as nas-search queues it

    def objective(trial: optuna.Trial) -> float:
        arch = space.sample(trial)
        return reward(score(arch), target.predict(arch))

    study.optimize(objective, n_trials=args.trials)
    values = [t.value for t in study.trials]
    return np.maximum.accumulate(values).tolist()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--supernet", required=True)
    ap.add_argument("--budget", type=float, required=True, help="pixel budget, ms")
    ap.add_argument("--reward", default="soft")
    ap.add_argument("--trials", type=int, default=300)
    ap.add_argument("--seeds", type=int, default=5)
    ap.add_argument("--controllers", default=",".join(CONTROLLERS))
    ap.add_argument("--calib-images", type=int, default=256)
    ap.add_argument("--eval-images", type=int, default=500)
    args = ap.parse_args()
    import optuna
    import torch

    from hwnas.latency import load_target
    from hwnas.space.searchspace import get_space
    from hwnas.supernet import load_supernet

    torch.set_num_threads(1)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    sn = load_supernet(args.supernet, calib_images=args.calib_images, eval_images=args.eval_images)
    space, target = get_space(sn.config.space), load_target("pixel")
    cache: dict[str, float] = {}

    def score(arch) -> float:  # noqa: ANN001
        key = arch.to_str()
        if key not in cache:
            cache[key] = sn.estimate(arch)
        return cache[key]

    curves: dict[str, list[list[float]]] = {}
    seconds: dict[str, list[float]] = {}
    for name in args.controllers.split(","):
        for seed in range(args.seeds):
            t0 = time.perf_counter()
            curves.setdefault(name, []).append(one_run(name, seed, args, score, space, target))
            seconds.setdefault(name, []).append(time.perf_counter() - t0)
            print(f"{name} seed {seed}: best {curves[name][-1][-1]:.4f} "
                  f"({seconds[name][-1]:.0f} s, {len(cache)} nets scored)", flush=True)
    final = {n: [c[-1] for c in runs] for n, runs in curves.items()}
    wins = {n: int(sum(a > b for a, b in zip(final[n], final["random"], strict=True)))
            for n in final if n != "random"} if "random" in final else {}
    stem = RESULTS / f"controllers_{args.budget:g}ms"
    atomic_write_text(stem.with_suffix(".json"), json.dumps({
        "command": " ".join(sys.argv), "supernet": args.supernet, "budget_ms": args.budget,
        "reward": args.reward, "trials": args.trials, "calib_images": args.calib_images,
        "eval_images": args.eval_images, "nets_scored": len(cache), "machine": sf._machine(),
        "final_best": final, "wins_over_random": wins, "seconds": seconds, "curves": curves},
        indent=1) + "\n")
    plot_curves({n: np.array(c) for n, c in curves.items()}, stem.with_suffix(".png"),
         f"pixel {args.budget:g} ms, {args.reward} reward, supernet estimate, {args.trials} candidates")
    for n, v in final.items():
        print(f"| {n} | {np.mean(v):.4f} +- {np.std(v, ddof=1):.4f} | "
              f"{wins.get(n, '-')} of {len(v)} over random |")


if __name__ == "__main__":
    main()

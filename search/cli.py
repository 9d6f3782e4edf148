"""``nas-search``: search a space for the most accurate net under a latency budget.

    nas-search --target pixel --lat 50ms
    nas-search --target host --lat 8ms --trials 40 --sampler rl --reward hard
    nas-search --out results/my-run --resume

Thin: parse and validate, call :func:`hwnas.search.run.run_search`, print.
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

from hwnas.common.cli import Parser, run_cli
from hwnas.common.cli import seed as seed_type
from hwnas.common.errors import HwnasError
from hwnas.common.units import shorten

from .config import (
    BACKENDS,
    DEFAULT_TIMEOUT_S,
    DEFAULT_TRIALS,
    DEVICES,
    ESTIMATORS,
    PREFILTERS,
    PRUNERS,
    RESUMABLE_FIELDS,
    REWARDS,
    SAMPLERS,
    SearchConfig,
    parse_config,
)
from .estimators import ESTIMATOR_REGISTRY
from .prefilter import PREFILTER_REGISTRY
from .rewards import REWARD_REGISTRY
from .samplers import SAMPLER_REGISTRY, default_sampler
from .storage import saved_config as stored_config

_DURATION = re.compile(r"^\s*([0-9]*\.?[0-9]+)\s*(s|m|h)?\s*$")
_DURATION_S = {"s": 1.0, "m": 60.0, "h": 3600.0, None: 1.0}


def parse_duration(text: str) -> float | None:
    """Seconds from ``600``, ``600s``, ``10m`` or ``1.5h``; None from ``none``."""
    if text.strip().lower() == "none":
        return None
    m = _DURATION.match(text)
    if not m:
        raise HwnasError(f"bad --timeout {text!r}: expected seconds, a number with s, m or h (e.g. 10m), or none")
    return float(m.group(1)) * _DURATION_S[m.group(2)]


def _choices_help(registry: dict, default: str) -> str:
    """``name: help; ...`` of a registry, the default marked."""
    return "; ".join(f"{n}{' (default)' if n == default else ''}: {k.help}"
                     for n, k in registry.items())


def build_parser() -> argparse.ArgumentParser:
    p = Parser(
        prog="nas-search",
        description="Hardware-aware architecture search: find the most accurate network of a "
                    "search space whose latency on a target device meets a budget "
                    "(MnasNet-style), and write a run folder under results/.",
        epilog="Example: nas-search --target pixel --lat 50ms  (about 10 minutes on 2 cores)")
    a = p.add_argument
    a("--target", help="latency target: host, pixel, or a target built with nas-latency build")
    a("--lat", help="latency budget with a unit: 50ms, 0.05s, 50000us")
    a("--space", default=None, help="search space: mobilenetv3 (default) or mnasnet")
    a("--data", default=None, help="proxy task data: fashion-mnist (default), a folder of IDX "
                                    "files, or an ImageFolder directory")
    a("--trials", type=int, default=None, help=f"number of trials in total (default {DEFAULT_TRIALS})")
    a("--timeout", default=None, help="stop starting trials after this long: 600, 10m, 1h or "
                                      f"none (default {DEFAULT_TIMEOUT_S / 60:g}m)")
    a("--sampler", choices=SAMPLERS, default=None,
      help=f"controller; default {default_sampler(False)}, {default_sampler(True)} for a "
           f"multi-objective reward. {_choices_help(SAMPLER_REGISTRY, '')}")
    a("--reward", choices=REWARDS, default=None,
      help=_choices_help(REWARD_REGISTRY, SearchConfig.model_fields["reward"].default))
    a("--w", type=float, default=None, help="override the reward exponent (MnasNet) or beta (TuNAS)")
    a("--epochs", type=int, default=None, help="proxy training epochs per trial (default 2)")
    a("--proxy-resolution", type=int, default=None,
      help="training resolution of the proxy task (default 32); latency uses --resolution")
    a("--resolution", type=int, default=None, help="deployment resolution for latency (default 224)")
    a("--train-subset", type=int, default=None,
      help="train on this many images of the train split (default 10000, or all if fewer)")
    a("--val-size", type=int, default=None,
      help="held-out images carved from the train split to score nets (default 5000)")
    a("--lr", type=float, default=None, help="proxy training peak learning rate")
    a("--pruner", choices=PRUNERS, default=None, help="stop weak trials early (default "
      f"{SearchConfig.model_fields['pruner'].default})")
    a("--prefilter", choices=PREFILTERS, default=None,
      help="zero-cost score at initialisation to discard hopeless candidates before training "
           f"(default none). {_choices_help(PREFILTER_REGISTRY, '')}")
    a("--prefilter-keep", type=float, default=None,
      help="prefilter: keep candidates scoring in the top fraction seen so far (default 0.5)")
    a("--estimator", choices=ESTIMATORS, default=None,
      help="how a candidate's accuracy is estimated. "
           + _choices_help(ESTIMATOR_REGISTRY, SearchConfig.model_fields["estimator"].default))
    a("--supernet", default=None,
      help="estimator supernet: the cached supernet to use, by id (nas-supernet info lists "
           "them); default: the one matching --space, --data, --proxy-resolution and --seed, "
           "trained first if there is none")
    a("--supernet-epochs", type=int, default=None,
      help="estimator supernet: epochs of a supernet trained for this run when none is cached "
           "(default: hwnas.supernet's, 20)")
    a("--supernet-finetune", type=int, default=None, metavar="STEPS",
      help="estimator supernet: fine-tune each candidate's inherited weights this many steps "
           "of the proxy recipe before scoring it (default 0: score them as inherited; "
           "docs/supernet.md has the measured ranking of each)")
    a("--warm-start", type=int, default=None, metavar="N",
      help="queue N nets predicted within the budget as the first trials, in place of the "
           "sampler's random start-up (default: tpe 10, nsga2 its first generation, random "
           "and rl 0, pareto 0; 0 turns it off)")
    a("--retrain-epochs", type=int, default=None,
      help="after the search, train the best net from scratch for this many epochs on the whole "
           "train split and record both accuracies in best.json (default 0: no retraining)")
    a("--workers", type=int, default=None, help="parallel trial processes (local) or concurrent Ray trials")
    a("--backend", choices=BACKENDS, default=None, help="local (default) or ray (a local Ray for the run)")
    a("--timeout-kill", action="store_true", default=None,
      help="at --timeout also end the trials still running (default: let them finish); "
           "they are re-queued by --resume")
    a("--device", default=None, help=f"torch device of the trials: {', '.join(DEVICES)} "
                                     "(default auto: CUDA with AMP when present) or cuda:N")
    a("--ray-address", default=None, help="join an existing Ray cluster (implies --backend ray; "
                                          "needs a --storage every node reaches)")
    a("--max-failures", type=int, default=None, help="Ray: retries of a failed trial (default 2)")
    a("--gpus-per-trial", type=float, default=None,
      help="Ray: GPUs per trial (default 1 when the cluster has GPUs, else 0)")
    a("--cpus-per-trial", type=float, default=None,
      help="Ray: CPUs per trial (default: the cluster's CPUs / --workers)")
    a("--storage", default=None, help="Optuna storage URL (default: SQLite in the run folder), "
                                      "e.g. postgresql://user@host/db for several machines")
    a("--out", default=None, help="run folder (default results/<target>-<lat>-<time>)")
    a("--resume", action="store_true", help="continue the run in --out")
    a("--seed", type=seed_type, default=None, help="one seed for sampling, data order and init (default 0)")
    a("--quiet", action="store_true", help="no progress bar")
    return p


# Config fields set by the flag of another name; every other field's flag is its name.
_FIELD_TO_FLAG = {"latency": "lat", "timeout_s": "timeout"}
# Flags copied to the config field of the same name as given.
_FLAG_TO_FIELD = {f: f for f in (
    "space", "data", "trials", "sampler", "reward", "w", "epochs", "proxy_resolution",
    "resolution", "train_subset", "val_size", "lr", "prefilter_keep", "pruner", "prefilter",
    "workers", "backend", "ray_address", "max_failures", "storage", "out", "seed",
    "estimator", "supernet", "supernet_epochs", "supernet_finetune", "retrain_epochs", "device", "warm_start",
    "gpus_per_trial", "cpus_per_trial", "timeout_kill")}
# Flags a resumed run may change (its budget and where it runs): config.RESUMABLE_FIELDS.
RESUMABLE = tuple(_FIELD_TO_FLAG.get(f, f) for f in RESUMABLE_FIELDS)


def _flag(field: str) -> str:
    return "--" + _FIELD_TO_FLAG.get(field, field).replace("_", "-")


def _given(args: argparse.Namespace) -> dict:
    """The config fields the command line sets, as raw values."""
    raw: dict = {}
    if args.target:
        raw["target"] = args.target
    if args.lat:
        raw["latency"] = args.lat
    for flag, field in _FLAG_TO_FIELD.items():
        v = getattr(args, flag)
        if v is not None:
            raw[field] = v
    if args.timeout is not None:
        raw["timeout_s"] = parse_duration(args.timeout)
    return raw


def saved_config(out: str) -> SearchConfig:
    """The config.yaml of run folder ``out``; a damaged one is named with what to do."""
    cfg = Path(out) / "config.yaml"
    if not cfg.is_file():
        raise HwnasError(f"cannot resume {out}: no config.yaml there")
    return stored_config(cfg)


def _same(field: str, stored: SearchConfig, new: SearchConfig) -> bool:
    if field == "latency":
        return stored.latency_ms == new.latency_ms
    if field == "data":  # a path typed relative or absolute
        a, b = Path(stored.data), Path(new.data)
        return stored.data == new.data or (a.exists() and b.exists() and a.resolve() == b.resolve())
    return getattr(stored, field) == getattr(new, field)


def config_from_args(args: argparse.Namespace) -> SearchConfig:
    """The run's config. With ``--resume`` it is the stored one: the flags given
    may repeat the stored values (the original command plus ``--resume``); only
    the budget and where it runs (RESUMABLE) may differ."""
    given = _given(args)
    if not args.resume:
        if not args.target or not args.lat:
            raise HwnasError("--target and --lat are required (e.g. --target pixel --lat 50ms)")
        return parse_config(given, source="")
    if not args.out:
        raise HwnasError("--resume needs --out RUN_FOLDER (the run to continue)")
    stored = saved_config(args.out)
    raw = stored.model_dump()
    new = parse_config({**{k: v for k, v in raw.items() if not ("latency" in given and
                                                                  k == "latency_ms")}, **given},
                       source="")
    for field in given:
        if field in RESUMABLE_FIELDS or field == "out" or _same(field, stored, new):
            continue
        was, now = (shorten(getattr(c, field), 80) for c in (stored, new))
        raise HwnasError(f"{_flag(field)} cannot change when resuming {args.out}: stored {was}, "
                         f"given {now}; resume with the stored value, or start a new --out "
                         f"(only {', '.join('--' + f.replace('_', '-') for f in RESUMABLE)} "
                         "can change)")
    # The stored values as stored (50ms stays 50ms when 0.05s was typed); the budget as given.
    return parse_config({**raw, **{k: v for k, v in given.items()
                                   if k in RESUMABLE_FIELDS or k == "out"}}, source="")


SUMMARY_ROWS = 5


def _summary(run_dir: Path) -> None:
    from rich.console import Console
    from rich.table import Table

    from .results import load_run

    run = load_run(run_dir)
    con = Console()
    df = run.trials
    done = df[(df["state"] == "COMPLETE") & df["accuracy"].notna()]
    pareto = run.config.get("reward") == "pareto"
    states = ", ".join(f"{n} {s.lower()}" for s, n in df["state"].value_counts().items())
    title = (f"{'Pareto front' if pareto else 'Best networks'}: {len(done)} trained of "
             f"{len(df)} trials ({states}); budget {run.config.get('latency')} on "
             f"{run.config.get('target')}")
    table = Table(title=title)
    for col in ("trial", "latency (ms)", "accuracy", "reward"):
        table.add_column(col, justify="right", no_wrap=True)
    table.add_column("arch", overflow="fold")  # whole, folded: it can be pasted back
    rows = (run.pareto.sort_values("latency_ms") if pareto
            else done.sort_values(["reward", "number"], ascending=[False, True]).head(SUMMARY_ROWS))
    for _, r in rows.iterrows():
        reward = "-" if r["reward"] != r["reward"] else f"{r['reward']:.4f}"
        table.add_row(str(r["number"]), f"{r['latency_ms']:.2f}", f"{r['accuracy']:.4f}", reward,
                      str(r["arch"]))
    con.print(table)
    if run.best:
        est = " (supernet estimate)" if run.best.get("estimator") == "supernet" else ""
        con.print(f"best: trial {run.best['number']}, {run.best['latency_ms']:.2f} ms predicted, "
                  f"accuracy {run.best['accuracy']:.4f}{est}")
        if run.best.get("retrained_accuracy") is not None:
            con.print(f"retrained from scratch for {run.best['retrain_epochs']} epochs: "
                      f"{run.best['retrained_accuracy']:.4f} held-out accuracy")
    else:
        con.print("no trial finished training: no best network")
    con.print(f"Results: {run_dir}  (open with hwnas.search.load_run({str(run_dir)!r}))")


def main(argv: list[str] | None = None) -> int:
    """Run ``nas-search``; returns the exit code (0; 2 for bad input; 130 when interrupted)."""
    where = {"out": "RUN_FOLDER"}

    def run(args: argparse.Namespace) -> None:
        import optuna

        # The progress bar and the final table say what Optuna's per-trial log would.
        optuna.logging.set_verbosity(optuna.logging.WARNING)
        config = config_from_args(args)
        from .run import default_run_dir, run_search

        if not config.out:  # fixed now, so an interrupted run can say where it is
            config = config.model_copy(update={"out": str(default_run_dir(config))})
        where["out"] = config.out
        if args.quiet:
            run_dir = run_search(config, resume=args.resume, notify=_notice)
        else:
            run_dir = _run_with_progress(config, args.resume)
        _summary(run_dir)

    return run_cli("nas-search", build_parser(), run, argv, on_interrupt=lambda _a: (
        f"interrupted; continue with: nas-search --resume --out {where['out']}"))


def _notice(line: str) -> None:
    """A one-line notice of the run (a warning, the supernet) on stderr."""
    print(f"nas-search: {line}", file=sys.stderr, flush=True)


def _run_with_progress(config: SearchConfig, resume: bool) -> Path:
    """Run with a progress bar that appears once the inputs are checked, so that
    bad input prints its one line and nothing else."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from .run import run_search

    bar = Progress(TextColumn("[bold]search"), BarColumn(), MofNCompleteColumn(),
                   TextColumn("best reward {task.fields[best]}"), TimeElapsedColumn())
    task = None

    def notice(line: str) -> None:
        (bar.console.print(f"nas-search: {line}", markup=False, highlight=False)
         if task is not None else _notice(line))

    def progress(done: int, total: int, best: float | None) -> None:
        nonlocal task
        if task is None:
            bar.start()
            task = bar.add_task("trials", total=total, best="-")
        bar.update(task, completed=done, total=total, best="-" if best is None else f"{best:.4f}")

    try:
        return run_search(config, resume=resume, progress=progress, notify=notice)
    finally:
        if task is not None:
            bar.stop()


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())

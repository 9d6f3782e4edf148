"""Drive a refine from a :class:`RefineConfig`: check, prepare, iterate, resume, finish.

:func:`prepare` does every check that can fail on user input (YAML already
parsed; target, input network, weights, goal, data, output folder) without
writing anything. :func:`run_refine` then writes the output folder
(:mod:`hwnas.netadapt.outputs`) and saves state after each finished
iteration, so running it again with ``resume: true`` continues from there.

>>> from hwnas.netadapt import load_config, run_refine
>>> summary = run_refine(load_config("examples/netadapt_tiny.yaml"))  # doctest: +SKIP
>>> summary["final"]["latency_ms"] <= summary["goal_ms"]  # doctest: +SKIP
True
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import torch
import yaml
from torch import nn

from hwnas.common.atomic import atomic_save_state_dict, atomic_write_text
from hwnas.common.errors import HwnasError
from hwnas.latency import Target, load_target
from hwnas.proxy.data import Dataset
from hwnas.space.build import build
from hwnas.space.spec import Arch

from . import outputs
from .config import RefineConfig, parse_config
from .inputs import ResolvedInput, resolve_input
from .prunable import normalize
from .refine import (
    EPS_MS,
    Progress,
    fine_tune,
    goal_ms,
    iterate,
    predict,
    prepare_model,
    smallest_reachable,
)

SUMMARY_FORMAT_VERSION = 1


@dataclass
class Prepared:
    """Everything checked and loaded before the output folder is touched."""

    cfg: RefineConfig
    out: Path
    target: Target
    input: ResolvedInput
    arch: Arch  # normalised input
    input_ms: float
    goal_ms: float
    smallest_ms: float
    data: Dataset
    model: nn.Module | None  # input weights (None: to be trained, or resumed from state)
    state: dict | None


def _check_out(cfg: RefineConfig, out: Path) -> dict | None:
    saved = out / "config.yaml"
    if out.exists() and not out.is_dir():
        raise HwnasError(f"out: {out} exists and is not a folder")
    if out.is_dir() and any(out.iterdir()) and not saved.is_file():
        raise HwnasError(f"out: {out} exists and is not a refine folder (no config.yaml); "
                         "choose another out")
    if not saved.is_file():
        return None
    if not cfg.resume:
        raise HwnasError(f"out: {out} already holds a refine; set resume: true to continue it "
                         "or choose another out")
    old = parse_config(yaml.safe_load(saved.read_text()), source=str(saved)).fingerprint()
    new = cfg.fingerprint()
    for key in new:
        if old.get(key) != new[key]:
            raise HwnasError(f"out: {out} holds a refine with another {key} ({old.get(key)!r}, "
                             f"now {new[key]!r}); choose another out to start afresh")
    return outputs.read_state(out)


def prepare(cfg: RefineConfig) -> Prepared:
    """Check ``cfg`` against the world; one-line ValueError, nothing written."""
    from hwnas.proxy.data import load_dataset

    out = Path(cfg.out)
    state = _check_out(cfg, out)
    target = load_target(cfg.target)
    inp = resolve_input(cfg.input)
    arch = normalize(inp.arch)
    input_ms = predict(target, arch, cfg.resolution)
    goal = goal_ms(cfg, input_ms)
    _, low_ms = smallest_reachable(target, arch, cfg)
    if goal < low_ms - EPS_MS:
        raise HwnasError(
            f"goal: {cfg.goal} ({goal:.3f} ms) is below what pruning can reach on {cfg.target}: "
            f"the smallest reachable is {low_ms:.3f} ms (every {cfg.mode} unit at "
            f"{cfg.channel_step} channels; input {input_ms:.3f} ms)")
    ds = cfg.dataset
    try:
        data = load_dataset(ds.name, resolution=ds.resolution, val_size=ds.val_size,
                            train_subset=ds.train_subset, seed=cfg.seed)
    except HwnasError as e:
        raise HwnasError(f"dataset: {e}") from None
    model = prepare_model(inp.arch, inp.weights, data.num_classes) if state is None else None
    return Prepared(cfg, out, target, inp, arch, input_ms, goal, low_ms, data, model, state)


def _start(p: Prepared, progress: Progress) -> tuple[dict, nn.Module]:
    """State of iteration 0: the input, trained first when it has no weights."""
    from hwnas.proxy.train import TrainConfig, evaluate, train

    cfg, out = p.cfg, p.out
    model = p.model
    pre = out / "pretrained.pt"
    if model is None and pre.is_file():
        model = build(p.arch, num_classes=p.data.num_classes)
        model.load_state_dict(torch.load(pre, map_location="cpu", weights_only=True))
    elif model is None:
        progress.message(f"training the input for {cfg.pretrain_epochs} epoch(s) first")
        tc = TrainConfig(epochs=cfg.pretrain_epochs, batch_size=cfg.batch_size,
                         resolution=p.data.resolution, seed=cfg.seed)
        model = train(p.arch, p.data, tc).model  # seeded, then built: reproducible
        atomic_save_state_dict(model.state_dict(), pre)
    model.eval()
    acc = evaluate(model, p.data.val_x, p.data.val_y)
    arch_s = p.arch.to_str()
    state = {
        "format_version": outputs.STATE_FORMAT_VERSION, "phase": "refine", "iteration": 0,
        "arch": arch_s, "weights": "iter_0000.pt", "latency_ms": p.input_ms, "accuracy": acc,
        "goal_ms": p.goal_ms, "smallest_ms": p.smallest_ms,
        "initial": {"arch": arch_s, "latency_ms": p.input_ms, "accuracy": acc,
                    "input": p.input.label, "pretrained": p.model is None},
    }
    atomic_save_state_dict(model.state_dict(), out / state["weights"])
    outputs.write_json(out / "state.json", state)
    return state, model


def _resume(p: Prepared, state: dict) -> nn.Module:
    arch = Arch.from_str(state["arch"])
    model = build(arch, num_classes=p.data.num_classes)
    model.load_state_dict(torch.load(p.out / state["weights"], map_location="cpu",
                                     weights_only=True))
    return model.eval()


def run_refine(cfg: RefineConfig, progress: Progress | None = None,
               prepared: Prepared | None = None) -> dict:
    """Run (or resume) a refine; returns the summary written to final.json."""
    progress = progress or Progress()
    p = prepared or prepare(cfg)
    out = p.out
    t0 = time.perf_counter()
    out.mkdir(parents=True, exist_ok=True)
    if not (out / "config.yaml").is_file():
        atomic_write_text(out / "config.yaml", cfg.to_yaml())
    state = p.state
    if state is not None and state["phase"] == "done":
        progress.message(f"{out} is finished already; final.json holds its summary")
        return outputs.read_json(out / "final.json")
    if state is None:
        state, model = _start(p, progress)
    else:
        model = _resume(p, state)
        progress.message(f"resuming {out} after iteration {state['iteration']}")
    rows = outputs.read_history(out, state["iteration"])
    arch = Arch.from_str(state["arch"])
    progress.start(state["latency_ms"], p.goal_ms, state["iteration"])
    stuck = False
    while state["latency_ms"] > p.goal_ms + EPS_MS and state["iteration"] < cfg.max_iterations:
        i = state["iteration"] + 1
        step = iterate(p.target, arch, model, state["latency_ms"], state["accuracy"], i, p.goal_ms,
                       p.input_ms, p.data, cfg, progress)
        if step is None:
            stuck = True
            break
        arch, model = step.arch, step.model
        rows += step.rows
        old = out / state["weights"]
        weights = f"iter_{i:04d}.pt"
        atomic_save_state_dict(model.state_dict(), out / weights)
        outputs.write_history(out, rows)
        state = {**state, "iteration": i, "arch": arch.to_str(), "weights": weights,
                 "latency_ms": step.latency_ms, "accuracy": step.accuracy}
        outputs.write_json(out / "state.json", state)
        if old.name != weights:
            old.unlink(missing_ok=True)
        progress.iteration_done(i, step.unit, step.latency_ms, step.accuracy)
    return _finish(p, state, model, rows, stuck, progress, time.perf_counter() - t0)


def _finish(p: Prepared, state: dict, model: nn.Module, rows: list[dict], stuck: bool,
            progress: Progress, seconds: float) -> dict:
    """Long-term fine-tune, then final weights, ONNX, plot, summary."""
    from hwnas.space.onnx_export import export_onnx
    from hwnas.space.tflite_export import export_tflite

    cfg, out = p.cfg, p.out
    arch = Arch.from_str(state["arch"])
    short_acc = state["accuracy"]
    acc = short_acc
    if cfg.long_term.epochs > 0:
        progress.message(f"long-term fine-tune: {cfg.long_term.epochs} epoch(s)")
        acc = fine_tune(model, p.data, None, cfg.long_term.epochs, cfg.long_term.lr, cfg,
                        seed=cfg.seed)
    model = model.cpu().eval()
    atomic_save_state_dict(model.state_dict(), out / "final.pt")
    atomic_write_text(out / "arch.txt", arch.to_str() + "\n")
    export_onnx(arch, out / "final.onnx", resolution=cfg.resolution,
                num_classes=p.data.num_classes, model=model)
    export_tflite(arch, out / "final.tflite", resolution=cfg.resolution,
                  num_classes=p.data.num_classes, model=model)  # what an Android app ships
    init = state["initial"]
    nc = p.data.num_classes
    summary = {
        "format_version": SUMMARY_FORMAT_VERSION, "input": init["input"], "target": cfg.target,
        "mode": cfg.mode, "selection": cfg.selection, "goal": cfg.goal, "goal_ms": p.goal_ms,
        "goal_met": state["latency_ms"] <= p.goal_ms + EPS_MS,
        "smallest_reachable_ms": p.smallest_ms, "iterations": state["iteration"],
        "stopped": "no unit can be pruned further" if stuck else None,
        "resolution": cfg.resolution, "dataset": p.data.name,
        "initial": {"arch": init["arch"], "latency_ms": init["latency_ms"],
                    "accuracy": init["accuracy"], "params": Arch.from_str(init["arch"]).params(nc)},
        "final": {"arch": arch.to_str(), "latency_ms": state["latency_ms"],
                  "accuracy_short_term": short_acc, "accuracy": acc, "params": arch.params(nc)},
        "seconds": seconds,
    }
    if p.target.can_measure:  # a fitted target (pixel) has nothing to measure on
        progress.message(f"measuring the input and the final net on {cfg.target}")
        for key, a in (("initial", Arch.from_str(init["arch"])), ("final", arch)):
            summary[key]["measured_ms"] = float(p.target.measure(a, cfg.resolution).median)
    outputs.write_history(out, rows)  # also when no iteration was needed
    outputs.plot_trajectory(out / "trajectory.png", rows, (init["latency_ms"], init["accuracy"]),
                            (state["latency_ms"], acc), p.goal_ms)
    outputs.write_json(out / "final.json", summary)
    outputs.write_json(out / "state.json", {**state, "phase": "done"})
    (out / state["weights"]).unlink(missing_ok=True)
    return summary

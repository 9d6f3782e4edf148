"""End to end: `netadapt refine` on the tiny example, resume, one-line errors."""

from __future__ import annotations

import json
import subprocess
import sys

import pandas as pd
import pytest
import torch
from netadapt_helpers import write_yaml

from hwnas.netadapt import Progress, load_config, run_refine
from hwnas.netadapt.cli import main
from hwnas.netadapt.outputs import HISTORY_COLUMNS
from hwnas.space import Arch, build


def _run_cli(tmp_path, raw: dict, *extra: str) -> int:
    return main(["refine", str(write_yaml(tmp_path / "run.yaml", raw)), "--quiet", *extra])


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    """One refine of the example (shrunk), shared by the checks below."""
    import yaml
    from netadapt_helpers import TINY_OVERRIDES, TINY_YAML

    tmp = tmp_path_factory.mktemp("refine")
    raw = {**yaml.safe_load(TINY_YAML.read_text()), **TINY_OVERRIDES, "out": str(tmp / "out")}
    assert _run_cli(tmp, raw) == 0
    return tmp / "out", raw


def test_refine_meets_the_goal(finished):
    out, _ = finished
    s = json.loads((out / "final.json").read_text())
    assert s["goal_met"] and s["final"]["latency_ms"] <= s["goal_ms"] < s["initial"]["latency_ms"]
    assert s["goal_ms"] == pytest.approx(0.8 * s["initial"]["latency_ms"])
    assert s["iterations"] >= 2 and 0 <= s["final"]["accuracy"] <= 1
    for name in ("config.yaml", "state.json", "history.parquet", "history.csv", "arch.txt",
                 "final.pt", "final.onnx", "final.tflite", "trajectory.png", "pretrained.pt"):
        assert (out / name).is_file(), name
    assert not list(out.glob("iter_*.pt")) and not list(out.glob(".*tmp"))


def _same_as_tflite(net, path, summary) -> None:
    """The pruned net with its final weights, as an app would run final.tflite."""
    import numpy as np
    from ai_edge_litert.interpreter import Interpreter

    res = summary["resolution"]
    x = torch.randn(1, 3, res, res, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        want = net(x).numpy()
    it = Interpreter(model_path=str(path))
    it.allocate_tensors()
    it.set_tensor(it.get_input_details()[0]["index"], np.ascontiguousarray(x.permute(0, 2, 3, 1).numpy()))
    it.invoke()
    got = it.get_tensor(it.get_output_details()[0]["index"])
    assert np.abs(got - want).max() <= 1e-4 * max(1.0, float(np.abs(want).max()))


def test_outputs_are_consistent(finished):
    out, _ = finished
    s = json.loads((out / "final.json").read_text())
    arch = Arch.from_str((out / "arch.txt").read_text().strip())
    assert arch.to_str() == s["final"]["arch"]
    net = build(arch, num_classes=10)
    net.load_state_dict(torch.load(out / "final.pt", weights_only=True), strict=True)
    _same_as_tflite(net.eval(), out / "final.tflite", json.loads((out / "final.json").read_text()))
    hist = pd.read_parquet(out / "history.parquet")
    assert list(hist.columns) == HISTORY_COLUMNS
    assert hist.equals(pd.read_csv(out / "history.csv").astype(hist.dtypes.to_dict()))
    chosen = hist[hist["selected"]]
    assert list(chosen["iteration"]) == list(range(1, s["iterations"] + 1))
    assert (chosen.groupby("iteration").size() == 1).all()
    assert (hist["filters_after"] < hist["filters_before"]).all()
    assert chosen["latency_ms"].iloc[-1] == pytest.approx(s["final"]["latency_ms"])
    # every iteration's choice met its latency bound, and latency only fell
    assert (chosen["latency_ms"] <= chosen["constraint_ms"] + 1e-9).all()
    assert chosen["latency_ms"].is_monotonic_decreasing
    # MobileNetV3 selection: the chosen proposal has the best dAcc/|dLat| of its iteration
    best = hist.loc[hist.groupby("iteration")["score"].idxmax()]
    assert list(best["unit"]) == list(chosen["unit"])


class _Interrupt(Progress):
    def iteration_start(self, iteration: int, proposals: int, constraint_ms: float) -> None:
        if iteration == 2:
            raise KeyboardInterrupt  # in the middle of iteration 2


def test_resume_continues_from_the_last_finished_iteration(finished, tmp_path):
    out_a, raw = finished
    raw = {**raw, "out": str(tmp_path / "out")}
    cfg = load_config(write_yaml(tmp_path / "run.yaml", raw))
    with pytest.raises(KeyboardInterrupt):
        run_refine(cfg, _Interrupt())
    state = json.loads((tmp_path / "out" / "state.json").read_text())
    assert state["iteration"] == 1 and state["phase"] == "refine"
    assert (tmp_path / "out" / state["weights"]).is_file()
    first = pd.read_parquet(tmp_path / "out" / "history.parquet")
    assert set(first["iteration"]) == {1}

    assert _run_cli(tmp_path, raw) == 0  # resume: true
    hist_b = pd.read_parquet(tmp_path / "out" / "history.parquet")
    hist_a = pd.read_parquet(out_a / "history.parquet")
    # the resumed refine keeps iteration 1 and continues exactly as an uninterrupted one
    assert hist_b[hist_b["iteration"] == 1].drop(columns="seconds").equals(
        first.drop(columns="seconds"))
    cols = ["iteration", "unit", "filters_before", "filters_after", "latency_ms", "selected"]
    assert hist_b[cols].equals(hist_a[cols])
    a = json.loads((out_a / "final.json").read_text())
    b = json.loads((tmp_path / "out" / "final.json").read_text())
    assert b["final"]["arch"] == a["final"]["arch"] and b["iterations"] == a["iterations"]

    # a finished refine is not redone; another goal in the same folder is refused
    assert _run_cli(tmp_path, raw) == 0
    assert _run_cli(tmp_path, {**raw, "goal": "0.7x"}) == 2
    assert _run_cli(tmp_path, {**raw, "resume": False}) == 2


def _one_line_error(capsys, tmp_path, raw: dict, *needles: str) -> None:
    out = tmp_path / "fresh"
    raw = {**raw, "out": str(out)}
    assert _run_cli(tmp_path, raw) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("netadapt refine: error: ") and "\n" not in err, err
    for n in needles:
        assert n in err, err
    assert not out.exists()  # nothing half-written


def test_goal_below_the_smallest_reachable(capsys, tmp_path, tiny_raw):
    _one_line_error(capsys, tmp_path, {**tiny_raw, "goal": "0.05x"},
                    "below what pruning can reach", "smallest reachable is")
    _one_line_error(capsys, tmp_path, {**tiny_raw, "goal": "0.1ms"}, "smallest reachable is")


def test_missing_weights(capsys, tmp_path, tiny_raw):
    raw = {**tiny_raw, "input": {**tiny_raw["input"], "weights": str(tmp_path / "nope.pt")}}
    _one_line_error(capsys, tmp_path, raw, "input.weights", "nope.pt", "missing")
    _one_line_error(capsys, tmp_path, {**tiny_raw, "input": {"run": str(tmp_path)}},
                    "input.run", "no best.json")


def test_weights_that_do_not_fit(capsys, tmp_path, tiny_raw):
    p = tmp_path / "other.pt"
    torch.save(build(Arch.from_str("stem_k3_s2_c8_nre:ds_r1_k3_s1_c8_nre:head_v2_c16_nre"),
                     num_classes=10).state_dict(), p)
    raw = {**tiny_raw, "input": {**tiny_raw["input"], "weights": str(p)}}
    _one_line_error(capsys, tmp_path, raw, "do not fit the input network")


def test_unknown_target_and_bad_inputs(capsys, tmp_path, tiny_raw):
    _one_line_error(capsys, tmp_path, {**tiny_raw, "target": "toaster"}, "toaster")
    _one_line_error(capsys, tmp_path, {**tiny_raw, "input": {"arch": "stem_k3:zz"}}, "input.arch")
    _one_line_error(capsys, tmp_path, {**tiny_raw, "input": {"reference": "resnet50"}},
                    "input.reference", "resnet50", "known are")
    _one_line_error(capsys, tmp_path, {**tiny_raw, "mode": "x"}, "mode:", "'filters' or 'mobilenetv3'")


def test_cli_bad_yaml_exit_code(tmp_path):
    p = tmp_path / "run.yaml"
    p.write_text("target: pixel\ngoal: [0.75x\n")
    r = subprocess.run([sys.executable, "-m", "hwnas.netadapt.cli", "refine", str(p)],
                       capture_output=True, text=True, check=False)
    assert r.returncode == 2
    assert r.stderr.count("\n") == 1 and "not valid YAML" in r.stderr and "line" in r.stderr
    assert "Traceback" not in r.stderr


def test_goal_already_met_needs_no_iteration(tmp_path, tiny_raw):
    raw = {**tiny_raw, "goal": "1000ms", "long_term": {"epochs": 0}}
    assert _run_cli(tmp_path, raw) == 0
    out = tmp_path / "out"
    s = json.loads((out / "final.json").read_text())
    assert s["iterations"] == 0 and s["goal_met"] and s["final"]["arch"] == s["initial"]["arch"]
    assert s["final"]["accuracy"] == s["initial"]["accuracy"]  # no long-term fine-tune
    assert pd.read_parquet(out / "history.parquet").empty
    assert (out / "trajectory.png").is_file() and (out / "final.onnx").is_file()

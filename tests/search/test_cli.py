"""``nas-search`` input handling: latency units, flags, config, one-line errors
(exit 2, nothing written). No training happens here."""

from __future__ import annotations

from pathlib import Path

import pytest
from searchkit import TINY_FLAGS, nas_search

from hwnas.common.units import parse_latency
from hwnas.search.cli import RESUMABLE, build_parser, config_from_args, main, parse_duration
from hwnas.search.config import (
    BACKENDS,
    DEFAULT_TRIALS,
    RESUMABLE_FIELDS,
    SearchConfig,
    parse_config,
)
from hwnas.search.estimators import ESTIMATOR_NAMES, ESTIMATOR_REGISTRY
from hwnas.search.rewards import REWARD_NAMES, REWARD_REGISTRY
from hwnas.search.samplers import SAMPLER_NAMES, SAMPLER_REGISTRY


# ----------------------------------------------------------------- units ---
@pytest.mark.parametrize(("text", "ms"), [
    ("50ms", 50.0), ("0.05s", 50.0), ("50000us", 50.0), ("50 ms", 50.0), ("1.5s", 1500.0),
    ("250us", 0.25), ("2e1ms", 20.0), ("50µs", 0.05),
])
def test_latency_units(text: str, ms: float) -> None:
    assert parse_latency(text) == pytest.approx(ms)


@pytest.mark.parametrize("text", ["50", "0.05", 50, 50.0])
def test_bare_number_latency_asks_for_a_unit(text: object) -> None:
    with pytest.raises(ValueError, match="has no unit: write e.g. .*ms, .*s or .*us"):
        parse_latency(text)


@pytest.mark.parametrize("text", ["50 minutes", "fast", "ms", "-5ms", ""])
def test_bad_latency(text: str) -> None:
    with pytest.raises(ValueError, match="latency"):
        parse_latency(text)


def test_zero_latency() -> None:
    with pytest.raises(ValueError, match="must be positive"):
        parse_latency("0ms")


@pytest.mark.parametrize(("text", "s"), [("600", 600.0), ("600s", 600.0), ("10m", 600.0),
                                         ("1.5h", 5400.0), ("none", None)])
def test_durations(text: str, s: float | None) -> None:
    assert parse_duration(text) == s


# ----------------------------------------------------------- flags/config ---
def _config(*argv: str) -> SearchConfig:
    return config_from_args(build_parser().parse_args(list(argv)))


def test_defaults_from_target_and_latency_only() -> None:
    c = _config("--target", "pixel", "--lat", "50ms")
    assert (c.target, c.latency_ms, c.space, c.data) == ("pixel", 50.0, "mobilenetv3", "fashion-mnist")
    assert (c.trials, c.sampler, c.reward, c.backend, c.workers) == (DEFAULT_TRIALS, "tpe", "soft",
                                                                      "local", 1)


def test_every_flag_reaches_the_config(tmp_path: Path) -> None:
    c = _config("--target", "pixel", "--lat", "0.03s", "--space", "mnasnet", "--data", "fashion-mnist",
                "--trials", "7", "--timeout", "5m", "--sampler", "rl", "--reward", "hard", "--w", "-0.5",
                "--epochs", "3", "--proxy-resolution", "16", "--resolution", "192",
                "--train-subset", "512", "--val-size", "300", "--lr", "0.05", "--pruner", "none",
                "--prefilter", "synflow", "--prefilter-keep", "0.3", "--workers", "2",
                "--backend", "ray", "--max-failures", "1", "--storage", "sqlite:///x.db",
                "--out", str(tmp_path / "r"), "--seed", "4", "--estimator", "supernet",
                "--supernet", "sn-1", "--supernet-epochs", "3", "--retrain-epochs", "5",
                "--supernet-finetune", "40", "--device", "cpu", "--gpus-per-trial", "0.5", "--cpus-per-trial", "2",
                "--timeout-kill")
    assert (c.latency_ms, c.space, c.trials, c.timeout_s, c.sampler, c.reward, c.w) == (
        30.0, "mnasnet", 7, 300.0, "rl", "hard", -0.5)
    assert (c.epochs, c.proxy_resolution, c.resolution, c.train_subset, c.val_size, c.lr) == (
        3, 16, 192, 512, 300, 0.05)
    assert (c.pruner, c.prefilter, c.prefilter_keep, c.workers, c.backend, c.max_failures) == (
        "none", "synflow", 0.3, 2, "ray", 1)
    assert (c.storage, c.out, c.seed) == ("sqlite:///x.db", str(tmp_path / "r"), 4)
    assert (c.estimator, c.supernet, c.supernet_epochs, c.retrain_epochs, c.supernet_finetune) == (
        "supernet", "sn-1", 3, 5, 40)
    assert (c.device, c.gpus_per_trial, c.cpus_per_trial, c.timeout_kill) == ("cpu", 0.5, 2, True)


def test_device_reaches_the_trainer(tmp_path: Path) -> None:
    from hwnas.search.objective import Components

    comp = Components.build(parse_config({"target": "pixel", "latency": "50ms", "device": "cpu",
                                          "train_subset": 256, "val_size": 64}), tmp_path)
    assert comp.train_config.device == "cpu"


def test_ray_address_implies_ray_and_pareto_defaults_to_nsga2() -> None:
    assert _config("--target", "pixel", "--lat", "50ms", "--ray-address", "auto").backend == "ray"
    assert _config("--target", "pixel", "--lat", "50ms").device == "auto"
    assert _config("--target", "pixel", "--lat", "50ms", "--reward", "pareto").sampler == "nsga2"


def test_config_round_trips_through_yaml(tmp_path: Path) -> None:
    c = _config("--target", "pixel", "--lat", "50ms", "--reward", "abs", "--w", "-0.2")
    (tmp_path / "config.yaml").write_text(c.to_yaml())
    assert SearchConfig.from_yaml(tmp_path / "config.yaml") == c


def test_config_rejects_a_newer_format(tmp_path: Path) -> None:
    (tmp_path / "config.yaml").write_text("format_version: 99\ntarget: pixel\nlatency: 50ms\n")
    with pytest.raises(ValueError, match="format_version 99 is newer"):
        SearchConfig.from_yaml(tmp_path / "config.yaml")


@pytest.mark.parametrize(("raw", "match"), [
    ({"trials": 0}, "trials: Input should be greater than or equal to 1"),
    ({"reward": "pareto", "sampler": "rl"}, "sampler 'rl' optimises one objective"),
    ({"latency": "50"}, "has no unit"),
    ({"prefilter_keep": 0.0}, "prefilter_keep"),
    ({"colour": "red"}, r"colour: unknown field \(accepted: format_version, target"),
])
def test_config_errors_are_one_line(raw: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match) as e:
        parse_config({"target": "pixel", "latency": "50ms", **raw})
    assert "\n" not in str(e.value)


# ------------------------------------------------- errors: exit 2, no files ---
def _usage_error(argv: list[str], capsys: pytest.CaptureFixture[str], cwd: Path) -> str:
    code = main(argv)
    out, err = capsys.readouterr()
    lines = err.splitlines()
    assert code == 2, err
    assert len(lines) == 1 and lines[0].startswith("nas-search: error: "), err
    assert list(cwd.iterdir()) == [], "nothing may be written on bad input"
    return lines[0]


def _exits(argv: list[str], capsys: pytest.CaptureFixture[str], cwd: Path) -> str:
    code = main(argv)
    _out, err = capsys.readouterr()
    assert code == 2
    assert len(err.splitlines()) == 1 and err.startswith("nas-search: error: "), err
    assert list(cwd.iterdir()) == []
    return err


@pytest.fixture
def in_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)
    return tmp_path


@pytest.mark.parametrize(("argv", "match"), [
    (["--target", "pixel", "--lat", "50ms", "--sampler", "cmaes"], "invalid choice: 'cmaes'"),
    (["--target", "pixel", "--lat", "50ms", "--trials", "many"], "invalid int value: 'many'"),
    (["--target", "pixel", "--lat", "50ms", "--colour", "red"], "unrecognized arguments: --colour"),
    (["--target", "pixel", "--lat", "50ms", "--estimator", "oracle"], "invalid choice: 'oracle'"),
])
def test_bad_flags(argv: list[str], match: str, capsys, in_tmp: Path) -> None:
    assert match in _exits(argv, capsys, in_tmp)


@pytest.mark.parametrize(("argv", "match"), [
    ([], "--target and --lat are required"),
    (["--target", "pixel", "--lat", "50"], "latency '50' has no unit: write e.g. 50ms, 50s or 50us"),
    (["--target", "pixel", "--lat", "fast"], "bad latency 'fast'"),
    (["--target", "pixel6000", "--lat", "50ms"], "pixel6000"),
    (["--target", "pixel", "--lat", "1ms"], "below the fastest net of space 'mobilenetv3' on "
                                             "target 'pixel'"),
    (["--target", "pixel", "--lat", "50ms", "--space", "resnet"], "unknown search space 'resnet'"),
    (["--target", "pixel", "--lat", "50ms", "--reward", "abs", "--w", "0.1"], "w=0.1 for reward abs"),
    (["--target", "pixel", "--lat", "50ms", "--reward", "pareto", "--sampler", "rl"],
     "sampler 'rl' optimises one objective"),
    (["--target", "pixel", "--lat", "50ms", "--timeout", "soon"], "bad --timeout 'soon'"),
    (["--target", "pixel", "--lat", "50ms", "--data", "/nonexistent/images"], "/nonexistent/images"),
    (["--target", "pixel", "--lat", "50ms", "--storage", "postgresql://nobody@127.0.0.1:9/x"],
     "cannot open storage"),
    (["--resume"], "--resume needs --out"),
    (["--target", "pixel", "--lat", "50ms", "--estimator", "supernet", "--supernet", "no-such-id"],
     "no supernet 'no-such-id'"),
    (["--target", "pixel", "--lat", "50ms", "--supernet", "some-id"],
     "supernet 'some-id' given with estimator 'train'"),
    (["--resume", "--out", "nowhere"], "cannot resume nowhere: no config.yaml there"),
    (["--target", "pixel", "--lat", "50ms", "--seed", "-1"], "argument --seed: '-1' is not a seed"),
    (["--target", "pixel", "--lat", "50ms", "--device", "tpu"], "device: expected one of auto"),
    (["--target", "pixel", "--lat", "50ms", "--ray-address", "127.0.0.1:6379"],
     "--ray-address '127.0.0.1:6379' needs a --storage every node can reach"),
])
def test_bad_input_is_one_line_exit_2_nothing_written(argv: list[str], match: str, capsys,
                                                      in_tmp: Path, tmp_path_factory,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    home = tmp_path_factory.mktemp("home")
    monkeypatch.setenv("HWNAS_HOME", str(home))
    line = _usage_error([*argv, "--quiet"], capsys, in_tmp)
    assert match in line
    assert list(home.iterdir()) == []


def test_budget_error_names_the_fastest_net(capsys, in_tmp: Path) -> None:
    from hwnas.latency import SpaceLatency, load_target
    from hwnas.space.searchspace import get_space

    fastest = SpaceLatency(load_target("pixel"), get_space("mobilenetv3")).fastest()
    line = _usage_error(["--target", "pixel", "--lat", f"{fastest.ms * 0.99:.3f}ms", "--quiet"],
                        capsys, in_tmp)
    assert f"{fastest.ms:.2f} ms" in line and fastest.arch.to_str() in line
    # Just above it the budget is accepted (checked without training: an existing run folder).
    (in_tmp / "run").mkdir()
    (in_tmp / "run" / "config.yaml").write_text("x: 1\n")
    code = main(["--target", "pixel", "--lat", f"{fastest.ms * 1.01:.3f}ms", "--out", "run",
                 "--quiet"])
    assert code == 2 and "already holds a run" in capsys.readouterr().err


def test_resume_refuses_to_change_the_search(tmp_path: Path, capsys) -> None:
    run = tmp_path / "run"
    run.mkdir()
    c = parse_config({"target": "pixel", "latency": "50ms", "out": str(run)})
    (run / "config.yaml").write_text(c.to_yaml())
    code = main(["--resume", "--out", str(run), "--reward", "hard", "--trials", "3", "--quiet"])
    err = capsys.readouterr().err
    assert code == 2 and "--reward cannot change when resuming" in err and len(err.splitlines()) == 1


def _stored_run(tmp_path: Path, **kw: object) -> Path:
    run = tmp_path / "run"
    run.mkdir()
    c = parse_config({"target": "pixel", "latency": "50ms", "out": str(run), **kw})
    (run / "config.yaml").write_text(c.to_yaml())
    return run


def test_resume_accepts_the_original_command(tmp_path: Path) -> None:
    """The first command plus --resume: equal values (however typed) are accepted."""
    run = _stored_run(tmp_path, train_subset=500, seed=3, epochs=1)
    args = build_parser().parse_args(["--target", "pixel", "--lat", "0.05s", "--train-subset",
                                      "500", "--seed", "3", "--epochs", "1", "--sampler", "tpe",
                                      "--out", str(run), "--resume", "--trials", "40"])
    c = config_from_args(args)
    assert (c.latency, c.seed, c.trials) == ("50ms", 3, 40)  # the stored budget string is kept


@pytest.mark.parametrize(("argv", "names"), [
    (["--lat", "40ms"], ("--lat", "50ms", "40ms")),
    (["--seed", "4"], ("--seed", "3", "4")),
    (["--target", "host"], ("--target", "pixel", "host")),
])
def test_resume_refuses_a_real_change_naming_both_values(tmp_path: Path, capsys, argv,
                                                         names) -> None:
    run = _stored_run(tmp_path, seed=3)
    before = sorted(run.iterdir())
    code = main(["--target", "pixel", "--lat", "50ms", "--seed", "3", *argv, "--out", str(run),
                 "--resume", "--quiet"])
    err = capsys.readouterr().err
    assert code == 2 and len(err.splitlines()) == 1, err
    assert f"{names[0]} cannot change when resuming" in err
    assert f"stored '{names[1]}'" in err or f"stored {names[1]}" in err
    assert f"given '{names[2]}'" in err or f"given {names[2]}" in err
    assert sorted(run.iterdir()) == before


@pytest.mark.parametrize("damage", ["not yaml: [", "target: 3\nlatency: 50ms\nmystery: 1\n",
                                    "- a list\n"])
def test_damaged_config_yaml_on_resume_says_start_a_new_out(tmp_path: Path, capsys,
                                                            damage: str) -> None:
    run = _stored_run(tmp_path)
    (run / "config.yaml").write_text(damage.replace("\\n", "\n"))
    code = main(["--out", str(run), "--resume", "--quiet"])
    err = capsys.readouterr().err
    assert code == 2 and len(err.splitlines()) == 1, err
    assert "config.yaml" in err and "new --out" in err and "Traceback" not in err


def test_out_naming_a_file_is_one_line(tmp_path: Path, capsys, in_tmp: Path) -> None:
    (in_tmp / "taken").write_text("mine")
    code = main(["--target", "pixel", "--lat", "50ms", "--out", "taken", "--quiet"])
    err = capsys.readouterr().err
    assert code == 2 and "--out 'taken' is a file" in err and len(err.splitlines()) == 1
    assert (in_tmp / "taken").read_text() == "mine"


def test_read_only_run_folder_is_one_line(tmp_path: Path, capsys, monkeypatch) -> None:
    """(As root chmod cannot make a folder read-only, so the access check is faked;
    tests/test_hostile_inputs.py covers the real chmod for non-root users.)"""
    import hwnas.search.run as run_mod

    run = _stored_run(tmp_path)
    monkeypatch.setattr(run_mod.os, "access", lambda p, mode: Path(p) != run)
    code = main(["--out", str(run), "--resume", "--quiet"])
    err = capsys.readouterr().err
    assert code == 2 and "is read-only" in err and len(err.splitlines()) == 1, err
    assert sorted(p.name for p in run.iterdir()) == ["config.yaml"]


def test_subprocess_exit_code_and_single_line(tmp_path: Path) -> None:
    p = nas_search(*TINY_FLAGS[:2], "--lat", "50", cwd=tmp_path)
    assert p.returncode == 2 and p.stdout == ""
    assert p.stderr.splitlines() == ["nas-search: error: latency '50' has no unit: write e.g. "
                                     "50ms, 50s or 50us"]
    p = nas_search("--target", "pixel", "--lat", "50ms", "--reward", "best", cwd=tmp_path)
    assert p.returncode == 2 and len(p.stderr.splitlines()) == 1 and "invalid choice" in p.stderr
    assert list(tmp_path.iterdir()) == []


def _choices(flag: str) -> tuple[str, ...]:
    return tuple(next(a for a in build_parser()._actions if flag in a.option_strings).choices)


def test_choice_flags_come_from_their_registries() -> None:
    assert _choices("--reward") == REWARD_NAMES == tuple(REWARD_REGISTRY)
    assert _choices("--sampler") == SAMPLER_NAMES == tuple(SAMPLER_REGISTRY)
    assert _choices("--backend") == BACKENDS
    assert _choices("--estimator") == ESTIMATOR_NAMES == tuple(ESTIMATOR_REGISTRY)


def test_every_resumable_flag_sets_a_resumable_field() -> None:
    flags = {a.dest for a in build_parser()._actions}
    assert set(RESUMABLE) <= flags and len(RESUMABLE) == len(RESUMABLE_FIELDS)
    assert set(RESUMABLE_FIELDS) <= set(SearchConfig.model_fields)
    args = build_parser().parse_args(["--target", "pixel", "--lat", "50ms", "--trials", "3",
                                      "--timeout", "1m", "--workers", "2", "--max-failures", "1"])
    c = config_from_args(args)
    assert (c.trials, c.timeout_s, c.workers, c.max_failures) == (3, 60.0, 2, 1)


def test_bad_budget_with_the_progress_bar_prints_only_the_error(capsys, in_tmp: Path) -> None:
    code = main(["--target", "pixel", "--lat", "1ms"])  # no --quiet: the bar would start
    out, err = capsys.readouterr()
    assert code == 2 and out == "" and len(err.splitlines()) == 1
    assert list(in_tmp.iterdir()) == []


def test_budget_check_on_an_unbuilt_host_table_measures_only_the_cheapest_net(
        capsys, in_tmp: Path, tmp_path_factory: pytest.TempPathFactory,
        monkeypatch: pytest.MonkeyPatch) -> None:
    from hwnas.latency import load_target
    from hwnas.space.searchspace import get_space

    monkeypatch.setenv("HWNAS_HOME", str(tmp_path_factory.mktemp("home")))
    line = _usage_error(["--target", "host", "--lat", "0.01ms", "--quiet"], capsys, in_tmp)
    assert get_space("mobilenetv3").smallest().to_str() in line
    # only that net's layers were measured, not the whole space (thousands of keys)
    assert 0 < len(load_target("host").table) <= get_space("mobilenetv3").smallest().depth + 2

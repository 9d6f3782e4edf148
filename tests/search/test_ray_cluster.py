"""A search on a real 2-node Ray cluster on this machine, PostgreSQL storage.

The head and the worker are separate ``ray start`` processes on 127.0.0.1,
each with its own temp dir and ports (tests/servers.py). The head has no CPU,
so every trial runs on the worker, which sees the driver's run folder
read-only (a private mount namespace): the weights that reach ``best.pt`` can
only have travelled back through Ray. Mid-trial the worker node is killed
(SIGKILL of its whole process tree) and a new one joins: Ray Tune retries the
trial (``--max-failures``). Then a known-bad candidate is queued and the run
resumed: the median pruner stops it at its first epoch.

On a developer machine without PostgreSQL, Ray or mount namespaces this test
skips with the reason; with ``CI=true`` it fails instead.
"""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

import optuna
import psycopg
from searchkit import nas_search, nas_search_cmd, one_thread_env
from servers import postgres_server, ray_cluster, read_only_prefix

from hwnas.latency import load_target
from hwnas.search import load_run
from hwnas.space.searchspace import get_space

# The worker is killed once a trial has reported its first epoch (of 2) and is
# still RUNNING; the poll is cheap SQL, far shorter than the second epoch.
KILL_POLL_S = 0.05
RUN_TIMEOUT_S = 600
# The known-bad candidate: the space's slowest net (every decision at its
# largest choice), priced at BAD_OVER_BUDGET x the budget. Under the hard
# reward with exponent BAD_W its reward is at most 1.2 ** -30 = 0.004 whatever
# it learns, below any real accuracy of the random nets under budget, so the
# median pruner (3 finished trials first) stops it at epoch 0. 1.2 < the
# default skip factor 1.25 (config.DEFAULT_SKIP_FACTOR): it is trained, not skipped.
BAD_OVER_BUDGET = 1.2
BAD_W = "-30"


def _trial_to_kill(pg_url: str) -> int | None:
    """A RUNNING trial that has reported an epoch (it is training on the worker)."""
    with psycopg.connect(pg_url, connect_timeout=5) as con:
        try:
            row = con.execute("SELECT t.number FROM trials t JOIN trial_intermediate_values v "
                              "ON v.trial_id = t.trial_id WHERE t.state = 'RUNNING' "
                              "ORDER BY t.number LIMIT 1").fetchone()
        except psycopg.errors.UndefinedTable:  # the driver has not created the study yet
            return None
    return None if row is None else int(row[0])


def _still_running(pg_url: str, number: int) -> bool:
    with psycopg.connect(pg_url, connect_timeout=5) as con:
        row = con.execute("SELECT state FROM trials WHERE number = %s", (number,)).fetchone()
    return row is not None and row[0] == "RUNNING"


def test_two_node_cluster_search_with_postgresql(tmp_path: Path) -> None:
    driver = tmp_path / "driver"  # the driver's files; read-only for the worker node
    driver.mkdir()
    run_dir = driver / "run"
    space, target = get_space("mobilenetv3"), load_target("pixel")
    bad_params = {d.name: d.choices[-1] for d in space.decisions}
    bad = space.decode(bad_params)
    budget_ms = target.predict(bad) / BAD_OVER_BUDGET
    with postgres_server() as url, ray_cluster(tmp_path) as cluster:
        pg = url.replace("postgresql+psycopg://", "postgresql://")
        prefix = read_only_prefix(driver)
        cluster.start_head(cpus=0)
        worker = cluster.add_worker(cpus=1, prefix=prefix)
        cluster.wait_for_cpus(1)
        env = one_thread_env(**{k: cluster.env[k] for k in ("RAY_AUTH_MODE", "RAY_AUTH_TOKEN_PATH",
                                                             "RAY_USAGE_STATS_ENABLED")})
        command = ["--target", "pixel", "--lat", f"{budget_ms:.3f}ms", "--reward", "hard",
                   "--w", BAD_W, "--train-subset", "512", "--val-size", "256",
                   "--proxy-resolution", "16", "--epochs", "2", "--seed", "0",
                   "--sampler", "random", "--workers", "1", "--max-failures", "2",
                   "--ray-address", cluster.address, "--storage", pg, "--out", str(run_dir),
                   "--quiet"]

        # 1. three trials; the worker node is killed mid-trial and a new one joins
        proc = subprocess.Popen(nas_search_cmd(*command, "--trials", "3"), cwd=driver, env=env,
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        killed: int | None = None
        deadline = time.monotonic() + RUN_TIMEOUT_S
        try:
            while proc.poll() is None and time.monotonic() < deadline:
                cluster.check_nodes()  # a replacement node that failed to start: fail now
                number = _trial_to_kill(pg) if killed is None else None
                if number is not None:
                    cluster.kill(worker)
                    if _still_running(pg, number):
                        killed = number  # killed mid-trial (else: try the next trial)
                    worker = cluster.add_worker(cpus=1, prefix=prefix)
                time.sleep(KILL_POLL_S)
            _, err = proc.communicate(timeout=max(1.0, deadline - time.monotonic()))
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        assert proc.returncode == 0, err[-3000:] + cluster.log_tail()
        assert killed is not None, "the worker node was never killed mid-trial"
        assert list((run_dir / "ray").rglob("error.txt")), "Ray Tune recorded no failed trial"
        study = optuna.load_study(study_name="run", storage=url)
        assert [t.state.name for t in study.trials] == ["COMPLETE"] * 3
        assert all(t.user_attrs["latency_ms"] <= budget_ms for t in study.trials), \
            "premise: the random nets are under the budget (the reward is their accuracy)"

        # 2. the same command plus --resume, with the known-bad candidate queued
        study.enqueue_trial(bad_params)
        p = nas_search(*command, "--trials", "4", "--resume", cwd=driver, timeout=RUN_TIMEOUT_S,
                       **{k: env[k] for k in ("RAY_AUTH_MODE", "RAY_AUTH_TOKEN_PATH")})
        assert p.returncode == 0, p.stderr[-3000:] + cluster.log_tail()

        run = load_run(run_dir)
        states = list(run.trials["state"])
        assert states == ["COMPLETE"] * 3 + ["PRUNED"], states
        pruned = run.trials.iloc[3]
        assert pruned["arch"] == bad.to_str()
        # the weights came back to the driver through Ray (the worker could not write
        # here); the run folder is complete
        assert run.best is not None and run.best["number"] in (0, 1, 2)
        assert (run_dir / "weights" / f"{run.best['number']}.pt").is_file()
        assert (run_dir / "best.pt").is_file() and (run_dir / "best.onnx").is_file()
        assert killed in (0, 1, 2)


"""Throwaway servers for tests: a PostgreSQL cluster and a multi-node Ray
cluster on 127.0.0.1.

Tests that need a server skip on a developer machine that lacks it, with the
reason printed, but fail when ``CI=true`` (CI must run them for real).
"""

from __future__ import annotations

import glob
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager, suppress
from pathlib import Path

import pytest

START_TIMEOUT_S = 60


def skip_or_fail(reason: str) -> None:
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"{reason} (CI=true: this test must run, not skip)")
    pytest.skip(reason)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def free_ports(n: int, avoid: set[int] | frozenset[int] = frozenset()) -> list[int]:
    """``n`` distinct free ports, none in ``avoid``. All are bound at once while
    they are chosen: one free_port() after another can get the same port twice
    (once a Ray node's runtime-env agent and dashboard agent were both given
    58993; the node never started and the search waited for it until its timeout)."""
    with ExitStack() as stack:
        ports: list[int] = []
        while len(ports) < n:
            s = stack.enter_context(socket.socket())
            s.bind(("127.0.0.1", 0))
            if s.getsockname()[1] not in avoid:
                ports.append(s.getsockname()[1])
        return ports


@contextmanager
def postgres_server() -> Iterator[str]:
    """Start a PostgreSQL cluster in a temp dir; yield its SQLAlchemy URL."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    if not found:
        skip_or_fail("PostgreSQL server not installed (run tests/setup/install_postgres.sh)")
    bindir = Path(found[-1]).parent
    root = os.geteuid() == 0
    prefix: list[str] = []
    if root:
        runuser = shutil.which("runuser")
        if runuser is None:
            skip_or_fail("running as root without runuser: cannot start PostgreSQL as 'postgres'")
        prefix = [runuser, "-u", "postgres", "--"]
    base = Path(tempfile.mkdtemp(prefix="hwnas-pg-"))
    data = base / "data"
    if root:
        shutil.chown(base, user="postgres")
    port = free_port()
    # A throwaway server: nothing is flushed to disk (no fsync at initdb or per commit;
    # the tests' studies commit after every Optuna call).
    no_sync = "-c fsync=off -c synchronous_commit=off -c full_page_writes=off"
    try:
        subprocess.run([*prefix, str(bindir / "initdb"), "-D", str(data), "-A", "trust", "-U", "postgres",
                        "--no-sync"],
                       check=True, capture_output=True, timeout=START_TIMEOUT_S)
        subprocess.run([*prefix, str(bindir / "pg_ctl"), "-D", str(data), "-w", "-t", str(START_TIMEOUT_S),
                        "-l", str(base / "log"), "-o", f"-p {port} -h 127.0.0.1 -k {base} {no_sync}",
                        "start"],
                       check=True, capture_output=True, timeout=START_TIMEOUT_S + 10)
        yield f"postgresql+psycopg://postgres@127.0.0.1:{port}/postgres"
    finally:
        subprocess.run([*prefix, str(bindir / "pg_ctl"), "-D", str(data), "-m", "immediate", "stop"],
                       capture_output=True, timeout=START_TIMEOUT_S)
        shutil.rmtree(base, ignore_errors=True)


# ------------------------------------------------------------- Ray cluster ---
# Startup on a loaded 2-core machine: a node is up in ~10 s idle, far longer under load.
RAY_START_TIMEOUT_S = 180
RAY_STOP_TIMEOUT_S = 40  # `ray start --block` drains for up to 30 s on SIGTERM
RAY_STATUS_POLL_S = 2.0
RAY_LOG_POLL_S = 0.2
RAY_LOG_WAIT_S = 30
RAY_STARTED = "Ray runtime started."  # what `ray start` logs once its node is up
RAY_HEALTH_CHECK_PERIOD_MS = 1000  # Ray's default is 3000 (ray_config_def.h health_check_period_ms)


def _children() -> dict[int, list[int]]:
    """Parent pid -> child pids, from /proc (Linux)."""
    tree: dict[int, list[int]] = {}
    for stat in glob.glob("/proc/[0-9]*/stat"):
        try:
            text = Path(stat).read_text()
        except OSError:  # exited meanwhile
            continue
        # pid (comm) state ppid ...: comm may hold spaces and parentheses
        ppid = int(text[text.rindex(")") + 2:].split()[1])
        tree.setdefault(ppid, []).append(int(text.split(" ", 1)[0]))
    return tree


def process_tree(pid: int) -> list[int]:
    """``pid`` and every process descended from it (Ray's workers call setsid,
    so a process group would miss them; parentage does not)."""
    tree, found, todo = _children(), [], [pid]
    while todo:
        p = todo.pop()
        found.append(p)
        todo.extend(tree.get(p, []))
    return found


def _kill(pids: list[int]) -> None:
    for p in pids:
        with suppress(ProcessLookupError):
            os.kill(p, signal.SIGKILL)


def read_only_prefix(folder: Path) -> list[str]:
    """A command prefix that runs a command in a private mount namespace in
    which ``folder`` is read-only (checked: a write there must fail), so a
    process on this machine sees the driver's files as a remote node would not
    be able to write them. Skips (fails under CI) where namespaces are denied."""
    unshare = shutil.which("unshare")
    if unshare is None:
        skip_or_fail("util-linux 'unshare' not found: cannot give a Ray node a read-only view")
    script = ('mount --bind -o ro "$1" "$1" || exit 90; '
              'if touch "$1/.hwnas-write-probe" 2>/dev/null; then exit 91; fi; shift; exec "$@"')
    prefix = [unshare, "--mount", "--propagation", "private",
              *([] if os.geteuid() == 0 else ["--map-root-user"]),
              "--", "sh", "-c", script, "sh", str(folder)]
    probe = subprocess.run([*prefix, "true"], capture_output=True, text=True, timeout=30)
    if probe.returncode != 0:
        skip_or_fail(f"cannot make {folder} read-only in a mount namespace (exit "
                     f"{probe.returncode}: {probe.stderr.strip()[:200]})")
    return prefix


class RayCluster:
    """A Ray cluster of separate ``ray start --block`` processes on this
    machine: a head, then worker nodes, each with its own temp dir and its own
    ports, on token authentication with a token of its own. Only the processes
    started here are ever signalled (by pid, with their descendants).

    ``env`` is what a driver needs to join it (``address``)."""

    def __init__(self, root: Path) -> None:
        self.root = root
        token = root / "token"
        token.write_text(os.urandom(16).hex())
        # Token auth set explicitly: without it, `ray start --head` turns token auth on
        # whenever ~/.ray/auth_token exists and worker nodes are then refused.
        self.env = dict(os.environ, RAY_AUTH_MODE="token", RAY_AUTH_TOKEN_PATH=str(token),
                        RAY_USAGE_STATS_ENABLED="0", PYTHONUNBUFFERED="1",  # logs as written
                        # The GCS checks each node every second instead of every 3 s: a killed
                        # node (connection refused at once) is declared dead after 5 checks,
                        # ~5 s instead of ~15; a slow but live one still gets 5 timeouts.
                        RAY_health_check_period_ms=str(RAY_HEALTH_CHECK_PERIOD_MS))
        self._given: set[int] = set()  # every port handed to a node of this cluster
        self.port = self._free_ports(1)[0]
        self.address = f"127.0.0.1:{self.port}"
        self.nodes: list[subprocess.Popen] = []
        self._ray = str(Path(sys.executable).with_name("ray"))

    def _free_ports(self, n: int) -> list[int]:
        ports = free_ports(n, avoid=self._given)
        self._given.update(ports)
        return ports

    def _ports(self) -> list[str]:
        node, objects, agent, agent_grpc, runtime_env, metrics = self._free_ports(6)
        return ["--node-ip-address", "127.0.0.1", "--disable-usage-stats",
                "--node-manager-port", str(node), "--object-manager-port", str(objects),
                "--dashboard-agent-listen-port", str(agent),
                "--dashboard-agent-grpc-port", str(agent_grpc),
                "--runtime-env-agent-port", str(runtime_env),
                "--metrics-export-port", str(metrics),
                "--min-worker-port", "0", "--max-worker-port", "0"]  # 0: ports the OS picks

    def _start(self, name: str, args: list[str], prefix: list[str] | None = None) -> subprocess.Popen:
        # Short temp dirs: Ray's unix sockets live under them (108-byte path limit).
        temp = Path(tempfile.mkdtemp(prefix=f"hwnas-{name}-", dir="/tmp"))
        log_path = self.root / f"{name}-{len(self.nodes)}.log"
        log = log_path.open("w")
        proc = subprocess.Popen([*(prefix or []), self._ray, "start", "--block", *args,
                                 "--temp-dir", str(temp), *self._ports()],
                                cwd=temp, env=self.env, stdout=log, stderr=subprocess.STDOUT,
                                start_new_session=True)
        proc.temp_dir = temp  # type: ignore[attr-defined]
        proc.log_path = log_path  # type: ignore[attr-defined]
        self.nodes.append(proc)
        return proc

    def start_head(self, cpus: int = 0) -> subprocess.Popen:
        return self._start("head", ["--head", "--port", str(self.port), "--num-cpus", str(cpus),
                                    "--include-dashboard", "false",
                                    "--dashboard-port", str(self._free_ports(1)[0])])

    def add_worker(self, cpus: int = 1, prefix: list[str] | None = None) -> subprocess.Popen:
        return self._start("worker", ["--address", self.address, "--num-cpus", str(cpus)], prefix)

    def wait_for_cpus(self, cpus: float) -> None:
        """Poll ``ray status`` until the cluster's alive nodes hold ``cpus`` CPUs.

        ``ray status`` is a Python program of its own (seconds of CPU on a busy
        machine, taken from the starting nodes): it is first run once every node
        started here has logged that its runtime started (a cheap look at the logs)."""
        deadline = time.monotonic() + RAY_START_TIMEOUT_S
        logs_by = time.monotonic() + RAY_LOG_WAIT_S  # then `ray status` decides alone
        while time.monotonic() < logs_by and not all(
                RAY_STARTED in node.log_path.read_text()  # type: ignore[attr-defined]
                for node in self.nodes if node.poll() is None):
            self.check_nodes()
            time.sleep(RAY_LOG_POLL_S)
        out = ""
        while time.monotonic() < deadline:
            self.check_nodes()
            p = subprocess.run([self._ray, "status", "--address", self.address], env=self.env,
                               capture_output=True, text=True, timeout=60, check=False)
            out = p.stdout + p.stderr
            m = re.search(r"([\d.]+)/([\d.]+) CPU", out)
            if m and float(m.group(2)) >= cpus:
                return
            time.sleep(RAY_STATUS_POLL_S)
        raise AssertionError(f"cluster did not reach {cpus} CPUs in {RAY_START_TIMEOUT_S} s: "
                             f"{out[-1500:]}")

    def check_nodes(self) -> None:
        """Fail at once when a node exited that was not killed here (SIGKILL): a
        search would otherwise wait for its resources until its own timeout."""
        for node in self.nodes:
            if node.poll() not in (None, -signal.SIGKILL):
                raise AssertionError(f"a ray node exited with {node.returncode}; logs in "
                                     f"{self.root}: {self.log_tail()}")

    def log_tail(self, n: int = 3000) -> str:
        return "".join(p.read_text()[-n:] for p in sorted(self.root.glob("*.log")))

    def kill(self, node: subprocess.Popen) -> None:
        """SIGKILL a node: its ``ray start`` process and everything under it."""
        _kill(process_tree(node.pid))
        node.wait()

    def stop(self) -> None:
        """Stop every node started here: SIGTERM (Ray drains and stops its own
        processes), then SIGKILL whatever of their trees is left."""
        trees = {node.pid: process_tree(node.pid) for node in self.nodes}
        for node in reversed(self.nodes):  # workers before the head
            if node.poll() is None:
                node.terminate()
        for node in reversed(self.nodes):
            with suppress(subprocess.TimeoutExpired):
                node.wait(timeout=RAY_STOP_TIMEOUT_S)
            _kill(trees[node.pid] + process_tree(node.pid))
            node.wait()
            shutil.rmtree(node.temp_dir, ignore_errors=True)  # type: ignore[attr-defined]


@contextmanager
def ray_cluster(root: Path) -> Iterator[RayCluster]:
    """A :class:`RayCluster` whose nodes are all stopped on exit."""
    if shutil.which("ray", path=str(Path(sys.executable).parent)) is None:
        skip_or_fail("the 'ray' command is not installed beside this Python (pip install 'ray[tune]')")
    cluster = RayCluster(root)
    try:
        yield cluster
    finally:
        cluster.stop()

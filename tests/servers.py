"""Throwaway servers for tests: a PostgreSQL cluster on 127.0.0.1.

Tests that need a server skip on a developer machine that lacks it, with the
reason printed, but fail when ``CI=true`` (CI must run them for real).
"""

from __future__ import annotations

import glob
import os
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
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
    try:
        subprocess.run([*prefix, str(bindir / "initdb"), "-D", str(data), "-A", "trust", "-U", "postgres"],
                       check=True, capture_output=True, timeout=START_TIMEOUT_S)
        subprocess.run([*prefix, str(bindir / "pg_ctl"), "-D", str(data), "-w", "-t", str(START_TIMEOUT_S),
                        "-l", str(base / "log"), "-o", f"-p {port} -h 127.0.0.1 -k {base}", "start"],
                       check=True, capture_output=True, timeout=START_TIMEOUT_S + 10)
        yield f"postgresql+psycopg://postgres@127.0.0.1:{port}/postgres"
    finally:
        subprocess.run([*prefix, str(bindir / "pg_ctl"), "-D", str(data), "-m", "immediate", "stop"],
                       capture_output=True, timeout=START_TIMEOUT_S)
        shutil.rmtree(base, ignore_errors=True)

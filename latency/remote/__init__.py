"""Runners that measure on another machine: a board over ssh, a phone over adb.

Both follow the protocol of :mod:`hwnas.latency.runner` and turn every
failure of the link (no such host or device, refused, timed out, a remote
program that failed) into a one-line :class:`RunnerError`. Every step runs
``ssh``/``adb`` as an argument list with a timeout. Both tools hand the
remote command to the device's shell as one string, so each remote word is
quoted with :func:`shlex.quote` before it is joined.

Models travel under neutral names (``m0000.onnx``, ...): block names contain
``|``, which no remote path should.

Example::

    runner = SshRunner("rpi4.local", user="pi", identity=Path("~/.ssh/id_ed25519"))
    stats = runner.measure({"ir_k3_s1_m96_c24_nre_noskip|24x56x56": path}, runs=50)
"""

from __future__ import annotations

from ._common import DEFAULT_TIMEOUT_S
from .adb import AdbRunner, parse_perf_test_results
from .ssh import SshRunner

__all__ = ["DEFAULT_TIMEOUT_S", "AdbRunner", "SshRunner", "parse_perf_test_results"]

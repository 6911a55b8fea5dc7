"""Fault tools for the worker tests: a TCP proxy that can be switched off (Redis "down";
the shared one, tests/faultproxy.py), and the real arq worker as a subprocess that can be
`kill -9`ed."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
from typing import IO

from app.core.settings import ROOT
from tests.faultproxy import TcpProxy

__all__ = ["TcpProxy", "Worker"]


class Worker:
    """`arq tests.notifications.fault_worker.WorkerSettings` in its own process."""

    def __init__(self, env: dict[str, str]) -> None:
        self.env = {**os.environ, **env, "PYTHONPATH": str(ROOT)}
        self.proc: subprocess.Popen[bytes] | None = None
        self.log: IO[bytes] = tempfile.TemporaryFile()  # noqa: SIM115 - closed in close()

    def start(self) -> None:
        arq = os.path.join(os.path.dirname(sys.executable), "arq")
        self.proc = subprocess.Popen(
            [arq, "tests.notifications.fault_worker.WorkerSettings"],
            cwd=ROOT,
            env=self.env,
            stdout=self.log,
            stderr=subprocess.STDOUT,
        )

    def kill9(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def output(self) -> str:
        self.log.seek(0)
        return self.log.read().decode(errors="replace")[-6000:]

    def close(self) -> None:
        self.stop()
        self.log.close()

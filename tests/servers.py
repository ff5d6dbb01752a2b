"""Real echochat servers in subprocesses, on 127.0.0.1 with an ephemeral port."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import tempfile
import time
from types import TracebackType

import psutil

# The four implementations, the asyncio-protocol teaching variant, and the
# asyncio-based ones on uvloop ("IMPL+uvloop" runs --impl IMPL --loop uvloop).
IMPLS = [
    "asyncio",
    "trio",
    "anyio-asyncio",
    "anyio-trio",
    "asyncio-protocol",
    "asyncio+uvloop",
    "anyio-asyncio+uvloop",
]

# Lines a clean server never writes to stderr: crashes, asyncio's complaints
# about tasks and callbacks, and warnings of any kind.
_TROUBLE = re.compile(
    r"Traceback|never retrieved|Exception in callback|Unhandled exception|Warning|"
    r"ERROR|CRITICAL|socket\.send\(\) raised"
)

# Where each log record starts: the asctime of the CLI's log format.
_LOG_RECORD = re.compile(r"(?m)^(?=\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} )")


class ServerProcess:
    """``echochat serve`` in a subprocess; knows its port and checks how it ends."""

    def __init__(self, impl: str, service: str, *options: str) -> None:
        self.impl = impl
        # A file, so a chatty server never blocks on a pipe; closed by stop().
        self.stderr = tempfile.TemporaryFile()  # noqa: SIM115
        name, _, loop = impl.partition("+")
        command = [sys.executable, "-m", "echochat", "serve", "--impl", name]
        command += ["--loop", loop or "asyncio"]
        command += ["--service", service, "--host", "127.0.0.1", "--port", "0"]
        if service == "chat":
            # The shared tests send bursts from many clients on 127.0.0.1: flood
            # control and the per-IP limit are off unless a test's own options,
            # which come later and win, turn them on (test_chat_policies.py).
            command += ["--flood-rate", "0", "--max-per-ip", "0"]
        command += options
        # -X dev would turn on asyncio debug noise; instead ask for every warning.
        env = {**os.environ, "PYTHONWARNINGS": "default"}
        self.process = subprocess.Popen(
            command, stdout=subprocess.PIPE, stderr=self.stderr, env=env, text=True
        )
        assert self.process.stdout is not None
        line = self.process.stdout.readline()
        match = re.fullmatch(r"listening on 127\.0\.0\.1:(\d+)\n", line)
        if match is None:
            self.process.kill()
            raise AssertionError(f"bad first line {line!r}; stderr: {self.read_stderr()}")
        self.port = int(match.group(1))
        # The contract: exactly one line on stdout, ever.
        self.rest_of_stdout = self.process.stdout

    def read_stderr(self) -> str:
        self.stderr.seek(0)
        return self.stderr.read().decode(errors="replace")

    def rss(self) -> int:
        return int(psutil.Process(self.process.pid).memory_info().rss)

    def stop(
        self, signum: int = signal.SIGTERM, timeout: float = 5.0, injected_faults: int = 0
    ) -> float:
        """Signal the server and check it exits 0, quietly, within ``timeout``; return the time.

        Quietly means no traceback or warning in its log, except exactly
        ``injected_faults`` records of a fault a test caused on purpose.
        """
        started = time.monotonic()
        if self.process.poll() is None:
            self.process.send_signal(signum)
        try:
            code = self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
            raise AssertionError(
                f"{self.impl} did not exit within {timeout} s; stderr:\n{self.read_stderr()}"
            ) from None
        elapsed = time.monotonic() - started
        stdout_rest = self.rest_of_stdout.read()
        self.rest_of_stdout.close()
        stderr = self.read_stderr()
        self.stderr.close()
        assert code == 0, f"{self.impl} exited with {code}; stderr:\n{stderr}"
        records = _LOG_RECORD.split(stderr)
        faults = [record for record in records if "InjectedFaultError" in record]
        assert len(faults) == injected_faults, f"{self.impl} logged {len(faults)} faults:\n{stderr}"
        for fault in faults:
            # Logged in one record, with its traceback, by the code that contains it.
            assert "Traceback" in fault, f"{self.impl}: {fault}"
        rest = "".join(record for record in records if record not in faults)
        assert not _TROUBLE.search(rest), f"{self.impl} stderr has trouble:\n{stderr}"
        assert stdout_rest == "", f"{self.impl} wrote more to stdout: {stdout_rest!r}"
        return elapsed

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()
        self.rest_of_stdout.close()
        self.stderr.close()

    def __enter__(self) -> ServerProcess:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        if exc_type is None:
            self.stop()
        else:
            self.kill()

"""Real echochat servers in subprocesses, held to the contract's rules on how they end."""

from __future__ import annotations

import os
import re
import resource
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from functools import partial

from echochat.launch import ServerUnderTest, echochat_command
from echochat.registry import CONTRACT_CONFIGURATIONS, parse_configuration

# What every contract test runs against: the four implementations, the
# asyncio-protocol teaching variant, and the asyncio-based ones on uvloop
# ("IMPL+uvloop" runs --impl IMPL --loop uvloop). The list is the registry's.
IMPLS = list(CONTRACT_CONFIGURATIONS)

# Lines a clean server never writes to stderr: crashes, asyncio's complaints
# about tasks and callbacks, and warnings of any kind.
_TROUBLE = re.compile(
    r"Traceback|never retrieved|Exception in callback|Unhandled exception|Warning|"
    r"ERROR|CRITICAL|socket\.send\(\) raised"
)

# Where each log record starts: the asctime of the CLI's log format.
_LOG_RECORD = re.compile(r"(?m)^(?=\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} )")


class ServerProcess(ServerUnderTest):
    """``echochat serve`` for a test: asks for every warning, and checks how it ends."""

    def __init__(self, impl: str, service: str, *options: str, wrapper: Sequence[str] = ()) -> None:
        """``wrapper``: a command that runs the server: ``ip netns exec NAME`` (tests/netns.py)."""
        implementation, loop = parse_configuration(impl)
        # -X dev would turn on asyncio debug noise; instead ask for every warning.
        env = {**os.environ, "PYTHONWARNINGS": "default"}
        command = echochat_command(implementation.name, service, *options, loop=loop)
        super().__init__(impl, [*wrapper, *command], env)
        self.impl = impl

    def limit_open_files(self, spare: int) -> None:
        """Lower the running server's soft RLIMIT_NOFILE so it can open ``spare`` more files.

        The same as ``prlimit --pid PID --nofile=N:HARD``. Lowered after the
        start, because ``echochat serve`` raises its limit for ``--max-clients``
        and refuses to start if it cannot (test_cli.py checks that).
        A new descriptor takes the lowest free number: the limit is set where
        exactly ``spare`` numbers below it are free.
        """
        in_use = {int(name) for name in os.listdir(f"/proc/{self.process.pid}/fd")}
        limit = free = 0
        while free < spare:
            free += limit not in in_use
            limit += 1
        _, hard = resource.prlimit(self.process.pid, resource.RLIMIT_NOFILE)
        resource.prlimit(self.process.pid, resource.RLIMIT_NOFILE, (limit, hard))

    def wait_for_log(self, text: str, timeout: float = 10.0) -> str:
        """Read the server's stderr until it contains ``text``; return it."""
        deadline = time.monotonic() + timeout
        while text not in (log := self.stderr()):
            assert time.monotonic() < deadline, f"{self.impl} did not log {text!r}:\n{log}"
            assert self.process.poll() is None, f"{self.impl} exited:\n{log}"
            time.sleep(0.01)  # Polls a file: there is no event to wait on.
        return log

    def stop(
        self, signum: int = signal.SIGTERM, timeout: float = 5.0, injected_faults: int = 0
    ) -> float:
        """Signal the server and check it exits 0, quietly, within ``timeout``; return the time.

        Quietly means no traceback or warning in its log, except exactly
        ``injected_faults`` records of a fault a test caused on purpose, and
        nothing more on stdout than the one line it printed when it listened.
        """
        try:
            elapsed, stdout_rest, stderr = self.finish(signum, timeout)
        except RuntimeError as error:
            raise AssertionError(str(error)) from None
        self.log = stderr  # What it logged, for tests of the log itself.
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


def echochat(
    *args: str, open_files: int | None = None, timeout: float = 30.0
) -> subprocess.CompletedProcess[str]:
    """Run the ``echochat`` command to its end, as a user would; its output is captured.

    ``open_files``: run it under ``ulimit -n open_files`` (soft and hard limit).
    """
    return subprocess.run(
        [sys.executable, "-m", "echochat", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
        preexec_fn=None if open_files is None else partial(_limit_open_files, open_files),
    )


def _limit_open_files(limit: int) -> None:
    resource.setrlimit(resource.RLIMIT_NOFILE, (limit, limit))

"""``echochat bench echo-cpu``: is asyncio's echo at 100 KiB really slower than its minimal server?

Four runs of the full matrix put echochat's asyncio echo at 0.67-0.89 of the
minimal asyncio Streams server at 100 KiB (0.97 in a fifth) while every other
row sat near 1.0. Both loops are ``read(65536)``, ``write()``, ``drain()``;
the candidate cause is glibc's malloc: StreamReader's transport reads with
``recv(256 KiB)``, an allocation above the default mmap threshold (128 KiB),
so each read costs an mmap and a munmap until a freed block of that size
raises the threshold (glibc's dynamic mmap threshold, see mallopt(3)). A
server that has seen no EOF yet is "cold"; a different heap history in the
two processes could leave one of them cold longer than the other.

This runs both servers side by side at SIZE, interleaved over ROUNDS, each
round with fresh processes, in four conditions: warmed (the same load for
0.2 s, its connections then closed) or cold, and with glibc's
default or with ``MALLOC_MMAP_THRESHOLD_`` fixed at 1 MiB (which turns the
dynamic threshold off and serves every read from the heap). It reports msgs/s
and server CPU per message, and with ``--strace`` the memory system calls per
message (strace slows the server, so those runs are apart from the timed
ones). A cause shows as a gap that the fixed threshold closes, with mmap
calls per message to match; noise shows as overlapping ranges.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial

from echochat.bench.echo import (
    MINIMAL,
    EchoResult,
    KiB,
    LoadGenerator,
    describe,
    warm_with_load,
)
from echochat.experiments.common import progress
from echochat.launch import ServerUnderTest, echochat_command

NAME = "echo-cpu"
ECHO_CPU_SIZE = 100 * KiB
FIXED_THRESHOLD = {"MALLOC_MMAP_THRESHOLD_": str(1024 * KiB)}
MEMORY_CALLS = ("mmap", "munmap", "mremap", "brk", "madvise")


@dataclass(frozen=True, slots=True)
class Condition:
    warm: bool
    fixed_threshold: bool

    @property
    def name(self) -> str:
        heap = "MALLOC_MMAP_THRESHOLD_=1MiB" if self.fixed_threshold else "glibc default"
        return f"{'warmed' if self.warm else 'cold'}, {heap}"


CONDITIONS = [Condition(warm, fixed) for fixed in (False, True) for warm in (True, False)]


@dataclass(slots=True)
class Cell:
    """One server in one condition: its runs, and its memory calls per message if traced."""

    runs: list[EchoResult] = field(default_factory=list)
    calls_per_msg: dict[str, float] = field(default_factory=dict)

    def median(self, field_name: str) -> float:
        return float(statistics.median(getattr(run, field_name) for run in self.runs))


def servers(condition: Condition) -> list[Callable[[], ServerUnderTest]]:
    """echochat's asyncio echo and the minimal asyncio Streams server, in ``condition``."""
    env = {**os.environ, **FIXED_THRESHOLD} if condition.fixed_threshold else None
    minimal = MINIMAL["asyncio"]
    minimal_command = [sys.executable, "-m", f"echochat.bench.minimal.{minimal.module}"]
    return [
        partial(
            ServerUnderTest, "asyncio", echochat_command("asyncio", "echo", loop="asyncio"), env
        ),
        partial(ServerUnderTest, minimal.label, [*minimal_command, "--port", "0"], env),
    ]


def run_echo_cpu(
    client: LoadGenerator,
    *,
    size: int = ECHO_CPU_SIZE,
    rounds: int = 5,
    duration: float = 1.0,
    concurrency: int = 10,
    trace: bool = False,
) -> dict[tuple[str, str], Cell]:
    """(condition, server) -> its cell; every round starts every server afresh."""
    cells: dict[tuple[str, str], Cell] = {}
    for number in range(rounds):
        # Alternate the order of the conditions between rounds, as measure() alternates servers.
        order = CONDITIONS if number % 2 == 0 else CONDITIONS[::-1]
        for condition in order:
            with contextlib.ExitStack() as stack:
                started = [stack.enter_context(start()) for start in servers(condition)]
                for server in started:
                    if condition.warm:
                        warm_with_load(server, client, size, concurrency)
                for server in started if number % 2 == 0 else started[::-1]:
                    result = client(server, size, concurrency, duration)
                    progress(NAME, f"round {number + 1}, {condition.name}: {describe(result)}")
                    cells.setdefault((condition.name, server.label), Cell()).runs.append(result)
    if trace:
        for condition in CONDITIONS:
            for start in servers(condition):
                with start() as server:
                    if condition.warm:
                        warm_with_load(server, client, size, concurrency)
                    calls = traced(server, partial(client, server, size, concurrency, duration))
                cells[(condition.name, server.label)].calls_per_msg = calls
    return cells


def traced(server: ServerUnderTest, run: Callable[[], EchoResult]) -> dict[str, float]:
    """Memory system calls per echoed message during ``run``, counted by strace -c."""
    strace = shutil.which("strace")
    if strace is None:
        raise RuntimeError("--strace needs strace (apt-get install strace)")
    command = [strace, "-c", "-f", "-e", "trace=" + ",".join(MEMORY_CALLS)]
    command += ["-p", str(server.process.pid)]
    with subprocess.Popen(
        command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
    ) as tracer:
        assert tracer.stderr is not None
        # strace says it attached before it counts anything.
        while "attached" not in (line := tracer.stderr.readline()) and line:
            pass
        result = run()
        tracer.send_signal(signal.SIGINT)
        # On SIGINT strace detaches and prints its table, then exits: read to the end.
        report = tracer.stderr.read()
    counts = {name: 0 for name in MEMORY_CALLS}
    # strace -c's table: % time, seconds, usecs/call, calls, [errors,] syscall.
    for line in report.splitlines():
        fields = line.split()
        if fields and fields[-1] in counts and re.fullmatch(r"\d+", fields[3]):
            counts[fields[-1]] = int(fields[3])
    return {name: count / result.messages for name, count in counts.items()}


def report(cells: dict[tuple[str, str], Cell], size: int) -> str:
    """One line per server and condition, and the gap the question is about."""
    lines = [f"asyncio echo at {size // KiB} KiB beside the minimal asyncio Streams server:"]
    for condition in CONDITIONS:
        pair = [(label, cell) for (name, label), cell in cells.items() if name == condition.name]
        for label, cell in pair:
            rates = [run.msgs_per_s for run in cell.runs]
            calls = ", ".join(
                f"{name} {per_msg:.2f}" for name, per_msg in cell.calls_per_msg.items() if per_msg
            )
            lines.append(
                f"  {condition.name:<40} {label:<24} {cell.median('msgs_per_s'):>8,.0f} msgs/s "
                f"({min(rates):,.0f}-{max(rates):,.0f}), "
                f"{cell.median('server_cpu_s_per_msg') * 1e6:5.0f} µs CPU/msg"
                + (f"; per msg: {calls}" if cell.calls_per_msg else "")
            )
        (_, echochat), (_, minimal) = pair
        rate = echochat.median("msgs_per_s") / minimal.median("msgs_per_s")
        cpu = echochat.median("server_cpu_s_per_msg") / minimal.median("server_cpu_s_per_msg")
        lines.append(f"  {'':<40} echochat/minimal: msgs/s {rate:.2f}, CPU per msg {cpu:.2f}")
    return "\n".join(lines)

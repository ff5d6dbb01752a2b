"""The echo benchmark with the native load generator (``epoll_client.c``).

The Python client in ``echo.py`` runs at 95-99 % of a core against the
fastest servers (asyncio's Protocol layer, the C server), so those rows
measured the client. The C client runs the same closed loop with the same
checks at a fraction of that, so the C server's row becomes the machine's
ceiling. Its CPU share is reported with every run, as the Python client's is.
Built with OpenSSL, it loads TLS servers too (``ServerUnderTest.ca``), and
only it does.
"""

from __future__ import annotations

import json
import select
import subprocess
import time
from functools import partial
from pathlib import Path
from typing import IO, Literal

from echochat.bench.cserver import build_epoll_client
from echochat.bench.echo import (
    CONNECT_TIMEOUT,
    FINISH_GRACE,
    RSS_INTERVAL,
    EchoError,
    EchoResult,
    LoadGenerator,
    machine_cpu_seconds,
    run_echo,
)
from echochat.experiments.common import MiB
from echochat.launch import ServerUnderTest

ClientChoice = Literal["auto", "python", "c"]


def load_generator(choice: ClientChoice) -> tuple[LoadGenerator, str]:
    """The client to measure with, and a line saying which it is (and why, if not C)."""
    generator, note, _ = choose_load_generator(choice)
    return generator, note


def choose_load_generator(choice: ClientChoice) -> tuple[LoadGenerator, str, bool]:
    """``load_generator``'s client and line, and whether it can load TLS servers."""
    if choice == "python":
        return run_echo, "load generator: Python (echo.py), as asked", False
    build = build_epoll_client()
    if build.binary is None:
        if choice == "c":
            raise RuntimeError(f"the C load generator is not available: {build.reason}")
        note = (
            f"load generator: Python (echo.py); the C one could not be built ({build.reason}), "
            "so the fastest rows may be limited by the client: see its CPU share"
        )
        return run_echo, note, False
    note = "load generator: C (epoll_client.c" + (", with OpenSSL)" if build.tls else ")")
    if not build.tls:
        note += f"; {build.reason}, so no TLS rows"
    return partial(run_native, build.binary), note, build.tls


def run_native(
    binary: Path, server: ServerUnderTest, size: int, concurrency: int, duration: float
) -> EchoResult:
    """Measure one server with the C client; the server's CPU and RSS are read from here."""
    if size < 1 or concurrency < 1 or duration <= 0:
        raise ValueError("size and concurrency must be positive, and so must duration")
    command = [str(binary), "--port", str(server.port), "--size", str(size)]
    command += ["--connections", str(concurrency), "--duration", repr(duration)]
    if server.ca is not None:
        command += ["--tls-ca", str(server.ca)]
    label = server.label
    # Unbuffered: the lines are read one at a time between RSS samples, and
    # nothing may sit in a Python buffer that communicate() would not see.
    with subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, bufsize=0
    ) as process:
        assert process.stdout is not None
        try:
            _expect(process.stdout, b"started", CONNECT_TIMEOUT, label)
            peak_rss, rss_samples = server.rss(), 1
            server_cpu, own_cpu = server.cpu_seconds(), time.process_time()
            machine_cpu, steal = machine_cpu_seconds()
            stop_by = time.monotonic() + duration + FINISH_GRACE
            while not _readable(process.stdout, RSS_INTERVAL):
                peak_rss, rss_samples = max(peak_rss, server.rss()), rss_samples + 1
                if time.monotonic() > stop_by:
                    raise EchoError(f"{label}: the C client did not end its window")
            _expect(process.stdout, b"stopped", 0, label)
            server_cpu = server.cpu_seconds() - server_cpu
            own_cpu = time.process_time() - own_cpu
            machine_cpu_now, steal_now = machine_cpu_seconds()
            stdout, stderr = process.communicate(timeout=3 * FINISH_GRACE)
        finally:
            if process.poll() is None:
                process.kill()
    summary = json.loads(stdout.decode() or "{}")
    if process.returncode != 0 or "error" in summary:
        raise EchoError(f"{label}: {summary.get('error') or stderr.decode().strip()}")
    peak_rss, rss_samples = max(peak_rss, server.rss()), rss_samples + 1
    messages, elapsed, client_cpu = summary["messages"], summary["seconds"], summary["cpu_s"]
    busy = machine_cpu_now - machine_cpu
    return EchoResult(
        label=label,
        client="C",
        size=size,
        concurrency=concurrency,
        seconds=elapsed,
        messages=messages,
        verified=messages + concurrency,
        msgs_per_s=messages / elapsed,
        mib_per_s=messages * size / MiB / elapsed,
        p50_ms=summary["p50_ms"],
        p90_ms=summary["p90_ms"],
        p99_ms=summary["p99_ms"],
        max_ms=summary["max_ms"],
        server_cpu_s=server_cpu,
        server_cpu_s_per_msg=server_cpu / messages,
        peak_rss_mib=peak_rss / MiB,
        rss_samples=rss_samples,
        client_cpu_share=client_cpu / elapsed,
        # This process sampled RSS meanwhile: its share is not "other" either.
        other_busy_cores=(busy - client_cpu - server_cpu - own_cpu) / elapsed,
        steal_cores=(steal_now - steal) / elapsed,
        tls=summary["tls"],
    )


def _readable(stream: IO[bytes], timeout: float) -> bool:
    readable, _, _ = select.select([stream], [], [], timeout)
    return bool(readable)


def _expect(stream: IO[bytes], line: bytes, timeout: float, label: str) -> None:
    """Read one line, which must be ``line``; what else came is the client's error."""
    if timeout and not _readable(stream, timeout):
        raise EchoError(f"{label}: the C client did not connect within {timeout:g} s")
    got = stream.readline().strip()
    if got != line:
        raise EchoError(f"{label}: the C client said {got.decode(errors='replace')!r}")

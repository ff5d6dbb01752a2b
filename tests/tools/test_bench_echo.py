"""The echo benchmark, quick: every echo checked byte for byte, sane figures, servers that stop."""

from __future__ import annotations

import dataclasses
import json
import os
import re
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from echochat.bench.cserver import build_epoll_client, build_epoll_echo
from echochat.bench.echo import (
    MINIMAL,
    EchoError,
    EchoResult,
    echo_targets,
    measure,
    run_echo,
    start_ceiling,
    start_echochat,
    start_minimal,
)
from echochat.bench.native import load_generator, run_native
from echochat.experiments.common import MAIN, ON_UVLOOP, VARIANTS
from echochat.launch import ServerUnderTest
from echochat.registry import BY_NAME

KiB = 1024
BUILD = build_epoll_echo()
CLIENT_BUILD = build_epoll_client()
needs_gcc = pytest.mark.skipif(BUILD.binary is None, reason=f"no C server: {BUILD.reason}")
needs_c_client = pytest.mark.skipif(
    CLIENT_BUILD.binary is None, reason=f"no C client: {CLIENT_BUILD.reason}"
)


def c_client(server: ServerUnderTest, size: int, concurrency: int, duration: float) -> EchoResult:
    assert CLIENT_BUILD.binary is not None
    return run_native(CLIENT_BUILD.binary, server, size, concurrency, duration)


CLIENTS = {"python": run_echo, "C": c_client}

MINIMAL_COMMANDS = {
    "asyncio_streams": [],
    "asyncio_streams+uvloop": ["--loop", "uvloop"],
    "asyncio_protocol": [],
    "asyncio_protocol+uvloop": ["--loop", "uvloop"],
    "trio_echo": [],
    "anyio_echo+asyncio": ["--backend", "asyncio"],
    "anyio_echo+trio": ["--backend", "trio"],
}


def server_command(name: str) -> list[str]:
    if name == "C epoll":
        assert BUILD.binary is not None
        return [str(BUILD.binary), "--port", "0"]
    module = name.partition("+")[0]
    command = [sys.executable, "-m", f"echochat.bench.minimal.{module}", "--port", "0"]
    return command + MINIMAL_COMMANDS[name]


@pytest.mark.parametrize("name", [*MINIMAL_COMMANDS, pytest.param("C epoll", marks=needs_gcc)])
def test_reference_server_echoes_and_exits_0_on_sigterm(name: str) -> None:
    process = subprocess.Popen(
        server_command(name), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    try:
        assert process.stdout is not None
        line = process.stdout.readline()
        match = re.fullmatch(r"listening on 127\.0\.0\.1:(\d+)\n", line)
        assert match is not None, line
        message = bytes(range(256)) * 400  # 100 KiB: more than one read, more than one send
        with socket.create_connection(("127.0.0.1", int(match.group(1))), timeout=5) as sock:
            sock.sendall(message)
            echoed = b""
            while len(echoed) < len(message) and (chunk := sock.recv(65536)):
                echoed += chunk
            assert echoed == message
            # Signalled with the connection still open: the hard case for a clean exit.
            process.send_signal(signal.SIGTERM)
            stdout, stderr = process.communicate(timeout=5)
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
    assert process.returncode == 0, stderr
    assert stdout == ""
    assert stderr == ""


@pytest.mark.parametrize("client", ["python", pytest.param("C", marks=needs_c_client)])
def test_runs_check_every_echo_and_give_sane_figures(client: str) -> None:
    starts = [
        lambda: start_echochat("trio"),
        lambda: start_minimal(MINIMAL["trio"]),
    ]
    if BUILD.binary is not None:
        binary = BUILD.binary
        starts.append(lambda: start_ceiling(binary))
    sizes = [1 * KiB, 100 * KiB]
    cores = os.cpu_count() or 1
    results = measure(starts, sizes, concurrency=4, duration=0.5, client=CLIENTS[client])

    labels = ["trio", "minimal trio"] + (["C epoll"] if BUILD.binary is not None else [])
    assert sorted((r.label, r.size) for r in results) == sorted(
        (label, size) for label in labels for size in sizes
    )
    for result in results:
        assert result.client == client
        assert result.concurrency == 4
        assert 0.5 <= result.seconds < 0.75
        assert result.messages > 0
        # The messages in flight when the window closed were checked too.
        assert result.verified == result.messages + 4
        assert result.msgs_per_s == pytest.approx(result.messages / result.seconds)
        assert result.mib_per_s == pytest.approx(result.msgs_per_s * result.size / 2**20)
        assert 0 < result.p50_ms <= result.p90_ms <= result.p99_ms <= result.max_ms
        assert result.server_cpu_s >= 0
        assert result.server_cpu_s_per_msg == pytest.approx(result.server_cpu_s / result.messages)
        assert result.rss_samples >= 5  # every 0.1 s, and before and after
        assert result.peak_rss_mib > 0
        assert 0 < result.client_cpu_share <= 1.05  # one thread: at most one core, give or take
        busy = result.client_cpu_share + result.server_cpu_s / result.seconds
        assert 0 <= busy + result.other_busy_cores <= cores + 0.1  # tick granularity
        assert 0 <= result.steal_cores <= cores + 0.1
        json.dumps(dataclasses.asdict(result))


# Echoes everything but flips the first byte of each read: the client must notice.
CORRUPTING_SERVER = """
import os, signal, socket
# ServerUnderTest insists on status 0; os._exit ends the process at once, even
# mid-sendall to a client that stopped reading after it saw the bad byte.
signal.signal(signal.SIGTERM, lambda *_: os._exit(0))
listener = socket.create_server(("127.0.0.1", 0))
print(f"listening on 127.0.0.1:{listener.getsockname()[1]}", flush=True)
connection, _ = listener.accept()
while data := bytearray(connection.recv(65536)):
    data[0] ^= 1
    connection.sendall(data)
signal.pause()  # Exit only on SIGTERM: ending at EOF would race stop()'s signal.
"""


@pytest.mark.parametrize("client", ["python", pytest.param("C", marks=needs_c_client)])
def test_a_changed_byte_fails_the_run(client: str) -> None:
    with (
        ServerUnderTest("corrupting", [sys.executable, "-c", CORRUPTING_SERVER]) as server,
        pytest.raises(EchoError, match="different bytes"),
    ):
        CLIENTS[client](server, 1 * KiB, 1, 0.5)


def test_every_implementation_is_paired_with_its_framework() -> None:
    assert set(MINIMAL) == set(BY_NAME)
    targets = echo_targets()
    expected = [impl if loop == "asyncio" else f"{impl}+{loop}" for impl, loop in MAIN]
    expected += [impl for impl, _ in VARIANTS]
    expected += [f"{impl}+{loop}" for impl, loop in ON_UVLOOP]
    assert [row.label for row in targets.rows] == expected
    assert (targets.ceiling is None) == (BUILD.binary is None)
    assert bool(targets.notes) == (BUILD.binary is None)


def test_without_gcc_the_ceiling_is_skipped_with_a_reason(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    build = build_epoll_echo(tmp_path)
    assert build.binary is None
    assert "gcc" in build.reason


def test_without_gcc_the_python_client_measures_and_says_why(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    client, note = load_generator("auto")
    assert client is run_echo
    assert note.startswith("load generator: Python (echo.py); the C one could not be built")
    assert "no gcc on PATH" in note
    with pytest.raises(RuntimeError, match="no gcc on PATH"):
        load_generator("c")

"""Graceful shutdown on SIGTERM and SIGINT with clients connected, for every implementation."""

from __future__ import annotations

import resource
import signal
import socket
from collections.abc import Callable

import pytest

from flood import MiB, send_without_reading
from irc import IrcClient, unique_channel, unique_nick
from servers import ServerProcess

Start = Callable[..., ServerProcess]
Open = Callable[..., IrcClient]
IDLE_CLIENTS = 1000


@pytest.fixture(autouse=True)
def enough_file_descriptors() -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = IDLE_CLIENTS + 200
    if soft < wanted and (hard == resource.RLIM_INFINITY or hard >= wanted):
        resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_signal_says_goodbye_to_every_client_and_exits_cleanly(
    start_server: Start, open_client: Open, signum: signal.Signals
) -> None:
    server = start_server("chat")
    channel = unique_channel()
    talkers = [open_client(server.port) for _ in range(2)]
    for client in talkers:
        client.register(unique_nick())
        client.join(channel)
    idle = [open_client(server.port) for _ in range(IDLE_CLIENTS)]
    # Every idle connection has been accepted once the server answers after them.
    assert talkers[0].sync()[-1].endswith(f"JOIN {channel}")
    assert idle[-1].sync() == []
    elapsed = server.stop(signum)  # Asserts exit 0 and a clean stderr.
    assert elapsed < 5.0
    for client in talkers + idle:
        lines = client.expect_eof()
        assert lines[-1:] == ["ERROR :Server shutting down"], lines


@pytest.mark.parametrize("signals", [1, 2], ids=["one-signal", "two-signals"])
def test_signal_while_a_client_is_not_reading(
    start_server: Start, open_client: Open, signals: int
) -> None:
    # A SendQ large enough that the stalled client is not dropped: its writer
    # is blocked with megabytes queued when the signal comes.
    server = start_server("chat", "--sendq", "16000000")
    channel = unique_channel()
    stalled = open_client(server.port, rcvbuf=4096)
    stalled.register(unique_nick())
    stalled.join(channel)
    sender = open_client(server.port)
    sender.register(unique_nick())
    sender.join(channel)
    for batch in range(40):
        sender.send(*(f"PRIVMSG {channel} :{batch}.{i} {'z' * 200}" for i in range(500)))
    sender.sync()
    # The stalled client's queue cannot be flushed; the server must not wait
    # for it beyond its grace period, and a second signal must not kill it.
    for _ in range(signals - 1):
        server.process.send_signal(signal.SIGTERM)
    assert server.stop(signal.SIGTERM) < 5.0


def test_echo_server_closes_every_connection_on_signal(start_server: Start) -> None:
    server = start_server("echo")
    with (
        socket.create_connection(("127.0.0.1", server.port), timeout=10) as idle,
        socket.create_connection(("127.0.0.1", server.port), timeout=10) as flooding,
    ):
        idle.sendall(b"hello")
        assert idle.recv(5) == b"hello"  # Accepted and served.
        send_without_reading(flooding, 64 * MiB)  # Stalled mid-echo.
        assert server.stop(signal.SIGTERM) < 5.0
        assert idle.recv(1) == b""  # Closed by the server.

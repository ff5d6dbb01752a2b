"""The echo service, against every implementation: exact bytes, half-close, backpressure."""

from __future__ import annotations

import os
import socket
import threading
from collections.abc import Callable, Iterator

import pytest

from flood import MiB, expected_echo, receive_exactly, send_without_reading
from servers import ServerProcess

Start = Callable[..., ServerProcess]


@pytest.fixture(scope="module")
def echo_server(impl: str) -> Iterator[ServerProcess]:
    with ServerProcess(impl, "echo") as server:
        yield server


def connect(port: int) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port), timeout=10)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


def test_megabyte_of_random_bytes_comes_back_exactly(echo_server: ServerProcess) -> None:
    payload = os.urandom(MiB)
    with connect(echo_server.port) as sock:
        # Send from a thread while reading here: the server only reads as fast
        # as we read (backpressure), so sending it all first could deadlock.
        sender = threading.Thread(target=sock.sendall, args=(payload,))
        sender.start()
        echoed = receive_exactly(sock, len(payload))
        sender.join()
    assert echoed == payload


def test_half_close_gets_everything_then_eof(echo_server: ServerProcess) -> None:
    payload = os.urandom(100_000)
    with connect(echo_server.port) as sock:
        sock.sendall(payload)
        sock.shutdown(socket.SHUT_WR)
        echoed = receive_exactly(sock, len(payload))
        assert sock.recv(1) == b"", "the server should close after echoing everything"
    assert echoed == payload


def test_many_small_messages_in_order(echo_server: ServerProcess) -> None:
    with connect(echo_server.port) as sock:
        for i in range(200):
            message = f"message {i}\n".encode()
            sock.sendall(message)
            assert receive_exactly(sock, len(message)) == message


def test_client_that_never_reads_cannot_grow_the_server(start_server: Start) -> None:
    server = start_server("echo")
    with connect(server.port) as warm:  # Let the server allocate what it needs once.
        warm.sendall(b"w" * 65536)
        receive_exactly(warm, 65536)
    baseline = server.rss()
    with connect(server.port) as sock:
        sent = send_without_reading(sock, 200 * MiB)
        grown = server.rss() - baseline
        print(
            f"{server.impl}: sent {sent / MiB:.1f} MiB before the server stopped reading; "
            f"RSS {baseline / MiB:.1f} MiB + {grown / MiB:.1f} MiB"
        )
        # Backpressure: the server stopped reading long before 200 MB...
        assert sent < 64 * MiB
        # ...and its memory for this connection stayed a small multiple of 64
        # KiB. anyio on uvloop reads more before the paused transport takes
        # effect: usually 4.1-4.4 MiB, once 8.1 MiB with the machine busy (it
        # tracks how much arrives per loop iteration), flat once the client
        # stalls; without echochat's pause it is ~200 MiB (docs/design.md, item 5).
        assert grown < (16 * MiB if server.impl == "anyio-asyncio+uvloop" else 4 * MiB)
        # Nothing was lost on the way: everything sent comes back, in order.
        sock.settimeout(10)
        assert receive_exactly(sock, sent) == expected_echo(sent)


def test_max_clients_closes_extra_connections(start_server: Start) -> None:
    server = start_server("echo", "--max-clients", "2")
    with connect(server.port) as first, connect(server.port) as second:
        for sock in (first, second):
            sock.sendall(b"ping")
            assert receive_exactly(sock, 4) == b"ping"
        with connect(server.port) as extra:
            assert extra.recv(1) == b"", "a third connection should be closed at once"
        first.sendall(b"still")
        assert receive_exactly(first, 5) == b"still"

"""A client that sends without ever reading, to test a server's backpressure."""

from __future__ import annotations

import socket
import time

MiB = 1024 * 1024
# 1 MiB with a pattern, so what comes back can be checked.
BLOCK = bytes(range(256)) * 4096


def send_without_reading(
    sock: socket.socket, limit: int, stall: float = 1.0, chunk: int = MiB
) -> int:
    """Send until ``limit`` bytes or until sending stalls for ``stall`` seconds; return the count.

    A stall means the server stopped reading: backpressure reached us.
    Bounded in bytes and in time (30 s). Over TLS, ``chunk`` is one record
    (16 KiB), so that a send cut short by the timeout loses none of the count.
    """
    sock.settimeout(stall)
    sent, deadline = 0, time.monotonic() + 30
    try:
        while sent < limit and time.monotonic() < deadline:
            offset = sent % MiB
            sent += sock.send(memoryview(BLOCK)[offset : offset + chunk])
    except TimeoutError:
        pass
    return sent


def expected_echo(sent: int) -> bytes:
    return (BLOCK * (sent // MiB + 1))[:sent]


def receive_exactly(sock: socket.socket, size: int) -> bytes:
    chunks, received = [], 0
    while received < size:
        chunk = sock.recv(min(size - received, MiB))
        assert chunk, f"EOF after {received} of {size} bytes"
        chunks.append(chunk)
        received += len(chunk)
    return b"".join(chunks)

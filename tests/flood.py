"""A client that sends without ever reading, to test a server's backpressure."""

from __future__ import annotations

import socket
import time

MiB = 1024 * 1024
# 1 MiB with a pattern, so what comes back can be checked.
BLOCK = bytes(range(256)) * 4096


def send_without_reading(sock: socket.socket, limit: int, stall: float = 1.0) -> int:
    """Send until ``limit`` bytes or until sending stalls for ``stall`` seconds; return the count.

    A stall means the server stopped reading: backpressure reached us.
    Bounded in bytes and in time (30 s).
    """
    sock.settimeout(stall)
    sent, deadline = 0, time.monotonic() + 30
    try:
        while sent < limit and time.monotonic() < deadline:
            sent += sock.send(memoryview(BLOCK)[sent % MiB :])
    except TimeoutError:
        pass
    return sent


def expected_echo(sent: int) -> bytes:
    return (BLOCK * (sent // MiB + 1))[:sent]

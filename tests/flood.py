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


# About 1 MB in one send: long lines, or many short ones (more work per byte).
BURSTS = [(2_600, 400), (20_000, 52)]
# What the kernel may hold for each member (SO_SNDBUF; Linux doubles it). Left
# to autotuning it holds about 3 MB for the member that never reads, more
# than the burst, and that member could not overflow its SendQ
# (options.set_send_buffer). Not 64 KiB: with 128 KiB in the kernel the fast
# member's sends stalled for 10-20 ms now and then while its client sat
# waiting for data (most likely for the client's delayed ACK), and it was
# dropped in about one run in five.
SEND_BUFFER = 262_144

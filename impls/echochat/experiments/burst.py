"""A burst of numbered lines in one send, and a member that reads it at kernel speed.

Shared by the ``sendq-burst`` experiment and the SendQ contract tests
(``tests/contract/test_sendq.py``): a member must never be the bottleneck
it is meant to measure, so the reader takes whole buffers (1 MiB
``recv_into``) and splits them in C (``bytes.split``), with no quadratic
buffering and nothing slow between two receives.
"""

from __future__ import annotations

import socket
import threading
import time
from dataclasses import dataclass, field

# What one recv_into may take: far more than a kernel buffer holds on loopback.
READ_BUFFER = 1 << 20


def member(port: int, nick: str, channel: str, rcvbuf: int | None = None) -> socket.socket:
    """A registered member of ``channel``: NICK, USER, JOIN and PING, read up to the PONG."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    if rcvbuf is not None:
        # Before connecting, so the TCP window is small from the start.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    sock.settimeout(10)
    sock.connect(("127.0.0.1", port))
    sock.sendall(f"NICK {nick}\r\nUSER u 0 * :{nick}\r\nJOIN {channel}\r\nPING :in\r\n".encode())
    received = b""
    while b" :in\r\n" not in received:
        chunk = sock.recv(READ_BUFFER)
        if not chunk:
            raise RuntimeError(f"{nick} could not join {channel}: {received[-300:]!r}")
        received += chunk
    return sock


def burst(channel: str, lines: int, size: int) -> bytes:
    """``lines`` numbered PRIVMSGs to ``channel`` of ``size`` bytes each with CR LF."""
    head = f"PRIVMSG {channel} :"
    pad = b"x" * (size - len(head) - len("000000 \r\n"))
    assert pad, f"lines of {size} bytes cannot hold a number"
    return b"".join(b"%s%06d %s\r\n" % (head.encode(), n, pad) for n in range(lines))


@dataclass
class Received:
    """What a fast member saw of a burst: times are ``time.monotonic()``."""

    # The next number expected: every line before it arrived, in order.
    got: int = 0
    # Lines of the burst that came out of order (or repeated): must be 0.
    disorder: int = 0
    first_at: float | None = None
    all_at: float | None = None
    # How many burst lines had arrived when the stalled member's QUIT did.
    quit_after: int | None = None
    # An ERROR line, EOF or a socket error that ended the reading early.
    ended: str | None = None
    # (time, bytes received so far), one per receive.
    progress: list[tuple[float, int]] = field(default_factory=list)


class BurstReader(threading.Thread):
    """Reads one member's socket at kernel speed until the burst and a QUIT have arrived.

    ``talker`` sent the burst's ``count`` numbered lines; ``quitter``, if
    given, is the member whose ``QUIT :SendQ exceeded`` must also arrive.
    Bounded in time: it stops at ``deadline`` (``time.monotonic()``).
    """

    def __init__(
        self,
        sock: socket.socket,
        talker: str,
        count: int,
        deadline: float,
        quitter: str | None = None,
    ) -> None:
        super().__init__(daemon=True)
        self.sock = sock
        self.prefix = f":{talker}!".encode()
        self.count = count
        self.deadline = deadline
        self.quit_line = (
            None if quitter is None else f":{quitter}!u@127.0.0.1 QUIT :SendQ exceeded".encode()
        )
        self.received = Received()

    def run(self) -> None:
        result = self.received
        buffer = bytearray(READ_BUFFER)
        view = memoryview(buffer)
        tail = b""
        total = 0
        try:
            while result.got < self.count or (self.quit_line and result.quit_after is None):
                self.sock.settimeout(max(self.deadline - time.monotonic(), 0.001))
                size = self.sock.recv_into(buffer)
                now = time.monotonic()
                if not size:
                    result.ended = result.ended or "EOF"
                    return
                total += size
                result.progress.append((now, total))
                if result.first_at is None:
                    result.first_at = now
                data = tail + view[:size] if tail else bytes(view[:size])
                cut = data.rfind(b"\n") + 1
                tail = data[cut:]
                self.count_lines(data[:cut].split(b"\r\n"))
                if result.got >= self.count and result.all_at is None:
                    result.all_at = now
        except OSError as error:  # TimeoutError included: the deadline passed.
            result.ended = type(error).__name__

    def count_lines(self, lines: list[bytes]) -> None:
        result = self.received
        for line in lines:
            if line.startswith(self.prefix):
                # ":talker!u@host PRIVMSG #c :NNNNNN xxx..."
                start = line.index(b" :", 1) + 2
                number = int(line[start : start + 6])
                result.disorder += number != result.got
                result.got = number + 1
            elif line == self.quit_line:
                result.quit_after = result.got
            elif line.startswith(b"ERROR"):
                result.ended = line.decode()

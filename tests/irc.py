"""A small blocking IRC client for the tests: send lines, expect replies, synchronise with PING."""

from __future__ import annotations

import itertools
import re
import socket
import ssl
import time
from pathlib import Path

_tokens = itertools.count(1)


class ConnectionClosedError(AssertionError):
    """The server closed the connection while a line was expected."""


class IrcClient:
    def __init__(
        self, port: int, timeout: float = 10.0, rcvbuf: int | None = None, host: str = "127.0.0.1"
    ) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        if rcvbuf is not None:
            # Set before connecting, so the TCP window is small from the start.
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.sock.settimeout(timeout)
        self.timeout = timeout
        self.sock.connect((host, port))
        self.buffer = b""
        self.nick = "*"

    def close(self) -> None:
        self.sock.close()

    def send(self, *lines: str) -> None:
        self.sock.sendall("".join(f"{line}\r\n" for line in lines).encode())

    def send_raw(self, data: bytes) -> None:
        self.sock.sendall(data)

    def read_line(self, deadline: float | None = None) -> str:
        """The next line; TimeoutError if none is whole by ``deadline`` (time.monotonic())."""
        while b"\n" not in self.buffer:
            if deadline is not None:
                self.sock.settimeout(max(deadline - time.monotonic(), 0.001))
            try:
                chunk = self.sock.recv(65536)
            finally:
                self.sock.settimeout(self.timeout)
            if not chunk:
                raise ConnectionClosedError(f"EOF; unread: {self.buffer!r}")
            self.buffer += chunk
        line, _, self.buffer = self.buffer.partition(b"\n")
        assert line.endswith(b"\r"), f"line not ended by CR LF: {line!r}"
        return line[:-1].decode()

    def expect(self, pattern: str) -> re.Match[str]:
        """The next line must match ``pattern`` (a regex, anchored at both ends)."""
        line = self.read_line()
        match = re.fullmatch(pattern, line)
        assert match is not None, f"expected {pattern!r}, got {line!r}"
        return match

    def read_until(self, *patterns: str, within: float | None = None) -> list[str]:
        """Lines up to and including the one by which each of ``patterns`` has matched a
        line, in any order (with one pattern: the first line that matches it).

        ``within``: fail unless that happens within that many seconds, however
        many other lines come first (the timeout alone bounds each read).
        """
        deadline = None if within is None else time.monotonic() + within
        lines: list[str] = []
        waiting = list(patterns)
        while waiting:
            try:
                lines.append(self.read_line(deadline))
            except TimeoutError:
                if deadline is None:
                    raise
                raise AssertionError(
                    f"{self.nick}: no line matching {waiting} within {within} s; "
                    f"the last lines were {lines[-10:]}"
                ) from None
            waiting = [pattern for pattern in waiting if not re.fullmatch(pattern, lines[-1])]
        return lines

    def read_for(self, seconds: float) -> list[str]:
        """Every line that comes within ``seconds``: to see that something does not happen."""
        deadline = time.monotonic() + seconds
        lines = []
        while True:
            try:
                lines.append(self.read_line(deadline))
            except TimeoutError:
                return lines

    def sync(self) -> list[str]:
        """Everything the server sent before answering a PING: PONGs come in order."""
        token = f"sync{next(_tokens)}"
        self.send(f"PING {token}")
        return self.read_until(rf":\S+ PONG \S+ :{token}")[:-1]

    def expect_eof(self) -> list[str]:
        """Read to the end of the stream; return the lines seen on the way."""
        lines = []
        while True:
            try:
                lines.append(self.read_line())
            except ConnectionClosedError:
                return lines
            except ConnectionResetError:
                return lines

    def register(self, nick: str, user: str = "u", realname: str = "Test User") -> list[str]:
        self.send(f"NICK {nick}", f"USER {user} 0 * :{realname}")
        lines = self.read_until(rf":\S+ 422 {re.escape(nick)} :MOTD File is missing")
        self.nick = nick
        return lines

    def join(self, channel: str) -> list[str]:
        self.send(f"JOIN {channel}")
        return self.read_until(rf":\S+ 366 {re.escape(self.nick)} \S+ :End of /NAMES list")


class TlsIrcClient(IrcClient):
    """An IrcClient over TLS that checks the server's certificate (``cafile``) for localhost."""

    def __init__(
        self, port: int, cafile: Path, timeout: float = 10.0, rcvbuf: int | None = None
    ) -> None:
        super().__init__(port, timeout, rcvbuf)
        context = ssl.create_default_context(cafile=str(cafile))
        # The handshake happens here, within the timeout; recv() then returns
        # b"" at the server's close_notify and at a TCP close without one.
        self.sock = context.wrap_socket(self.sock, server_hostname="localhost")


_nicks = itertools.count(1)


def unique_nick(stem: str = "n") -> str:
    """A nick no other test uses, so tests can share one server."""
    return f"{stem}{next(_nicks)}"


def unique_channel(stem: str = "#c") -> str:
    return f"{stem}{next(_nicks)}"

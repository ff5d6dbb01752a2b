"""``echochat demo`` (``make demo``): the write/drain split, live, in about 20 seconds.

Every implementation serves chat at once, with the teaching variant that
leaves out ``drain()``. On each, a talker floods one channel and two members
listen: a fast reader that reads everything, and a stalled reader with a tiny
receive window that never reads. A live table shows, per server, its memory,
how much it holds for the stalled reader, and when it drops it; at the end,
one verdict per implementation. The implementations with backpressure drop
the stalled reader once its SendQ overflows and stay small; asyncio-nodrain
never notices and its buffer, and memory, grow for as long as the talker talks.

What "held for the stalled reader" measures: the bytes the fast reader has
received since the flood began (both members get the same lines) minus the
bytes waiting unread in the stalled reader's own socket (``FIONREAD``). That
is what the server still holds for it: its queue (the SendQ, or asyncio's
transport buffer) plus its kernel send buffer, kept small here with
``--send-buffer`` so that the queue, not the kernel, does the holding.
"""

from __future__ import annotations

import contextlib
import fcntl
import selectors
import socket
import struct
import termios
import time
from collections.abc import Iterator
from dataclasses import dataclass, field

from rich.console import Console
from rich.live import Live
from rich.table import Table

from echochat.core.limits import DEFAULT_SENDQ
from echochat.experiments.common import MiB
from echochat.experiments.slow_member import CHANNEL, join
from echochat.launch import ServerUnderTest
from echochat.registry import IMPLEMENTATIONS

DEFAULT_SECONDS = 20.0
# Lines a second from each talker, of LINE_TEXT bytes: about 0.5 MB/s per
# server, so a 256 KiB SendQ overflows within a second and a buffer without
# a bound grows by about 10 MiB in 20 s.
RATE = 1000
LINE_TEXT = "x" * 480
# The server's kernel send buffer per client (Linux doubles it): small, so
# that the stalled reader's bytes pile up in the server's own queue.
SEND_BUFFER = 16_384
REFRESH = 0.25  # seconds between table updates
POLL = 0.005  # longest wait in select(), so that the talkers keep their rate
# A talker's unsent bytes before it stops adding lines: bounded, whatever the server does.
TALKER_BACKLOG = 65_536
QUIT_SENDQ = b" QUIT :SendQ exceeded"


@dataclass(slots=True)
class Demo:
    """One server with its talker, fast reader and stalled reader, and what was seen so far."""

    label: str
    server: ServerUnderTest
    talker: socket.socket
    fast: socket.socket
    stalled: socket.socket
    rss_start: int
    stalled_queued_start: int
    lines_posted: int = 0
    outgoing: bytearray = field(default_factory=bytearray)
    fast_bytes: int = 0
    fast_lines: int = 0  # the talker's lines among them
    pending: bytes = b""
    rss: int = 0
    rss_peak: int = 0
    held: int = 0
    held_peak: int = 0
    dropped_at: float | None = None

    def read_fast(self, now: float) -> None:
        data = self.fast.recv(1 << 20)
        if not data:
            raise RuntimeError(f"{self.label} closed the fast reader's connection")
        self.fast_bytes += len(data)
        *lines, self.pending = (self.pending + data).split(b"\n")
        self.fast_lines += sum(b" PRIVMSG " in line for line in lines)
        if self.dropped_at is None and any(
            line.startswith(b":stalled!") and QUIT_SENDQ in line for line in lines
        ):
            self.dropped_at = now

    def sample(self) -> None:
        self.rss = self.server.rss()
        self.rss_peak = max(self.rss_peak, self.rss)
        if self.dropped_at is None:
            queued = unread_bytes(self.stalled) - self.stalled_queued_start
            self.held = max(0, self.fast_bytes - queued)
            self.held_peak = max(self.held_peak, self.held)

    def verdict(self) -> str:
        growth = (self.rss_peak - self.rss_start) / MiB
        if self.dropped_at is not None:
            return (
                f"bounded: dropped the stalled reader after {self.dropped_at:.1f} s (SendQ "
                f"exceeded, {self.held_peak / 1024:,.0f} KiB held at most); RSS grew "
                f"{growth:.1f} MiB; the fast reader got {self.fast_lines:,} of "
                f"{self.lines_posted:,} lines"
            )
        if self.held > DEFAULT_SENDQ:
            return (
                f"grows: never dropped the stalled reader and held {self.held / MiB:.1f} MiB "
                f"for it; RSS grew {growth:.1f} MiB; nothing bounds a buffer that is "
                "written to without drain()"
            )
        return (
            f"undecided: held {self.held / 1024:,.0f} KiB for the stalled reader, under "
            "its SendQ; run longer"
        )


def unread_bytes(sock: socket.socket) -> int:
    """Bytes that arrived at ``sock`` and wait to be read (Linux's FIONREAD)."""
    packed = fcntl.ioctl(sock.fileno(), termios.FIONREAD, struct.pack("i", 0))
    return int(struct.unpack("i", packed)[0])


def run_demo(seconds: float = DEFAULT_SECONDS, console: Console | None = None) -> list[Demo]:
    # soft_wrap: a verdict stays one line in a log, however narrow the terminal.
    console = console if console is not None else Console(soft_wrap=True)
    if not console.is_terminal:
        console.width = max(console.width, 100)  # a log's table, uncut
    console.print(
        f"echochat demo: {len(IMPLEMENTATIONS)} chat servers; on each a talker posts "
        f"{RATE} lines/s of {len(LINE_TEXT)} bytes to {CHANNEL}, a fast reader reads them "
        f"all and a stalled reader never reads (SendQ {DEFAULT_SENDQ // 1024} KiB, "
        f"--send-buffer {SEND_BUFFER}). {seconds:g} s.",
        highlight=False,
    )
    with contextlib.ExitStack() as stack:
        demos = [stack.enter_context(_started(impl.name)) for impl in IMPLEMENTATIONS]
        _flood(demos, seconds, console)
    return demos


@contextlib.contextmanager
def _started(impl: str) -> Iterator[Demo]:
    options = ("--send-buffer", str(SEND_BUFFER))
    with (
        ServerUnderTest.echochat(impl, "chat", *options) as server,
        contextlib.ExitStack() as sockets,
    ):
        stalled, _ = join(server.port, "stalled", stalled=True)
        sockets.callback(stalled.close)
        fast, _ = join(server.port, "fast")
        sockets.callback(fast.close)
        talker, _ = join(server.port, "talker")
        sockets.callback(talker.close)
        rss = server.rss()
        # The sockets close before the server stops (ExitStack order), so no
        # server spends its shutdown grace on a reader that does not read.
        yield Demo(server.label, server, talker, fast, stalled, rss, unread_bytes(stalled), rss=rss)


def _flood(demos: list[Demo], seconds: float, console: Console) -> None:
    selector = selectors.DefaultSelector()
    for demo in demos:
        selector.register(demo.fast, selectors.EVENT_READ, demo)
        demo.fast_bytes = 0
    start = time.monotonic()
    deadline = start + seconds
    next_refresh = start
    # Off a terminal a live table would only print at the end: the last table and
    # the verdicts are what such a reader gets.
    live = Live(table(demos, 0.0), console=console, auto_refresh=False)
    with selector, live if console.is_terminal else contextlib.nullcontext():
        while (now := time.monotonic()) < deadline:
            for demo in demos:
                _talk(demo, int((now - start) * RATE))
            for key, _ in selector.select(POLL):
                key.data.read_fast(time.monotonic() - start)
            if now >= next_refresh:
                for demo in demos:
                    demo.sample()
                live.update(table(demos, now - start), refresh=True)
                next_refresh = now + REFRESH
        for demo in demos:
            demo.sample()
        live.update(table(demos, time.monotonic() - start), refresh=True)
    if not console.is_terminal:
        console.print(table(demos, time.monotonic() - start))
    for demo in demos:
        console.print(f"{demo.label:<17} {demo.verdict()}", highlight=False)


def _talk(demo: Demo, due: int) -> None:
    """Add the lines now due (while the backlog is small) and send what the socket takes."""
    while demo.lines_posted < due and len(demo.outgoing) < TALKER_BACKLOG:
        demo.outgoing += f"PRIVMSG {CHANNEL} :{demo.lines_posted} {LINE_TEXT}\r\n".encode()
        demo.lines_posted += 1
    if demo.outgoing:
        with contextlib.suppress(BlockingIOError):
            del demo.outgoing[: demo.talker.send(demo.outgoing)]


def table(demos: list[Demo], elapsed: float) -> Table:
    grid = Table(
        title=f"the write/drain split, live: {elapsed:4.1f} s",
        caption="held: bytes the fast reader got minus bytes unread in the stalled reader's "
        "socket, i.e. what the server still holds for the stalled reader. dropped: the "
        "server closed it with 'SendQ exceeded'",
    )
    grid.add_column("implementation", no_wrap=True, min_width=16)
    for column in ["RSS MiB (growth)", "lines posted", "held for stalled", "stalled reader"]:
        grid.add_column(column, justify="right", no_wrap=True)
    for demo in demos:
        grid.add_row(
            demo.label,
            f"{demo.rss / MiB:.1f} (+{(demo.rss - demo.rss_start) / MiB:.1f})",
            f"{demo.lines_posted:,}",
            "-" if demo.dropped_at is not None else f"{demo.held / 1024:,.0f} KiB",
            "connected" if demo.dropped_at is None else f"dropped at {demo.dropped_at:.1f} s",
        )
    return grid

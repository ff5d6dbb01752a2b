"""What the implementations on asyncio share: the event loop for ``--loop``, the listening
socket, closing a stream, and the timer of the link to Redis (``--redis``).

Apart from options.py, so that only the code that runs on asyncio imports it.
"""

from __future__ import annotations

import asyncio
import math
import socket
import ssl
from collections.abc import Callable, Iterator, Sequence
from contextlib import ExitStack, contextmanager, suppress
from typing import Protocol

from echochat.core import CLOSE_GRACE
from echochat.registry import EventLoop


def asyncio_loop_factory(loop: EventLoop) -> Callable[[], asyncio.AbstractEventLoop] | None:
    """The event loop to run asyncio on: the standard one (None) or uvloop's."""
    if loop == "uvloop":
        import uvloop  # noqa: PLC0415  (an optional extra: imported only when asked for)

        return uvloop.new_event_loop
    return None


def listening_socket(host: str, port: int, backlog: int) -> socket.socket:
    """A non-blocking listening socket for ``loop.sock_accept()``.

    The asyncio adapters listen and accept themselves rather than through
    start_server() or create_server(): asyncio_impl/server.py, accept_loop, says why.
    Like create_server(), it asks getaddrinfo() for proto IPPROTO_TCP: an accepted
    socket inherits its listener's proto, and asyncio's transports set TCP_NODELAY
    only on sockets whose proto is IPPROTO_TCP (``base_events._set_nodelay``).
    socket.create_server() leaves it 0, and Nagle then held each small reply back
    until the client's delayed ACK: chat fan-out ran six times slower, p99 40 ms
    (test_framework_traps.py, test_asyncio_sets_nodelay_only_for_proto_tcp).
    """
    family, kind, proto, _, address = socket.getaddrinfo(
        host or None,
        port,
        type=socket.SOCK_STREAM,
        proto=socket.IPPROTO_TCP,
        flags=socket.AI_PASSIVE,
    )[0]
    listener = socket.socket(family, kind, proto)
    try:
        # As socket.create_server() and asyncio do on POSIX: a restarted server
        # can bind while the old one's connections are in TIME_WAIT.
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(address)
        listener.listen(backlog)
        listener.setblocking(False)
    except BaseException:
        listener.close()
        raise
    return listener


@contextmanager
def listening_sockets(
    host: str, ports: Sequence[tuple[int, ssl.SSLContext | None]], backlog: int
) -> Iterator[list[tuple[socket.socket, ssl.SSLContext | None]]]:
    """A listening socket for each port, with the TLS context it speaks (None: plain TCP)."""
    with ExitStack() as stack:
        yield [
            (stack.enter_context(listening_socket(host, port, backlog)), tls) for port, tls in ports
        ]


# Where a plain socket transport pauses writing: asyncio's default high-water
# mark (64 KiB, Lib/asyncio/transports.py, _FlowControlMixin), and uvloop's.
PLAIN_HIGH_WATER = 64 * 1024


def like_plain_tcp(transport: asyncio.WriteTransport) -> None:
    """Make a TLS transport pause writing where a plain one does, so drain() and the SendQ agree.

    asyncio's TLS transport pauses at 512 KiB of data not yet sent
    (FLOW_CONTROL_HIGH_WATER_SSL_WRITE, Lib/asyncio/constants.py; uvloop's
    is the same), eight times the plain transport's 64 KiB, and that is on
    top of the socket transport under it, which keeps its own 64 KiB. The
    low-water mark follows as a quarter of the high one, as on plain TCP.
    """
    transport.set_write_buffer_limits(high=PLAIN_HIGH_WATER)


async def close_stream(writer: asyncio.StreamWriter) -> None:
    writer.close()
    try:
        async with asyncio.timeout(CLOSE_GRACE):
            await writer.wait_closed()
    except (TimeoutError, OSError):
        # close() waits for the peer to take what is still buffered; a peer
        # that does not read is cut off instead of holding the socket open.
        writer.transport.abort()


def take_queued(first: bytes, outbox: asyncio.Queue[bytes]) -> bytes:
    """Join ``first`` with everything queued for Redis behind it: one write for many commands."""
    chunks = [first]
    while not outbox.empty():
        chunks.append(outbox.get_nowait())
    return b"".join(chunks)


class LinkClock(Protocol):
    """What the link's timer needs of the hub (a ChatHub, which this layer may not import)."""

    def link_deadline(self) -> float | None: ...

    def link_handle_timer(self) -> None: ...


class LinkAlarm:
    """The timer task's wait, which Redis's answers can move earlier."""

    def __init__(self) -> None:
        self.waiting: asyncio.Timeout | None = None

    def rearm(self, hub: LinkClock) -> None:
        # Only Redis's bytes move the link's deadline earlier (the lease's
        # first refresh, joining, a heartbeat's first beat): a client's line
        # that publishes adds a reply's timeout after the lease's next refresh.
        deadline = hub.link_deadline()
        # An expired wait, whose task has not yet resumed, calls the core
        # anyway and then waits for the deadline named then; and reschedule()
        # would raise RuntimeError on it (Lib/asyncio/timeouts.py).
        if self.waiting is None or self.waiting.expired() or deadline is None:
            return
        if deadline < (math.inf if (when := self.waiting.when()) is None else when):
            self.waiting.reschedule(deadline)


async def timer_loop(hub: LinkClock, alarm: LinkAlarm) -> str:
    """Call the core at the link's deadlines: the lease, heartbeats, silences, replies overdue."""
    never = asyncio.Event()  # Only the timeout ends the wait.
    while True:
        with suppress(TimeoutError):
            async with asyncio.timeout_at(hub.link_deadline()) as alarm.waiting:
                await never.wait()
        hub.link_handle_timer()

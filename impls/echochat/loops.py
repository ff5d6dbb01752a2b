"""The event loop an implementation on asyncio runs on, for ``--loop``, and its listening socket.

Apart from options.py, so that only the code that runs on asyncio imports it.
"""

from __future__ import annotations

import asyncio
import socket
import ssl
from collections.abc import Callable, Iterator, Sequence
from contextlib import ExitStack, contextmanager

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
    """
    listener = socket.create_server((host, port), backlog=backlog)
    listener.setblocking(False)
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

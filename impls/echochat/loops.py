"""The event loop an implementation on asyncio runs on, for ``--loop``, and its listening socket.

Apart from options.py, so that only the code that runs on asyncio imports it.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Callable

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

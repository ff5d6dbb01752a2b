"""The echo service on asyncio's socket API."""

from __future__ import annotations

import asyncio
import logging
import socket

from echochat.core import READ_SIZE, EchoCore
from echochat.options import ServerOptions

log = logging.getLogger(__name__)


class EchoService:
    def __init__(self, options: ServerOptions) -> None:
        self.core = EchoCore(options.limits)
        self.connections: set[asyncio.Task[None]] = set()

    async def handle_client(self, sock: socket.socket) -> None:
        if not self.core.connect():
            return
        task = asyncio.current_task()
        assert task is not None  # handle_connection runs it in a task of its own.
        self.connections.add(task)
        try:
            await echo_loop(sock)
        finally:
            self.connections.discard(task)
            self.core.connection_lost()

    def shutdown(self) -> None:
        self.core.shutdown()
        for task in self.connections:
            # Nothing else to stop: a cancelled sock_sendall() leaves no
            # buffer behind, and the socket closes as the task ends.
            task.cancel()


async def echo_loop(sock: socket.socket) -> None:
    loop = asyncio.get_running_loop()
    buffer = bytearray(READ_SIZE)
    view = memoryview(buffer)
    try:
        while count := await loop.sock_recv_into(sock, buffer):
            # sock_sendall returns only once the kernel holds every byte, so
            # while the client does not read we do not read either:
            # backpressure with no user-space buffer beyond this one chunk.
            await loop.sock_sendall(sock, view[:count])
            # On asyncio's loop both calls return without suspending when the
            # socket is ready (selector_events.py tries recv_into() and send()
            # first), so a client that keeps both busy would hold the loop:
            # the fairness experiment measured other clients' pings at 437 ms
            # p99. Yield once per chunk, as trio's calls always checkpoint.
            await asyncio.sleep(0)
    except OSError as error:  # A reset, or a timeout from the kernel.
        log.debug("echo connection failed: %r", error)

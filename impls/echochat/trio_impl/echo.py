"""The echo service on trio."""

from __future__ import annotations

import logging

import trio

from echochat.core import READ_SIZE, EchoCore
from echochat.options import ServerOptions

log = logging.getLogger(__name__)


class EchoService:
    def __init__(self, options: ServerOptions) -> None:
        self.core = EchoCore(options.limits)
        self.connections: set[trio.CancelScope] = set()

    async def handle_client(self, stream: trio.abc.Stream) -> None:
        if not self.core.connect():
            return
        with trio.CancelScope() as scope:
            self.connections.add(scope)
            try:
                await echo_loop(stream)
            finally:
                self.connections.discard(scope)
                self.core.connection_lost()

    def shutdown(self) -> None:
        self.core.shutdown()
        for scope in self.connections:
            scope.cancel()


async def echo_loop(stream: trio.abc.Stream) -> None:
    try:
        while chunk := await stream.receive_some(READ_SIZE):
            # send_all returns only once the kernel holds every byte, so while
            # the client does not read we do not read either: backpressure
            # with no user-space buffer beyond this one chunk.
            await stream.send_all(chunk)
    except trio.BrokenResourceError:
        log.debug("echo connection reset by peer")

"""The echo service on anyio."""

from __future__ import annotations

import logging
import ssl

import anyio
from anyio.abc import ByteStream

from echochat.core import READ_SIZE, EchoCore
from echochat.options import ServerOptions

log = logging.getLogger(__name__)


class EchoService:
    def __init__(self, options: ServerOptions) -> None:
        self.core = EchoCore(options.limits)
        self.connections: set[anyio.CancelScope] = set()

    async def handle_client(self, stream: ByteStream) -> None:
        if not self.core.connect():
            return
        with anyio.CancelScope() as scope:
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


async def echo_loop(stream: ByteStream) -> None:
    try:
        while True:
            chunk = await stream.receive(READ_SIZE)
            # send() returns once the bytes have left (on asyncio, anyio sets
            # the write buffer limit to 0 and waits for it to empty), so while
            # the client does not read we do not read either.
            await stream.send(chunk)
    except anyio.EndOfStream:
        pass
    except anyio.BrokenResourceError:
        log.debug("echo connection reset by peer")
    except ssl.SSLError as error:  # Let through by a TLSStream: say a record that does not decrypt.
        log.debug("echo connection failed: %r", error)

"""The echo service on asyncio Streams."""

from __future__ import annotations

import asyncio
import logging

from echochat.core import READ_SIZE, EchoCore
from echochat.options import ServerOptions

log = logging.getLogger(__name__)


class EchoService:
    def __init__(self, options: ServerOptions) -> None:
        self.core = EchoCore(options.limits)
        self.drain = options.drain
        self.connections: set[asyncio.StreamWriter] = set()

    async def handle_client(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        if not self.core.connect():
            return
        self.connections.add(writer)
        try:
            await echo_loop(reader, writer, self.drain)
        finally:
            self.connections.discard(writer)
            self.core.connection_lost()

    def shutdown(self) -> None:
        self.core.shutdown()
        for writer in self.connections:
            # abort(), not close(): close() would wait for a client that does
            # not read to take the buffered bytes. The handler then sees EOF.
            writer.transport.abort()


async def echo_loop(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, drain: bool
) -> None:
    try:
        while chunk := await reader.read(READ_SIZE):
            if writer.is_closing():
                break  # Aborted at shutdown: uvloop's write() would raise.
            writer.write(chunk)  # Never blocks: what the socket does not take is buffered.
            # Without drain() that buffer grows as fast as the client sends
            # (the asyncio-nodrain teaching variant shows it). Once it passes
            # the high-water mark (64 KiB), drain() waits until it is at or
            # below the low-water mark (16 KiB; 16 bytes on uvloop), so we stop
            # reading and the StreamReader pauses the socket.
            if drain:
                await writer.drain()
    except OSError as error:  # A reset, or a timeout from the kernel.
        log.debug("echo connection failed: %r", error)

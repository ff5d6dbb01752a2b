"""The echo service on asyncio Transports and Protocols (a teaching variant): no tasks."""

from __future__ import annotations

import asyncio
import logging
from typing import cast

from echochat.core import CLOSE_GRACE, EchoCore
from echochat.options import ServerOptions

log = logging.getLogger(__name__)


class EchoService:
    def __init__(self, options: ServerOptions) -> None:
        self.core = EchoCore(options.limits)
        self.connections: set[EchoConnection] = set()

    def protocol_factory(self) -> EchoConnection:
        """The loop calls this for each accepted socket, then the connection's callbacks."""
        return EchoConnection(self)

    def shutdown(self) -> None:
        self.core.shutdown()
        for connection in self.connections:
            # abort(), not close(): close() would wait for a client that does
            # not read to take the buffered bytes. connection_lost() follows.
            connection.transport.abort()


class EchoConnection(asyncio.Protocol):
    """One client. The loop calls these methods, and none of them may wait."""

    transport: asyncio.Transport

    def __init__(self, service: EchoService) -> None:
        self.service = service
        self.admitted = False
        self.abort_later: asyncio.TimerHandle | None = None
        self.closed: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # A cast, not an isinstance check: uvloop's transports do not derive
        # from asyncio.Transport, though they offer the same methods.
        self.transport = cast(asyncio.Transport, transport)
        self.service.connections.add(self)
        self.admitted = self.service.core.connect()
        if not self.admitted:
            self.transport.close()

    def data_received(self, data: bytes) -> None:
        # Never blocks: what the socket does not take is buffered, and once
        # that buffer passes its high-water mark (64 KiB) the transport calls
        # pause_writing(), from inside this write().
        self.transport.write(data)

    def pause_writing(self) -> None:
        # The client is not reading what we echo, so stop reading what it
        # sends. Without this the write buffer grows as fast as it sends
        # (what drain() does for Streams, turned around by hand).
        self.transport.pause_reading()

    def resume_writing(self) -> None:
        # The buffer is at or below its low-water mark (16 KiB; 16 bytes on uvloop).
        self.transport.resume_reading()

    def eof_received(self) -> bool:
        # Half-closed. False makes the transport close() itself, which sends
        # what it still holds first; a client that never reads it is cut off.
        loop = asyncio.get_running_loop()
        self.abort_later = loop.call_later(CLOSE_GRACE, self.transport.abort)
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        if exc is not None:
            log.debug("echo connection lost: %r", exc)
        if self.abort_later is not None:
            # Needed: on 3.11, abort() on a transport that closed by itself
            # raises in a callback (the transport has dropped its loop).
            self.abort_later.cancel()
        self.service.connections.discard(self)
        if self.admitted:
            self.service.core.connection_lost()
        self.closed.set_result(None)

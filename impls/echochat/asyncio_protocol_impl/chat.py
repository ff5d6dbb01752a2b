"""The chat service on asyncio Transports and Protocols (a teaching variant): no tasks at all."""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from typing import cast

from echochat.core import CLOSE_GRACE, ConnId
from echochat.hub import ChatHub
from echochat.options import ServerOptions, set_send_buffer

log = logging.getLogger(__name__)


class ChatService:
    def __init__(self, options: ServerOptions) -> None:
        self.hub = ChatHub(options, clock=asyncio.get_running_loop().time)
        self.send_buffer = options.send_buffer
        self.connections: set[ChatConnection] = set()

    def protocol_factory(self) -> ChatConnection:
        """The loop calls this for each accepted socket, then the connection's callbacks."""
        return ChatConnection(self)

    def shutdown(self) -> None:
        self.hub.shutdown()


class ChatConnection(asyncio.Protocol):
    """One client as the hub sees it (a Peer) and as the loop sees it (a Protocol).

    Where the Streams adapter has a reader task, the loop calls
    ``data_received``; where it has a writer task waiting in ``drain()``,
    ``deliver`` writes at once and the transport's ``pause_writing()`` and
    ``resume_writing()`` say when to hold lines back instead.
    """

    transport: asyncio.Transport

    def __init__(self, service: ChatService) -> None:
        self.service = service
        self.hub = service.hub
        self.conn: ConnId = 0
        # Lines held back while the transport has paused writing. The queue
        # is bounded in bytes by the core's SendQ accounting; a bound in
        # items on top would only be a second, arbitrary limit.
        self.pending: deque[bytes] = deque()
        self.writing_paused = False
        # Set while the core's bounded turns run this connection's lines.
        self.reading_paused = False
        # Bytes of the write that crossed the high-water mark: still counted
        # in the SendQ until resume_writing(), as the Streams adapter counts
        # a chunk until drain() returns.
        self.unreported = 0
        self.abort_later: asyncio.TimerHandle | None = None
        # Calls handle_timer() at the core's next deadline for this client.
        self.alarm: asyncio.TimerHandle | None = None
        self.closed: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    def deliver(self, data: bytes) -> None:
        if self.transport.is_closing():
            # Lost; connection_lost() is on its way. Writing would only be
            # counted, then logged ("socket.send() raised exception."), and
            # the bytes must not fill the SendQ of a dead client.
            self.hub.data_sent(self.conn, len(data))
        elif self.writing_paused:
            self.pending.append(data)  # Never waits for the client.
        else:
            self.write(data)

    def close(self, farewell: bytes, flush: bool) -> None:
        if self.transport.is_closing():
            return  # Lost already: nothing can be sent.
        if flush:
            self.pending.append(farewell)
            self.transport.write(take_pending(self.pending))
        else:
            # Closed for SendQ: drop the queue. The transport holds whole
            # chunks, so unlike trio's send_all no line was cut: the
            # farewell can always follow, without waiting.
            self.pending.clear()
            self.transport.write(farewell)
        # close() stops reading and closes once the buffer has been sent; a
        # client that does not read would hold it open, so cut it off.
        self.transport.close()
        loop = asyncio.get_running_loop()
        self.abort_later = loop.call_later(CLOSE_GRACE, self.transport.abort)

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # A cast, not an isinstance check: uvloop's transports do not derive
        # from asyncio.Transport, though they offer the same methods.
        self.transport = cast(asyncio.Transport, transport)
        self.service.connections.add(self)
        address = transport.get_extra_info("peername")
        if address is None:
            self.transport.close()  # Gone before we got to it.
            return
        set_send_buffer(transport.get_extra_info("socket"), self.service.send_buffer)
        self.conn = self.hub.connect(self, address[0])
        self.set_alarm()

    def data_received(self, data: bytes) -> None:
        # Whatever one recv() returned (the transport picks the size: 256 KiB
        # on the standard loop, not READ_SIZE), never lines; the core frames.
        try:
            self.hub.receive_data(self.conn, data)
        except Exception:
            # The loop would log it as a fatal protocol error and close the
            # transport; say which connection, and close it the same way.
            log.exception("connection %d failed", self.conn)
            self.transport.abort()
            return
        self.run_later()

    def run_later(self) -> None:
        """Let the loop run between the core's bounded turns of work on our lines.

        The core stops after a bounded turn; the rest runs in a later callback,
        after the loop has written what this turn queued, and no more is read
        meanwhile: data_received() gets whatever one recv() returned (256 KiB
        on the standard loop) and has no await at which to yield.
        """
        if self.hub.has_ready_lines(self.conn) and not self.transport.is_closing():
            if not self.reading_paused:
                self.reading_paused = True
                self.transport.pause_reading()
            asyncio.get_running_loop().call_soon(self.run_ready)
            return
        if self.reading_paused and not self.transport.is_closing():
            self.reading_paused = False
            self.transport.resume_reading()
        self.set_alarm()

    def run_ready(self) -> None:
        if not self.transport.is_closing():
            self.hub.handle_timer(self.conn)
            self.run_later()

    def set_alarm(self) -> None:
        """Make sure a timer fires by the core's next deadline for this client.

        An earlier timer is kept: firing early is harmless (the core just
        names a later deadline), while moving a timer on every line would
        cost a cancel and a heap push each time.
        """
        deadline = self.hub.deadline(self.conn)
        if deadline is None or (self.alarm is not None and self.alarm.when() <= deadline):
            return
        if self.alarm is not None:
            self.alarm.cancel()
        self.alarm = asyncio.get_running_loop().call_at(deadline, self.ring)

    def ring(self) -> None:
        self.alarm = None
        self.hub.handle_timer(self.conn)
        self.run_later()

    def eof_received(self) -> None:
        # The core closes us with a flush (or already did). Returning None
        # lets the transport close too, which is then a no-op.
        self.hub.connection_lost(self.conn)

    def pause_writing(self) -> None:
        # Called from inside transport.write() once its buffer passes the
        # high-water mark (64 KiB): hold lines back from now on.
        self.writing_paused = True

    def resume_writing(self) -> None:
        # The buffer is at or below its low-water mark (16 KiB; 16 bytes on uvloop).
        self.writing_paused = False
        self.hub.data_sent(self.conn, self.unreported)
        self.unreported = 0
        if self.pending:
            self.write(take_pending(self.pending))

    def connection_lost(self, exc: Exception | None) -> None:
        if exc is not None:
            log.debug("connection %d lost: %r", self.conn, exc)
        if self.abort_later is not None:
            # Needed: on 3.11, abort() on a transport that closed by itself
            # raises in a callback (the transport has dropped its loop).
            self.abort_later.cancel()
        if self.alarm is not None:
            self.alarm.cancel()
        self.service.connections.discard(self)
        self.hub.connection_lost(self.conn)  # A no-op if the core closed it already.
        self.closed.set_result(None)

    def write(self, chunk: bytes) -> None:
        self.transport.write(chunk)  # Never blocks: what the socket does not take is buffered.
        if self.writing_paused:
            self.unreported = len(chunk)  # This write paused writing.
        else:
            self.hub.data_sent(self.conn, len(chunk))


def take_pending(pending: deque[bytes]) -> bytes:
    """Join everything held back: one write for many lines."""
    chunk = b"".join(pending)
    pending.clear()
    return chunk

"""The chat service on asyncio Streams: a reader task and a writer task per client."""

from __future__ import annotations

import asyncio
import logging

from echochat.core import CLOSE_GRACE, READ_SIZE, ConnId
from echochat.hub import ChatHub
from echochat.options import ServerOptions, set_send_buffer

log = logging.getLogger(__name__)


class ChatService:
    def __init__(self, options: ServerOptions, drain: bool) -> None:
        self.hub = ChatHub(options, clock=asyncio.get_running_loop().time)
        self.send_buffer = options.send_buffer
        self.drain = drain

    async def handle_client(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        peer = writer.get_extra_info("peername")
        if peer is None:
            return  # Gone before we got to it.
        set_send_buffer(writer.get_extra_info("socket"), self.send_buffer)
        connection = ChatConnection(writer, self.drain)
        try:
            async with asyncio.TaskGroup() as tasks:
                connection.reading = tasks.create_task(read_loop(reader, connection, self.hub))
                connection.writing = tasks.create_task(write_loop(connection, self.hub))
                connection.conn = self.hub.attach(connection, peer[0])
            if connection.abandon is not None:
                connection.abandon.cancel()  # Flushed in time.
        finally:
            # If a task failed, the core must still forget the client (else a no-op).
            self.hub.lost(connection.conn)

    def shutdown(self) -> None:
        self.hub.shutdown()


class ChatConnection:
    """One client as the hub sees it: an outbound queue, and its two tasks to stop."""

    reading: asyncio.Task[None]
    writing: asyncio.Task[None]

    def __init__(self, writer: asyncio.StreamWriter, drain: bool) -> None:
        self.writer = writer
        self.drain = drain  # False only in the asyncio-nodrain teaching variant.
        self.conn: ConnId = 0
        # The queue is bounded in bytes by the core's SendQ accounting; a
        # bound in items on top would only be a second, arbitrary limit.
        # None marks its end (Queue.shutdown() needs Python 3.13).
        self.outbox: asyncio.Queue[bytes | None] = asyncio.Queue()
        self.abandon: asyncio.TimerHandle | None = None

    def deliver(self, data: bytes) -> None:
        self.outbox.put_nowait(data)  # Never waits for the client.

    def close(self, farewell: bytes, flush: bool) -> None:
        self.reading.cancel()
        if flush:
            if farewell:
                self.outbox.put_nowait(farewell)
            self.outbox.put_nowait(None)  # The writer stops once the queue is empty.
            # A peer that does not take it all in time is cut off; abort()
            # also ends a drain() that is waiting for it.
            self.abandon = asyncio.get_running_loop().call_later(
                CLOSE_GRACE, self.writer.transport.abort
            )
        else:
            self.writing.cancel()
            # Closed for SendQ. write() hands whole chunks to the transport and
            # a cancelled drain() takes none back, so unlike trio's send_all no
            # line is ever cut: the farewell can always follow, without waiting.
            if not self.writer.is_closing():
                self.writer.write(farewell)


async def read_loop(reader: asyncio.StreamReader, connection: ChatConnection, hub: ChatHub) -> None:
    try:
        # read(), not readline(): on an over-long line readline() clears its
        # buffer and returns the tail as a new line; the core frames instead.
        while True:
            # Wait for input only until the core's next deadline for this
            # client: registration, keepalive, or lines held by flood control.
            try:
                async with asyncio.timeout_at(hub.deadline(connection.conn)) as waiting:
                    data = await reader.read(READ_SIZE)
            except TimeoutError:
                if not waiting.expired():
                    raise  # ETIMEDOUT from the kernel (TimeoutError is an OSError).
                hub.expire(connection.conn)  # A cancelled read() took no bytes.
                continue
            if not data:
                break
            hub.receive(connection.conn, data)
    except OSError as error:  # A reset, or a timeout from the kernel.
        log.debug("connection %d failed: %r", connection.conn, error)
    hub.lost(connection.conn)


async def write_loop(connection: ChatConnection, hub: ChatHub) -> None:
    writer = connection.writer
    try:
        while (first := await connection.outbox.get()) is not None:
            if writer.is_closing():
                # Reset, or cut off: asyncio would drop the bytes (and log
                # from the 5th write on), uvloop would raise RuntimeError.
                break
            chunk = take_pending(first, connection.outbox)
            writer.write(chunk)  # Never blocks: what the socket does not take is buffered.
            # Waits only once that buffer has passed its high-water mark
            # (64 KiB), until it is below the low-water mark (16 KiB); it is
            # also where a reset surfaces. Only this task
            # waits, because every broadcast just queued and moved on.
            # Without it the SendQ empties at once and the transport's
            # buffer grows instead (the asyncio-nodrain teaching variant).
            if connection.drain:
                await writer.drain()
            hub.sent(connection.conn, len(chunk))
    except OSError:
        pass  # Reset: the reader sees it too.
    hub.lost(connection.conn)


def take_pending(first: bytes, outbox: asyncio.Queue[bytes | None]) -> bytes:
    """Join ``first`` with everything already queued behind it: one write for many lines."""
    chunks = [first]
    while not outbox.empty():
        chunk = outbox.get_nowait()
        if chunk is None:
            outbox.put_nowait(None)  # The end mark is always last: leave it for the loop.
            break
        chunks.append(chunk)
    return b"".join(chunks)

"""The chat service on asyncio Streams: a reader task and a writer task per client."""

from __future__ import annotations

import asyncio
import logging

from echochat.core import CLOSE_GRACE, READ_SIZE, ConnId
from echochat.hub import ChatHub
from echochat.options import ServerOptions, set_send_buffer

log = logging.getLogger(__name__)


class ChatService:
    def __init__(self, options: ServerOptions) -> None:
        self.hub = ChatHub(options, clock=asyncio.get_running_loop().time)
        self.send_buffer = options.send_buffer

    async def handle_client(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        address = writer.get_extra_info("peername")
        if address is None:
            return  # Gone before we got to it.
        host = address[0]
        set_send_buffer(writer.get_extra_info("socket"), self.send_buffer)
        connection = ChatConnection(reader, writer)
        try:
            async with asyncio.TaskGroup() as tasks:
                connection.reading = tasks.create_task(read_loop(connection, self.hub))
                connection.writing = tasks.create_task(write_loop(connection, self.hub))
                # close() stops the tasks by cancelling them, so they must exist
                # before the hub may close the client at once (Server is full).
                connection.conn = self.hub.connect(connection, host)
            if connection.abandon is not None:
                connection.abandon.cancel()  # Flushed in time.
        finally:
            # If a task failed, the core must still forget the client (else a no-op).
            self.hub.connection_lost(connection.conn)

    def shutdown(self) -> None:
        self.hub.shutdown()


class ChatConnection:
    """One client as the hub sees it: an outbound queue, and its two tasks to stop."""

    reading: asyncio.Task[None]
    writing: asyncio.Task[None]

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer
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
        self.outbox.put_nowait(None)  # The writer stops once the queue is empty.


async def read_loop(connection: ChatConnection, hub: ChatHub) -> None:
    try:
        # read(), not readline(): on an over-long line readline() clears its
        # buffer and can return the tail as a new line; the core frames instead.
        while True:
            # Wait for input only until the core's next deadline for this
            # client: registration, keepalive, or lines held by flood control.
            try:
                async with asyncio.timeout_at(hub.deadline(connection.conn)) as waiting:
                    data = await connection.reader.read(READ_SIZE)
            except TimeoutError:
                if not waiting.expired():
                    raise  # ETIMEDOUT from the kernel (TimeoutError is an OSError).
            if waiting.expired():
                hub.handle_timer(connection.conn)  # A cancelled read() took no bytes.
            elif data:
                hub.receive_data(connection.conn, data)
            else:
                break  # EOF
            # The core stops after a bounded turn of work. read() returns
            # buffered bytes without yielding to the loop, so yield here: the
            # writers hand what this turn queued to the kernel before more is.
            while hub.has_ready_lines(connection.conn):
                await asyncio.sleep(0)
                hub.handle_timer(connection.conn)
    except OSError as error:  # A reset, or a timeout from the kernel.
        log.debug("connection %d failed: %r", connection.conn, error)
    hub.connection_lost(connection.conn)


async def write_loop(connection: ChatConnection, hub: ChatHub) -> None:
    writer = connection.writer
    # Bytes in the transport's buffer, still counted in the SendQ: with
    # drain() the SendQ is the outbox plus that buffer, what the kernel has
    # not taken yet.
    buffered = 0
    try:
        while (first := await connection.outbox.get()) is not None:
            if writer.is_closing():
                # Reset, or cut off: asyncio would drop the bytes (and log the
                # later writes), uvloop would raise RuntimeError.
                break
            chunk = take_pending(first, connection.outbox)
            writer.write(chunk)  # Never blocks: what the socket does not take is buffered.
            # Waits only once that buffer has passed its high-water mark
            # (64 KiB), until it is at or below the low-water mark (16 KiB on
            # asyncio's own loop, 16 bytes on uvloop); it is also where a reset
            # surfaces. Only this task waits, because every broadcast just
            # queued and moved on. Without it the SendQ empties at once and the
            # transport's buffer grows instead: the asyncio-nodrain teaching
            # variant, the only one with options.drain False.
            if hub.options.drain:
                # What the kernel took at once leaves the SendQ now, the rest
                # as the buffer drains.
                buffered = report_taken(hub, connection, buffered + len(chunk))
                await writer.drain()
                buffered = report_taken(hub, connection, buffered)
            else:
                hub.data_sent(connection.conn, len(chunk))
    except OSError as error:
        log.debug("connection %d failed: %r", connection.conn, error)
    # The reader sees a reset too; whoever is first tells the core (the other is a no-op).
    hub.connection_lost(connection.conn)


def report_taken(hub: ChatHub, connection: ChatConnection, counted: int) -> int:
    """Report as sent the part of ``counted`` bytes no longer in the transport's buffer;
    return what is left there."""
    left = connection.writer.transport.get_write_buffer_size()
    hub.data_sent(connection.conn, counted - left)
    return left


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

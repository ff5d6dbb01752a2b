"""The chat service on trio: a reader task and a writer task per client."""

from __future__ import annotations

import logging
import math
from contextlib import suppress

import trio

from echochat.core import CLOSE_GRACE, READ_SIZE, SEND_PIECE, ConnId
from echochat.hub import ChatHub
from echochat.options import ServerOptions, set_send_buffer

log = logging.getLogger(__name__)


class ChatService:
    def __init__(self, options: ServerOptions) -> None:
        self.hub = ChatHub(options, clock=trio.current_time)
        self.send_buffer = options.send_buffer

    async def handle_client(self, stream: trio.abc.Stream) -> None:
        try:
            host = tcp_socket(stream).getpeername()[0]
            set_send_buffer(tcp_socket(stream), self.send_buffer)
        except OSError:
            return  # Gone before we got to it.
        connection = ChatConnection(stream)
        try:
            async with trio.open_nursery() as tasks:
                tasks.start_soon(read_loop, connection, self.hub)
                tasks.start_soon(write_loop, connection, self.hub)
                # The cancel scopes that close() uses exist from ChatConnection's
                # __init__, so the hub may close the client at once (Server is full).
                connection.conn = self.hub.connect(connection, host)
        finally:
            # If a task failed, the core must still forget the client (else a no-op).
            self.hub.connection_lost(connection.conn)

    def shutdown(self) -> None:
        self.hub.shutdown()


def tcp_socket(stream: trio.abc.Stream) -> trio.socket.SocketType:
    """The TCP socket under a connection, plain or TLS: an SSLStream has no ``socket``."""
    if isinstance(stream, trio.SSLStream):
        stream = stream.transport_stream
    assert isinstance(stream, trio.SocketStream)  # What the listeners accept.
    return stream.socket


class ChatConnection:
    """One client as the hub sees it: an outbound queue, and scopes to stop its tasks."""

    def __init__(self, stream: trio.abc.Stream) -> None:
        self.stream = stream
        self.conn: ConnId = 0
        # The queue is bounded in bytes by the core's SendQ accounting; a
        # bound in items on top would only be a second, arbitrary limit.
        self.outbox, self.outbox_reader = trio.open_memory_channel[bytes](math.inf)
        self.reading = trio.CancelScope()
        self.writing = trio.CancelScope()
        self.farewell = b""

    def deliver(self, data: bytes) -> None:
        self.outbox.send_nowait(data)  # Never waits for the client.

    def close(self, farewell: bytes, flush: bool) -> None:
        self.reading.cancel()
        if flush:
            if farewell:
                self.outbox.send_nowait(farewell)
            self.writing.deadline = trio.current_time() + CLOSE_GRACE
        else:
            self.farewell = farewell
            self.writing.cancel()
        self.outbox.close()  # The writer stops once the queue is empty.


async def read_loop(connection: ChatConnection, hub: ChatHub) -> None:
    with connection.reading:
        try:
            while True:
                # Wait for input only until the core's next deadline for this
                # client: registration, keepalive, or lines held by flood control.
                deadline = hub.deadline(connection.conn)
                with trio.move_on_at(math.inf if deadline is None else deadline) as waiting:
                    # bytes(): a Stream's is typed bytes | bytearray, but plain
                    # and TLS streams return bytes, which it returns as they are.
                    data = bytes(await connection.stream.receive_some(READ_SIZE))
                if waiting.cancelled_caught:
                    hub.handle_timer(connection.conn)  # A cancelled receive_some() took no bytes.
                elif data:
                    hub.receive_data(connection.conn, data)
                else:
                    break  # EOF
                # The core stops after a bounded turn of work: let the writers
                # hand what this turn queued to the kernel before more is.
                while hub.has_ready_lines(connection.conn):
                    await trio.lowlevel.checkpoint()
                    hub.handle_timer(connection.conn)
        except trio.BrokenResourceError as error:
            log.debug("connection %d failed: %r", connection.conn, error)
        hub.connection_lost(connection.conn)


async def write_loop(connection: ChatConnection, hub: ChatHub) -> None:
    sending = False
    # Closing the receiving end too: anyio warns about memory streams left open.
    with connection.writing, connection.outbox_reader:
        try:
            async for first in connection.outbox_reader:
                chunk = take_pending(first, connection.outbox_reader)
                # A close() for SendQ may have cancelled us since the queue
                # handed us this chunk: notice it before a byte goes out.
                await trio.lowlevel.checkpoint_if_cancelled()
                sending = True
                # Blocks while the client's socket buffer is full; only this
                # task waits, because every broadcast just queued and moved on.
                # It says nothing until the kernel holds every byte, so send in
                # pieces and report each: the SendQ then counts only what the
                # client has not taken, and at most one piece the kernel has.
                for start in range(0, len(chunk), SEND_PIECE):
                    piece = chunk[start : start + SEND_PIECE]
                    await connection.stream.send_all(piece)
                    hub.data_sent(connection.conn, len(piece))
                sending = False
        except trio.BrokenResourceError as error:
            log.debug("connection %d failed: %r", connection.conn, error)
    # The reader sees a reset too; whoever is first tells the core (the other is a no-op).
    hub.connection_lost(connection.conn)
    # Closed for SendQ: a send_all cut off by the cancel may have sent some,
    # all or none of the chunk (its docstring; trio#889). trio does not mark
    # the stream broken, but the client may hold half a line, so we treat it
    # as broken: the farewell goes out only if nothing was in flight.
    if connection.farewell and not sending:
        with trio.move_on_after(CLOSE_GRACE), suppress(trio.BrokenResourceError):
            await connection.stream.send_all(connection.farewell)


def take_pending(first: bytes, outbox_reader: trio.MemoryReceiveChannel[bytes]) -> bytes:
    """Join ``first`` with everything already queued behind it: one send for many lines."""
    chunks = [first]
    while True:
        try:
            chunks.append(outbox_reader.receive_nowait())
        except (trio.WouldBlock, trio.EndOfChannel):
            return b"".join(chunks)

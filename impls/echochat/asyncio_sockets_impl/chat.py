"""The chat service on asyncio's socket API: a reader task and a writer task per client."""

from __future__ import annotations

import asyncio
import logging
import socket
from contextlib import suppress

from echochat.core import CLOSE_GRACE, READ_SIZE, SEND_PIECE, ConnId
from echochat.hub import ChatHub
from echochat.options import ServerOptions, set_send_buffer

log = logging.getLogger(__name__)


class ChatService:
    def __init__(self, options: ServerOptions) -> None:
        self.hub = ChatHub(options, clock=asyncio.get_running_loop().time)
        self.send_buffer = options.send_buffer

    async def handle_client(self, sock: socket.socket) -> None:
        try:
            host = sock.getpeername()[0]
            set_send_buffer(sock, self.send_buffer)
        except OSError:
            return  # Gone before we got to it.
        connection = ChatConnection(sock)
        try:
            async with asyncio.TaskGroup() as tasks:
                connection.reading = tasks.create_task(read_loop(connection, self.hub))
                connection.writing = tasks.create_task(write_loop(connection, self.hub))
                # close() stops the tasks by cancelling them, so they must exist
                # before the hub may close the client at once (Server is full).
                connection.conn = self.hub.connect(connection, host)
                connection.set_alarm(self.hub)
            if connection.abandon is not None:
                connection.abandon.cancel()  # Flushed in time.
            # Closed for SendQ: a sock_sendall() cut off by the cancel may have
            # sent some, all or none of its chunk, as trio's send_all may
            # (the experiment `cancel` shows it); the client may hold half a
            # line, so the farewell goes out only if nothing was in flight.
            if connection.farewell and not connection.sending:
                with suppress(TimeoutError, OSError):
                    async with asyncio.timeout(CLOSE_GRACE):
                        await asyncio.get_running_loop().sock_sendall(sock, connection.farewell)
        finally:
            connection.stop_alarm()
            # If a task failed, the core must still forget the client (else a no-op).
            self.hub.connection_lost(connection.conn)

    def shutdown(self) -> None:
        self.hub.shutdown()


class ChatConnection:
    """One client as the hub sees it: an outbound queue, its two tasks to stop, and a timer."""

    reading: asyncio.Task[None]
    writing: asyncio.Task[None]

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.conn: ConnId = 0
        # The queue is bounded in bytes by the core's SendQ accounting; a
        # bound in items on top would only be a second, arbitrary limit.
        # None marks its end (Queue.shutdown() needs Python 3.13).
        self.outbox: asyncio.Queue[bytes | None] = asyncio.Queue()
        self.abandon: asyncio.TimerHandle | None = None
        self.farewell = b""
        self.sending = False  # A sock_sendall() is under way.
        # Calls handle_timer() at the core's next deadline for this client.
        self.alarm: asyncio.TimerHandle | None = None

    def deliver(self, data: bytes) -> None:
        self.outbox.put_nowait(data)  # Never waits for the client.

    def close(self, farewell: bytes, flush: bool) -> None:
        self.reading.cancel()
        self.stop_alarm()
        if flush:
            if farewell:
                self.outbox.put_nowait(farewell)
            # There is no transport to abort(): a peer that does not take
            # its last lines in time is cut off by cancelling the writer.
            self.abandon = asyncio.get_running_loop().call_later(CLOSE_GRACE, self.writing.cancel)
        else:
            # Closed for SendQ: handle_client sends the farewell once the
            # writer has stopped, if it did not stop mid-chunk.
            self.farewell = farewell
            self.writing.cancel()
        self.outbox.put_nowait(None)  # The writer stops once the queue is empty.

    def set_alarm(self, hub: ChatHub) -> None:
        """Make sure a timer fires by the core's next deadline for this client.

        A timer, not a timeout around the read as the Streams adapter has: a
        sock_recv_into() cancelled after its recv() ran loses those bytes
        (test_framework_traps.py shows it). An earlier timer is kept: firing
        early is harmless (the core just names a later deadline).
        """
        deadline = hub.deadline(self.conn)
        if deadline is None or (self.alarm is not None and self.alarm.when() <= deadline):
            return
        self.stop_alarm()
        self.alarm = asyncio.get_running_loop().call_at(deadline, self.ring, hub)

    def ring(self, hub: ChatHub) -> None:
        self.alarm = None
        hub.handle_timer(self.conn)
        self.set_alarm(hub)  # A no-op if the core closed us: it names no deadline then.

    def stop_alarm(self) -> None:
        if self.alarm is not None:
            self.alarm.cancel()
            self.alarm = None


async def read_loop(connection: ChatConnection, hub: ChatHub) -> None:
    loop = asyncio.get_running_loop()
    # One buffer for the connection's life: recv_into() fills it in place,
    # and the core gets a copy of what arrived, since it may keep a partial line.
    buffer = bytearray(READ_SIZE)
    try:
        # Not under a timeout: the alarm (set_alarm) brings the core's deadlines.
        while count := await loop.sock_recv_into(connection.sock, buffer):
            hub.receive_data(connection.conn, bytes(buffer[:count]))
            # The core stops after a bounded turn of work. On asyncio's loop
            # sock_recv_into() returns waiting bytes without yielding, so
            # yield here: the writers hand what this turn queued to the kernel
            # before more is.
            while hub.has_ready_lines(connection.conn):
                await asyncio.sleep(0)
                hub.handle_timer(connection.conn)
            connection.set_alarm(hub)
            # And yield once per read in any case: a client that keeps sending
            # always has bytes waiting, and this loop would never give the
            # other connections a turn (trio's receive_some() always does).
            await asyncio.sleep(0)
    except OSError as error:  # A reset, or a timeout from the kernel.
        log.debug("connection %d failed: %r", connection.conn, error)
    hub.connection_lost(connection.conn)  # EOF, or the error above.


async def write_loop(connection: ChatConnection, hub: ChatHub) -> None:
    loop = asyncio.get_running_loop()
    try:
        while (first := await connection.outbox.get()) is not None:
            chunk = take_pending(first, connection.outbox)
            connection.sending = True
            # Returns once the kernel holds every byte, like trio's send_all():
            # there is no user-space buffer and no write()/drain() split. Only
            # this task waits, because every broadcast just queued and moved on.
            # It says nothing until then, so send in pieces and report each:
            # the SendQ then counts only what the client has not taken.
            for start in range(0, len(chunk), SEND_PIECE):
                piece = chunk[start : start + SEND_PIECE]
                await loop.sock_sendall(connection.sock, piece)
                hub.data_sent(connection.conn, len(piece))
            connection.sending = False
    except OSError as error:
        log.debug("connection %d failed: %r", connection.conn, error)
    # The reader sees a reset too; whoever is first tells the core (the other is a no-op).
    hub.connection_lost(connection.conn)


def take_pending(first: bytes, outbox: asyncio.Queue[bytes | None]) -> bytes:
    """Join ``first`` with everything already queued behind it: one send for many lines."""
    chunks = [first]
    while not outbox.empty():
        chunk = outbox.get_nowait()
        if chunk is None:
            outbox.put_nowait(None)  # The end mark is always last: leave it for the loop.
            break
        chunks.append(chunk)
    return b"".join(chunks)

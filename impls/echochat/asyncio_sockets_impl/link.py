"""The link to Redis (``--redis``) on asyncio's socket API: two connections, tasks, reconnecting.

The core decides what to say to Redis and what the network's events mean
(``echochat.core.redislink``, ``echochat.core.federation``); this moves the
bytes, as chat.py does for clients: a reader task and a writer task per
connection, and a timer task. Nothing here waits on a client and no client
waits on the link: the hub only ever calls ``deliver()``, which queues.
"""

from __future__ import annotations

import asyncio
import logging
import socket
from contextlib import suppress
from typing import Any

from echochat.core import (
    CLOSE_GRACE,
    LINK_CONNECT_TIMEOUT,
    READ_SIZE,
    SEND_PIECE,
    LinkRefusedError,
    LinkRole,
)
from echochat.core.redislink import RedisAddress
from echochat.hub import LINK_CLOSED_HERE, ChatHub
from echochat.loops import LinkAlarm, take_queued, timer_loop

log = logging.getLogger(__name__)


async def link_loop(hub: ChatHub) -> None:
    """Keep the link to Redis up until shutdown cancels this task."""
    address = hub.options.redis
    assert address is not None  # serve() starts the link only with --redis.
    while True:
        # 0 at first; after a failure, a backoff with jitter, so that the
        # servers that lost Redis together do not all come back at once.
        await asyncio.sleep(hub.link_retry_delay())
        try:
            subscriber, commands = await open_link(address)
        except OSError as error:  # asyncio.timeout() raises TimeoutError, an OSError.
            hub.link_closed(str(error) or f"no connection in {LINK_CONNECT_TIMEOUT:g} s")
            continue
        try:
            reason = await run_link(hub, subscriber, commands)
        except* LinkRefusedError:
            raise  # The server must not run: cli.py says why.
        except* Exception:
            # A bug must not end the server: an event of the network that
            # sets it off reaches every server, and would end them all.
            log.exception("the link to Redis failed")
            reason = "an internal error"
        finally:
            # Also when shutdown cancels us: what close() kept (this server's
            # SPLIT) is sent now, within CLOSE_GRACE.
            await asyncio.gather(close_socket(subscriber), close_socket(commands))
        hub.link_closed(reason)


async def open_link(address: RedisAddress) -> tuple[LinkConnection, LinkConnection]:
    """Both connections to Redis, or neither, within LINK_CONNECT_TIMEOUT."""
    async with asyncio.timeout(LINK_CONNECT_TIMEOUT):
        subscriber = LinkConnection(LinkRole.SUBSCRIBER, await connect(address))
        try:
            commands = LinkConnection(LinkRole.COMMANDS, await connect(address))
        except BaseException:
            subscriber.sock.close()
            raise
    return subscriber, commands


async def connect(address: RedisAddress) -> socket.socket:
    """A connected non-blocking socket: what open_connection() makes under its transport."""
    loop = asyncio.get_running_loop()
    targets: list[tuple[int, int, int, str | tuple[Any, ...]]]
    if address.path:
        targets = [(socket.AF_UNIX, socket.SOCK_STREAM, 0, address.path)]
    else:
        # Resolved in the loop's executor, as create_connection() does, and
        # each address tried in turn until one answers.
        found = await loop.getaddrinfo(address.host, address.port, type=socket.SOCK_STREAM)
        targets = [(family, kind, proto, where) for family, kind, proto, _, where in found]
    for family, kind, proto, where in targets[:-1]:
        with suppress(OSError):  # The next address, then.
            return await connect_to(family, kind, proto, where)
    return await connect_to(*targets[-1])


async def connect_to(
    family: int, kind: int, proto: int, where: str | tuple[Any, ...]
) -> socket.socket:
    sock = socket.socket(family, kind, proto)
    try:
        sock.setblocking(False)  # As the loop's sock_*() methods require.
        await asyncio.get_running_loop().sock_connect(sock, where)
    except BaseException:
        sock.close()
        raise
    if family != socket.AF_UNIX:
        # A transport would set it (Lib/asyncio/selector_events.py,
        # _SelectorSocketTransport.__init__); a bare socket gets it from us,
        # or Nagle holds a PUBLISH back until Redis's delayed ACK.
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


class LinkConnection:
    """One connection to Redis as the hub sees it: an outbound queue, and its two tasks to stop."""

    reading: asyncio.Task[str]
    writing: asyncio.Task[str]

    def __init__(self, role: LinkRole, sock: socket.socket) -> None:
        self.role = role
        self.sock = sock
        # Bounded in bytes by the core, which drops the link once Redis leaves
        # more than MAX_UNSENT unread.
        self.outbox: asyncio.Queue[bytes] = asyncio.Queue()
        self.unsent = b""  # What close() kept for close_socket() to send.
        self.sending = False  # A sock_sendall() is under way.

    def deliver(self, data: bytes) -> None:
        self.outbox.put_nowait(data)  # Never waits for Redis.

    def close(self, flush: bool) -> None:
        self.reading.cancel()
        self.writing.cancel()
        if flush:
            # Shutdown: what is queued (this server's SPLIT) is sent once the
            # writer has stopped (close_socket), if it did not stop mid-send.
            self.unsent = take_queued(b"", self.outbox)


async def close_socket(connection: LinkConnection) -> None:
    with connection.sock:
        # A sock_sendall() cut off by the cancel may have sent some, all or
        # none of its chunk, as trio's send_all may (the experiment `cancel`
        # shows it): Redis may hold half a command, so then nothing follows.
        if connection.unsent and not connection.sending:
            with suppress(TimeoutError, OSError):
                async with asyncio.timeout(CLOSE_GRACE):
                    loop = asyncio.get_running_loop()
                    await loop.sock_sendall(connection.sock, connection.unsent)


async def run_link(hub: ChatHub, subscriber: LinkConnection, commands: LinkConnection) -> str:
    """Run the link's tasks until the first one ends, then stop the rest; return why it ended."""
    alarm = LinkAlarm()
    async with asyncio.TaskGroup() as tasks:
        for connection in (subscriber, commands):
            connection.reading = tasks.create_task(read_loop(connection, hub, alarm))
            connection.writing = tasks.create_task(write_loop(connection, hub))
        timing = tasks.create_task(timer_loop(hub, alarm))
        # close() stops the tasks by cancelling them, so they must exist
        # before the hub may close the link at once.
        hub.link_opened(subscriber, commands)
        running = [subscriber.reading, subscriber.writing, commands.reading, commands.writing]
        # A task that raised makes the TaskGroup cancel this wait and the
        # others, and raise; one that returned only ends this wait.
        done, pending = await asyncio.wait([*running, timing], return_when=asyncio.FIRST_COMPLETED)
        for task in pending:
            task.cancel()
    first = done.pop()
    # A task close() cancelled ended because the hub closed the link.
    return LINK_CLOSED_HERE if first.cancelled() else first.result()


async def read_loop(connection: LinkConnection, hub: ChatHub, alarm: LinkAlarm) -> str:
    loop = asyncio.get_running_loop()
    # One buffer for the connection's life: recv_into() fills it in place,
    # and the core gets a copy of what arrived, since it may keep a partial reply.
    buffer = bytearray(READ_SIZE)
    try:
        while count := await loop.sock_recv_into(connection.sock, buffer):
            hub.link_receive(connection.role, bytes(buffer[:count]))
            # The core runs the network's events in bounded turns, as it runs
            # a client's lines. On asyncio's loop sock_recv_into() returns
            # waiting bytes without yielding, so yield here: the clients'
            # writers hand what a turn queued to the kernel before the next,
            # and no more is read from Redis meanwhile.
            while hub.link_has_ready_messages():
                await asyncio.sleep(0)
                hub.link_continue()
            alarm.rearm(hub)
            # And yield once per read in any case: a busy network always has
            # bytes waiting, and this loop would never give the clients a turn.
            await asyncio.sleep(0)
    except OSError as error:
        return f"the {connection.role.value} connection failed: {error}"
    return f"Redis closed the {connection.role.value} connection"


async def write_loop(connection: LinkConnection, hub: ChatHub) -> str:
    loop = asyncio.get_running_loop()
    try:
        while True:
            chunk = take_queued(await connection.outbox.get(), connection.outbox)
            connection.sending = True
            # Returns once the kernel holds every byte, like trio's send_all().
            # Only this task waits, because every client's line that published
            # just queued and moved on. It says nothing until then, so send in
            # pieces and report each: the core counts what Redis has not taken
            # to notice a Redis that stopped reading.
            for start in range(0, len(chunk), SEND_PIECE):
                piece = chunk[start : start + SEND_PIECE]
                await loop.sock_sendall(connection.sock, piece)
                hub.link_data_sent(connection.role, len(piece))
            connection.sending = False
    except OSError as error:
        return f"the {connection.role.value} connection failed: {error}"

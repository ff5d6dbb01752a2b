"""The link to Redis (``--redis``) on anyio: two connections, their tasks, reconnecting.

The core decides what to say to Redis and what the network's events mean
(``echochat.core.redislink``, ``echochat.core.federation``); this moves the
bytes, as chat.py does for clients: a reader task and a writer task per
connection, and a timer task. Nothing here waits on a client and no client
waits on the link: the hub only ever calls ``deliver()``, which queues.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Awaitable, Callable
from contextlib import suppress
from typing import Any

import anyio
from anyio.abc import SocketStream, TaskStatus

from echochat.anyio_impl.chat import take_pending
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

log = logging.getLogger(__name__)


async def link_loop(
    hub: ChatHub, *, task_status: TaskStatus[anyio.CancelScope] = anyio.TASK_STATUS_IGNORED
) -> None:
    """Keep the link to Redis up until shutdown cancels the scope it starts with."""
    address = hub.options.redis
    assert address is not None  # serve() starts the link only with --redis.
    with anyio.CancelScope() as linking:
        task_status.started(linking)
        while True:
            # 0 at first; after a failure, a backoff with jitter, so that the
            # servers that lost Redis together do not all come back at once.
            await anyio.sleep(hub.link_retry_delay())
            try:
                subscriber, commands = await open_link(address)
            except OSError as error:  # fail_after() raises TimeoutError, an OSError.
                hub.link_closed(str(error) or f"no connection in {LINK_CONNECT_TIMEOUT:g} s")
                continue
            async with subscriber.stream, commands.stream:
                try:
                    reason = await run_link(hub, subscriber, commands)
                except* LinkRefusedError:
                    raise  # The server must not run: cli.py says why.
                except* Exception:
                    # A bug must not end the server: an event of the network
                    # that sets it off reaches every server, and would end all.
                    log.exception("the link to Redis failed")
                    reason = "an internal error"
            hub.link_closed(reason)


async def open_link(address: RedisAddress) -> tuple[LinkConnection, LinkConnection]:
    """Both connections to Redis, or neither, within LINK_CONNECT_TIMEOUT."""
    with anyio.fail_after(LINK_CONNECT_TIMEOUT):
        subscriber = LinkConnection(LinkRole.SUBSCRIBER, await connect(address))
        try:
            commands = LinkConnection(LinkRole.COMMANDS, await connect(address))
        except BaseException:
            await anyio.aclose_forcefully(subscriber.stream)
            raise
    return subscriber, commands


async def connect(address: RedisAddress) -> SocketStream:
    if address.path:
        return await anyio.connect_unix(address.path)
    # Sets TCP_NODELAY on both backends: a PUBLISH goes out at once.
    return await anyio.connect_tcp(address.host, address.port)


class LinkConnection:
    """One connection to Redis as the hub sees it: an outbound queue, scopes to stop its tasks."""

    def __init__(self, role: LinkRole, stream: SocketStream) -> None:
        self.role = role
        self.stream = stream
        # Bounded in bytes by the core, which drops the link once Redis leaves
        # more than MAX_UNSENT unread.
        self.outbox, self.outbox_reader = anyio.create_memory_object_stream[bytes](math.inf)
        self.reading = anyio.CancelScope()
        self.writing = anyio.CancelScope()

    def deliver(self, data: bytes) -> None:
        # Never waits for Redis. Once the writer has stopped (and closed the
        # queue's receiving end) the link is ending and link_closed() is on its
        # way: what a client's line publishes meanwhile cannot be sent.
        with suppress(anyio.BrokenResourceError):
            self.outbox.send_nowait(data)

    def close(self, flush: bool) -> None:
        self.reading.cancel()
        if flush:
            # Shutdown: what is queued (this server's SPLIT) still goes out
            # while the link's other tasks are cancelled, but for CLOSE_GRACE
            # at most; the shield keeps the link's own cancellation off it.
            self.writing.shield = True
            self.writing.deadline = anyio.current_time() + CLOSE_GRACE
        else:
            self.writing.cancel()
        self.outbox.close()  # The writer stops once the queue is empty.


async def run_link(hub: ChatHub, subscriber: LinkConnection, commands: LinkConnection) -> str:
    """Run the link's tasks until the first one ends, then stop the rest; return why it ended."""
    alarm = LinkAlarm()
    reasons: list[str] = []
    async with anyio.create_task_group() as tasks:

        async def first_to_end_stops_all(loop: Callable[..., Awaitable[str]], *args: Any) -> None:
            reasons.append(await loop(*args))
            tasks.cancel_scope.cancel()

        for connection in (subscriber, commands):
            tasks.start_soon(first_to_end_stops_all, read_loop, connection, hub, alarm)
            tasks.start_soon(first_to_end_stops_all, write_loop, connection, hub)
        tasks.start_soon(first_to_end_stops_all, timer_loop, hub, alarm)
        # The cancel scopes that close() uses exist from LinkConnection's
        # __init__, so the hub may close the link at once.
        hub.link_opened(subscriber, commands)
    return reasons[0]


async def read_loop(connection: LinkConnection, hub: ChatHub, alarm: LinkAlarm) -> str:
    with connection.reading:
        try:
            while True:
                data = await connection.stream.receive(READ_SIZE)
                hub.link_receive(connection.role, data)
                # The core runs the network's events in bounded turns, as it
                # runs a client's lines: let the clients' writers hand what a
                # turn queued to the kernel before the next, and read no more
                # from Redis meanwhile.
                while hub.link_has_ready_messages():
                    await anyio.lowlevel.checkpoint()
                    hub.link_continue()
                alarm.rearm(hub)
        except anyio.EndOfStream:
            return f"Redis closed the {connection.role.value} connection"
        except anyio.BrokenResourceError as error:
            return f"the {connection.role.value} connection failed: {error.__cause__ or error}"
    return LINK_CLOSED_HERE


async def write_loop(connection: LinkConnection, hub: ChatHub) -> str:
    # Closing the receiving end too: anyio warns about memory streams left open.
    with connection.writing, connection.outbox_reader:
        try:
            async for first in connection.outbox_reader:
                chunk = take_pending(first, connection.outbox_reader)
                # Blocks while Redis's socket buffer is full; only this task
                # waits, because every client's line that published just
                # queued and moved on. It says nothing until the kernel holds
                # every byte, so send in pieces and report each: the core
                # counts what Redis has not taken to notice a Redis that
                # stopped reading.
                for start in range(0, len(chunk), SEND_PIECE):
                    piece = chunk[start : start + SEND_PIECE]
                    await connection.stream.send(piece)
                    hub.link_data_sent(connection.role, len(piece))
        except anyio.BrokenResourceError as error:
            return f"the {connection.role.value} connection failed: {error.__cause__ or error}"
    return LINK_CLOSED_HERE


class LinkAlarm:
    """The timer task's wait, which Redis's answers can move earlier."""

    def __init__(self) -> None:
        self.waiting = anyio.CancelScope()

    def rearm(self, hub: ChatHub) -> None:
        # Only Redis's bytes move the link's deadline earlier (the lease's
        # first refresh, joining, a heartbeat's first beat): a client's line
        # that publishes adds a reply's timeout after the lease's next refresh.
        deadline = hub.link_deadline()
        if deadline is not None and deadline < self.waiting.deadline:
            self.waiting.deadline = deadline


async def timer_loop(hub: ChatHub, alarm: LinkAlarm) -> str:
    """Call the core at the link's deadlines: the lease, heartbeats, silences, replies overdue."""
    while True:
        deadline = hub.link_deadline()
        with anyio.CancelScope(
            deadline=math.inf if deadline is None else deadline
        ) as alarm.waiting:
            await anyio.sleep_forever()
        hub.link_handle_timer()

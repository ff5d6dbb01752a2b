"""The link to Redis (``--redis``) on asyncio Streams: two connections, their tasks, reconnecting.

The core decides what to say to Redis and what the network's events mean
(``echochat.core.redislink``, ``echochat.core.federation``); this moves the
bytes, as chat.py does for clients: a reader task and a writer task per
connection, and a timer task. Nothing here waits on a client and no client
waits on the link: the hub only ever calls ``deliver()``, which queues.
"""

from __future__ import annotations

import asyncio
import logging

from echochat.core import LINK_CONNECT_TIMEOUT, READ_SIZE, LinkRefusedError, LinkRole
from echochat.core.redislink import RedisAddress
from echochat.hub import LINK_CLOSED_HERE, ChatHub
from echochat.loops import LinkAlarm, close_stream, take_queued, timer_loop

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
            # Also when shutdown cancels us: the transports send what close()
            # wrote (this server's SPLIT) as they close, within CLOSE_GRACE.
            await asyncio.gather(close_stream(subscriber.writer), close_stream(commands.writer))
        hub.link_closed(reason)


async def open_link(address: RedisAddress) -> tuple[LinkConnection, LinkConnection]:
    """Both connections to Redis, or neither, within LINK_CONNECT_TIMEOUT."""
    async with asyncio.timeout(LINK_CONNECT_TIMEOUT):
        subscriber = LinkConnection(LinkRole.SUBSCRIBER, *await connect(address))
        try:
            commands = LinkConnection(LinkRole.COMMANDS, *await connect(address))
        except BaseException:
            subscriber.writer.transport.abort()
            raise
    return subscriber, commands


async def connect(address: RedisAddress) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    if address.path:
        return await asyncio.open_unix_connection(address.path)
    # Its transport sets TCP_NODELAY: a PUBLISH goes out at once.
    return await asyncio.open_connection(address.host, address.port)


class LinkConnection:
    """One connection to Redis as the hub sees it: an outbound queue, and its two tasks to stop."""

    reading: asyncio.Task[str]
    writing: asyncio.Task[str]

    def __init__(
        self, role: LinkRole, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        self.role = role
        self.reader = reader
        self.writer = writer
        # Bounded in bytes by the core, which drops the link once Redis leaves
        # more than MAX_UNSENT unread.
        self.outbox: asyncio.Queue[bytes] = asyncio.Queue()

    def deliver(self, data: bytes) -> None:
        self.outbox.put_nowait(data)  # Never waits for Redis.

    def close(self, flush: bool) -> None:
        self.reading.cancel()
        self.writing.cancel()
        if flush and not self.writer.is_closing():
            # Shutdown: what is queued (this server's SPLIT) goes to the
            # transport, which sends it before it closes (close_stream, within
            # CLOSE_GRACE). write() takes whole chunks and a cancelled drain()
            # takes none back, so it follows whatever the writer wrote, whole.
            self.writer.write(take_queued(b"", self.outbox))


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
    try:
        while data := await connection.reader.read(READ_SIZE):
            hub.link_receive(connection.role, data)
            # The core runs the network's events in bounded turns, as it runs
            # a client's lines. read() returns buffered bytes without yielding
            # to the loop, so yield here: the clients' writers hand what a turn
            # queued to the kernel before the next, and no more is read from
            # Redis meanwhile.
            while hub.link_has_ready_messages():
                await asyncio.sleep(0)
                hub.link_continue()
            alarm.rearm(hub)
    except OSError as error:
        return f"the {connection.role.value} connection failed: {error}"
    return f"Redis closed the {connection.role.value} connection"


async def write_loop(connection: LinkConnection, hub: ChatHub) -> str:
    writer = connection.writer
    # Bytes in the transport's buffer, not yet reported sent: the core counts
    # what Redis has not taken to notice a Redis that stopped reading.
    buffered = 0
    try:
        while True:
            chunk = take_queued(await connection.outbox.get(), connection.outbox)
            if writer.is_closing():
                # Reset: asyncio would drop the bytes (and log the later
                # writes), uvloop would raise RuntimeError.
                return f"the {connection.role.value} connection was lost"
            writer.write(chunk)  # Never blocks: what the socket does not take is buffered.
            # Waits only once the buffer has passed its high-water mark; it is
            # also where a reset surfaces. Only this task waits, because every
            # client's line that published just queued and moved on. Always
            # drained: asyncio-nodrain's lesson is about its clients.
            buffered = report_taken(hub, connection, buffered + len(chunk))
            await writer.drain()
            buffered = report_taken(hub, connection, buffered)
    except OSError as error:
        return f"the {connection.role.value} connection failed: {error}"


def report_taken(hub: ChatHub, connection: LinkConnection, counted: int) -> int:
    """Report as sent the part of ``counted`` bytes no longer in the transport's buffer;
    return what is left there."""
    left = connection.writer.transport.get_write_buffer_size()
    hub.link_data_sent(connection.role, counted - left)
    return left

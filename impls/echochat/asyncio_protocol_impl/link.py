"""The link to Redis (``--redis``) on asyncio Transports and Protocols: one task, to connect.

Where the other adapters have a reader and a writer task per connection,
the loop calls each connection's Protocol methods, and a timer callback
(``loop.call_at``) brings the core's deadlines; only connecting, backing
off and connecting again, which wait, are a task's work. The core decides
what to say to Redis and what the network's events mean
(``echochat.core.redislink``, ``echochat.core.federation``). Nothing here
waits on a client and no client waits on the link: the hub only ever calls
``deliver()``, which writes or queues.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Callable
from functools import partial
from typing import cast

from echochat.asyncio_protocol_impl.chat import take_pending
from echochat.core import CLOSE_GRACE, LINK_CONNECT_TIMEOUT, LinkRefusedError, LinkRole
from echochat.core.redislink import RedisAddress
from echochat.hub import LINK_CLOSED_HERE, ChatHub

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
            subscriber, commands = await open_link(address, hub)
        except OSError as error:  # asyncio.timeout() raises TimeoutError, an OSError.
            hub.link_closed(str(error) or f"no connection in {LINK_CONNECT_TIMEOUT:g} s")
            continue
        try:
            reason = await run_link(hub, subscriber, commands)
        except LinkRefusedError:
            raise  # The server must not run: cli.py says why.
        except Exception:
            # A bug must not end the server: an event of the network that
            # sets it off reaches every server, and would end them all.
            log.exception("the link to Redis failed")
            reason = "an internal error"
        finally:
            # Also when shutdown cancels us: a transport close() closed sends
            # what it holds (this server's SPLIT) first, within CLOSE_GRACE.
            for connection in (subscriber, commands):
                connection.close(flush=False)  # A no-op for one closing already.
            await asyncio.wait([subscriber.closed, commands.closed])
        hub.link_closed(reason)


async def open_link(address: RedisAddress, hub: ChatHub) -> tuple[LinkConnection, LinkConnection]:
    """Both connections to Redis, or neither, within LINK_CONNECT_TIMEOUT."""
    alarm = LinkAlarm(hub)
    async with asyncio.timeout(LINK_CONNECT_TIMEOUT):
        subscriber = await connect(
            address, partial(LinkConnection, LinkRole.SUBSCRIBER, hub, alarm)
        )
        try:
            commands = await connect(
                address, partial(LinkConnection, LinkRole.COMMANDS, hub, alarm)
            )
        except BaseException:
            subscriber.transport.abort()
            raise
    return subscriber, commands


async def connect(address: RedisAddress, factory: Callable[[], LinkConnection]) -> LinkConnection:
    loop = asyncio.get_running_loop()
    if address.path:
        _, connection = await loop.create_unix_connection(factory, address.path)
    else:
        # The transport sets TCP_NODELAY: a PUBLISH goes out at once.
        _, connection = await loop.create_connection(factory, address.host, address.port)
    return connection


class LinkConnection(asyncio.Protocol):
    """One connection to Redis as the hub sees it (a LinkPeer) and as the loop sees it (a Protocol).

    Where the Streams adapter has a reader task, the loop calls
    ``data_received``; where it has a writer task waiting in ``drain()``,
    ``deliver`` writes at once and ``pause_writing()`` and ``resume_writing()``
    say when to hold commands back instead.
    """

    transport: asyncio.Transport

    def __init__(self, role: LinkRole, hub: ChatHub, alarm: LinkAlarm) -> None:
        self.role = role
        self.hub = hub
        self.alarm = alarm
        # Commands held back while the transport has paused writing. Bounded
        # in bytes by the core, which drops the link once Redis leaves more
        # than MAX_UNSENT unread.
        self.pending: deque[bytes] = deque()
        self.writing_paused = False
        # Set while the core's bounded turns run the network's events.
        self.reading_paused = False
        # Bytes of the write that crossed the high-water mark: still counted
        # as unsent until resume_writing().
        self.unreported = 0
        self.abort_later: asyncio.TimerHandle | None = None
        loop = asyncio.get_running_loop()
        # Why the link ended, as this connection saw it first (run_link waits for it).
        self.ended: asyncio.Future[str] = loop.create_future()
        self.closed: asyncio.Future[None] = loop.create_future()

    def deliver(self, data: bytes) -> None:
        if self.transport.is_closing():
            return  # Lost, and the link is ending: nothing can be sent.
        if self.writing_paused:
            self.pending.append(data)  # Never waits for Redis.
        else:
            self.write(data)

    def close(self, flush: bool) -> None:
        self.end(LINK_CLOSED_HERE)
        if self.transport.is_closing():
            return  # Closing already: a no-op, as the hub expects.
        if flush:
            # Shutdown: what is held back (this server's SPLIT) goes to the
            # transport; close() sends its buffer before it closes, and a
            # Redis that does not take it in time is cut off.
            self.transport.write(take_pending(self.pending))
            self.transport.close()
            loop = asyncio.get_running_loop()
            self.abort_later = loop.call_later(CLOSE_GRACE, self.transport.abort)
        else:
            self.transport.abort()

    def end(self, reason: str) -> None:
        if not self.ended.done():
            self.ended.set_result(reason)

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # A cast, not an isinstance check: uvloop's transports do not derive
        # from asyncio.Transport, though they offer the same methods.
        self.transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        # Whatever one recv() returned (the transport picks the size); the
        # core parses Redis's replies from it.
        try:
            self.hub.link_receive(self.role, data)
        except Exception as error:
            # LinkRefusedError (the server must not run), or a bug: run_link
            # raises it; the loop would only log it and close this transport.
            if not self.ended.done():
                self.ended.set_exception(error)
            self.transport.abort()
            return
        self.run_later()

    def run_later(self) -> None:
        """Let the loop run between the core's bounded turns on the network's events.

        The core stops after a bounded turn; the rest runs in a later callback,
        after the loop has written what this turn queued for the clients, and
        no more is read from Redis meanwhile (chat.py, ChatConnection.run_later).
        """
        if self.hub.link_has_ready_messages() and not self.transport.is_closing():
            if not self.reading_paused:
                self.reading_paused = True
                self.transport.pause_reading()
            asyncio.get_running_loop().call_soon(self.run_ready)
            return
        if self.reading_paused and not self.transport.is_closing():
            self.reading_paused = False
            self.transport.resume_reading()
        self.alarm.rearm()

    def run_ready(self) -> None:
        if not self.transport.is_closing():
            self.hub.link_continue()
            self.run_later()

    def eof_received(self) -> None:
        # Returning None lets the transport close; connection_lost() follows.
        self.end(f"Redis closed the {self.role.value} connection")

    def pause_writing(self) -> None:
        # Called from inside transport.write() once its buffer passes the
        # high-water mark (64 KiB): hold commands back from now on.
        self.writing_paused = True

    def resume_writing(self) -> None:
        self.writing_paused = False
        self.hub.link_data_sent(self.role, self.unreported)
        self.unreported = 0
        if self.pending:
            self.write(take_pending(self.pending))

    def connection_lost(self, exc: Exception | None) -> None:
        if exc is None:
            self.end(f"Redis closed the {self.role.value} connection")
        else:
            self.end(f"the {self.role.value} connection failed: {exc}")
        if self.abort_later is not None:
            # Needed: on 3.11, abort() on a transport that closed by itself
            # raises in a callback (the transport has dropped its loop).
            self.abort_later.cancel()
        self.closed.set_result(None)

    def write(self, chunk: bytes) -> None:
        self.transport.write(chunk)  # Never blocks: what the socket does not take is buffered.
        if self.writing_paused:
            self.unreported = len(chunk)  # This write paused writing.
        else:
            self.hub.link_data_sent(self.role, len(chunk))


async def run_link(hub: ChatHub, subscriber: LinkConnection, commands: LinkConnection) -> str:
    """Wait until either connection ends or the hub closes the link; return why it ended."""
    hub.link_opened(subscriber, commands)
    subscriber.alarm.rearm()
    try:
        done, _ = await asyncio.wait(
            [subscriber.ended, commands.ended], return_when=asyncio.FIRST_COMPLETED
        )
        return done.pop().result()  # Raises what data_received() caught.
    finally:
        subscriber.alarm.stop()


class LinkAlarm:
    """Calls the core at the link's deadlines (``loop.call_at``): the lease, heartbeats,
    silences, replies overdue."""

    def __init__(self, hub: ChatHub) -> None:
        self.hub = hub
        self.handle: asyncio.TimerHandle | None = None

    def rearm(self) -> None:
        """Make sure a timer fires by the link's next deadline.

        Only Redis's bytes move it earlier (the lease's first refresh,
        joining, a heartbeat's first beat): a client's line that publishes
        adds a reply's timeout after the lease's next refresh. An earlier
        timer is kept: firing early is harmless.
        """
        deadline = self.hub.link_deadline()
        if deadline is None or (self.handle is not None and self.handle.when() <= deadline):
            return
        self.stop()
        self.handle = asyncio.get_running_loop().call_at(deadline, self.ring)

    def ring(self) -> None:
        self.handle = None
        self.hub.link_handle_timer()
        self.rearm()

    def stop(self) -> None:
        if self.handle is not None:
            self.handle.cancel()
            self.handle = None

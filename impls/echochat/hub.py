"""The bridge between the chat core and one adapter's connections.

Its methods have the core's names (``connect``, ``receive_data``,
``has_ready_lines``, ``deadline``, ``handle_timer``, ``data_sent``, ``connection_lost``,
``shutdown``): one vocabulary from the core to the adapters.

The core returns effects; this carries them out by calling two methods on the
adapter's per-connection object. It is the same for asyncio, trio and anyio,
because neither method may wait: ``deliver`` appends to a queue, and
``close`` stops the connection's tasks and at most hands a farewell to a buffer.
It also reads the adapter's clock for the core, which keeps no time itself.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from typing import Protocol

from echochat.core import ChatCore, CloseLink, ConnId, Effect, LinkRole, LinkSend, Send
from echochat.options import ServerOptions

log = logging.getLogger(__name__)


class Peer(Protocol):
    """What an adapter's connection offers the hub."""

    def deliver(self, data: bytes) -> None:
        """Queue bytes for the client without waiting for it."""

    def close(self, farewell: bytes, flush: bool) -> None:
        """Stop reading; send the queue (if ``flush``) and ``farewell``; then close."""


# The reason an adapter gives link_closed() when its link's tasks stopped because
# the hub closed the link: never shown, since the core said why when it closed it.
LINK_CLOSED_HERE = "closed by this server"


class LinkPeer(Protocol):
    """What an adapter's connection to Redis offers the hub (``--redis``)."""

    def deliver(self, data: bytes) -> None:
        """Queue bytes for Redis without waiting."""

    def close(self, flush: bool) -> None:
        """Stop; send what is queued first (if ``flush``, within CLOSE_GRACE); then close."""


class InjectedFaultError(Exception):
    """Raised on purpose (``--inject-fault``) to test how a connection's failure is contained."""


class ChatHub:
    """Feeds events to the core and routes its effects to the right connection."""

    def __init__(self, options: ServerOptions, clock: Callable[[], float]) -> None:
        created = datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
        self.options = options
        # The core shows dates (TIME, 333, 317) from the adapter's clock plus this.
        epoch = time.time() - clock()
        # On a network the core draws its ids and reconnection jitter from these bits.
        seed = int.from_bytes(os.urandom(8)) if options.redis is not None else None
        self.core = ChatCore(options.limits, created=created, epoch=epoch, network_seed=seed)
        # The two connections to Redis while the link is open (--redis).
        self.link_peers: dict[LinkRole, LinkPeer] = {}
        # The core closed the link itself (CloseLink) and the log said why: the
        # adapter's link_closed() that follows says nothing more.
        self.link_cut = False
        # Whether the log has said that this server is on the network (joined).
        self.link_joined = False
        # The framework's monotonic clock, the one its deadlines are set on.
        self.clock = clock
        self.peers: dict[ConnId, Peer] = {}
        # Connections not yet registered, so that the log says once when each does.
        self.registering: set[ConnId] = set()
        # At --log-level debug, log each connection's SendQ whenever it changes,
        # on the system's monotonic clock (the sendq-burst experiment reads it).
        # Decided once, so that the hot path pays one attribute test.
        self.trace_sendq = log.isEnabledFor(logging.DEBUG)

    def connect(self, peer: Peer, host: str) -> ConnId:
        conn, effects = self.core.connect(host, self.clock())
        log.info("connection %d from %s", conn, host)
        self.peers[conn] = peer
        self.registering.add(conn)
        self._apply(effects)
        return conn

    def receive_data(self, conn: ConnId, data: bytes) -> None:
        if (trigger := self.options.inject_fault) is not None and trigger in data:
            raise InjectedFaultError(f"connection {conn} sent {trigger!r}")
        self._apply(self.core.receive_data(conn, data, self.clock()))
        self._note_registration(conn)

    def has_ready_lines(self, conn: ConnId) -> bool:
        """Whether the core stopped after a bounded turn with lines of ``conn`` left to run.

        The adapter then yields once to its event loop, so that the writers hand
        what that turn queued to the kernel, and calls ``handle_timer``; it reads
        no more from ``conn`` until this is False.
        """
        return self.core.has_ready_lines(conn)

    def deadline(self, conn: ConnId) -> float | None:
        """When the adapter must call ``handle_timer`` unless input comes first (None: never)."""
        return self.core.deadline(conn)

    def handle_timer(self, conn: ConnId) -> None:
        """``conn``'s deadline has passed: registration and ping timeouts, delayed lines."""
        self._apply(self.core.handle_timer(conn, self.clock()))
        self._note_registration(conn)  # Lines held back by flood control may register it.

    def data_sent(self, conn: ConnId, nbytes: int) -> None:
        self.core.data_sent(conn, nbytes)
        if self.trace_sendq:
            self._trace_sendq([conn])

    def connection_lost(self, conn: ConnId) -> None:
        self._apply(self.core.connection_lost(conn))

    def shutdown(self) -> None:
        self._apply(self.core.shutdown())

    # -- The link to Redis (--redis): the core's link_* calls, with the clock read here --------

    def link_retry_delay(self) -> float:
        """Seconds to wait before connecting to Redis: 0 at first, then backing off with jitter."""
        return self.core.link_retry_delay()

    def link_opened(self, subscriber: LinkPeer, commands: LinkPeer) -> None:
        """Both connections to Redis are open."""
        log.info("connected to Redis at %s", self.options.redis)
        self.link_peers = {LinkRole.SUBSCRIBER: subscriber, LinkRole.COMMANDS: commands}
        self._apply(self.core.link_opened(self.clock()))

    def link_receive(self, role: LinkRole, data: bytes) -> None:
        """Bytes from Redis; may raise ``LinkRefusedError`` (the server must not start)."""
        self._apply(self.core.link_receive(role, data, self.clock()))

    def link_has_ready_messages(self) -> bool:
        """As ``has_ready_lines``, for the network's events: yield, then ``link_continue``."""
        return self.core.link_has_ready_messages()

    def link_continue(self) -> None:
        self._apply(self.core.link_continue(self.clock()))

    def link_data_sent(self, role: LinkRole, nbytes: int) -> None:
        self.core.link_data_sent(role, nbytes)

    def link_deadline(self) -> float | None:
        """When ``link_handle_timer`` must run (None: only when Redis sends something)."""
        return self.core.link_deadline()

    def link_handle_timer(self) -> None:
        self._apply(self.core.link_handle_timer(self.clock()))

    def link_closed(self, reason: str) -> None:
        """A connection to Redis failed or closed, or could not be opened, or the link's
        tasks ended after the core closed it."""
        if self.link_peers:
            log.warning(
                "lost the link to Redis at %s (%s); serving this server's users alone",
                self.options.redis,
                reason,
            )
        elif not self.link_cut:
            log.warning("cannot reach Redis at %s (%s); will retry", self.options.redis, reason)
        self.link_cut = False
        for peer in self.link_peers.values():
            peer.close(flush=False)
        self.link_peers = {}
        self._apply(self.core.link_closed(reason, self.clock()))

    def _apply(self, effects: list[Effect]) -> None:
        for effect in effects:
            if isinstance(effect, Send):
                self.peers[effect.conn].deliver(effect.data)
            else:
                # The core has forgotten this connection; so do we.
                log.info("connection %d closed: %s", effect.conn, effect.reason)
                self.registering.discard(effect.conn)
                self.peers.pop(effect.conn).close(effect.farewell, effect.flush)
        if self.options.redis is not None:
            self._note_network()
            for link_effect in self.core.take_link_effects():
                if isinstance(link_effect, LinkSend):
                    if (link_peer := self.link_peers.get(link_effect.role)) is not None:
                        link_peer.deliver(link_effect.data)
                else:
                    self._close_link(link_effect)
        if self.trace_sendq:
            self._trace_sendq({e.conn: None for e in effects if isinstance(e, Send)})

    def _note_network(self) -> None:
        # Leaving is logged where the link is lost, with the reason.
        if self.core.joined != self.link_joined:
            self.link_joined = self.core.joined
            if self.link_joined:
                name = self.options.limits.server_name
                log.info("joined the network as %s at Redis %s", name, self.options.redis)

    def _close_link(self, effect: CloseLink) -> None:
        if effect.flush:
            log.info("closing the link to Redis: %s", effect.reason)
        else:
            log.warning(
                "dropped the link to Redis at %s (%s); serving this server's users alone",
                self.options.redis,
                effect.reason,
            )
        for peer in self.link_peers.values():
            peer.close(effect.flush)
        self.link_peers = {}
        self.link_cut = True

    def _trace_sendq(self, conns: Iterable[ConnId]) -> None:
        now = time.monotonic()
        for conn in conns:
            log.debug("sendq %d %d %.6f", conn, self.core.sendq(conn), now)

    def _note_registration(self, conn: ConnId) -> None:
        if conn in self.registering and (prefix := self.core.registered_as(conn)) is not None:
            self.registering.discard(conn)
            log.info("connection %d registered as %s", conn, prefix)

"""The bridge between the chat core and one adapter's connections.

The core returns effects; this carries them out by calling two methods on the
adapter's per-connection object. It is the same for asyncio, trio and anyio,
because neither method may wait: ``deliver`` appends to a queue, and
``close`` stops the connection's tasks and at most hands a farewell to a buffer.
"""

from __future__ import annotations

import logging
from typing import Protocol

from echochat.core import ChatServer, ConnId, Effect, Send

log = logging.getLogger(__name__)


class Peer(Protocol):
    """What an adapter's connection offers the hub."""

    def deliver(self, data: bytes) -> None:
        """Queue bytes for the client without waiting for it."""

    def close(self, farewell: bytes, flush: bool) -> None:
        """Stop reading; send the queue (if ``flush``) and ``farewell``; then close."""


class ChatHub:
    """Feeds events to the core and routes its effects to the right connection."""

    def __init__(self, core: ChatServer) -> None:
        self.core = core
        self.peers: dict[ConnId, Peer] = {}

    def attach(self, peer: Peer, host: str) -> ConnId:
        conn, effects = self.core.connect(host)
        log.debug("connection %d from %s", conn, host)
        self.peers[conn] = peer
        self._apply(effects)
        return conn

    def receive(self, conn: ConnId, data: bytes) -> None:
        self._apply(self.core.receive_data(conn, data))

    def sent(self, conn: ConnId, nbytes: int) -> None:
        self.core.data_sent(conn, nbytes)

    def lost(self, conn: ConnId) -> None:
        self._apply(self.core.connection_lost(conn))

    def shutdown(self) -> None:
        self._apply(self.core.shutdown())

    def _apply(self, effects: list[Effect]) -> None:
        for effect in effects:
            if isinstance(effect, Send):
                self.peers[effect.conn].deliver(effect.data)
            else:
                # The core has forgotten this connection; so do we.
                log.debug("closing connection %d: %r", effect.conn, effect.farewell)
                self.peers.pop(effect.conn).close(effect.farewell, effect.flush)

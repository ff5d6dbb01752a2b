"""Several chat cores on one in-memory bus: the pure tests of ``echochat.core.federation``.

``Bus`` answers the RESP that the cores' links write the way Redis does for
the few commands they use (SUBSCRIBE, PUBLISH, the lease's EVAL), and delivers
every published event to every subscribed core in one order, at a moment the
test chooses: so a test can hold events in flight, cut a server's link, or let
time pass, deterministically. That Redis itself behaves so is what the tests
over real Redis check (tests/contract/test_network*.py); these check what the
cores decide from it.
"""

from __future__ import annotations

from collections import deque
from typing import Any

import hiredis
from core_helpers import Harness, lenient_limits

from echochat.core import Effect, Limits, LinkRole, LinkSend
from echochat.core.redislink import BUS_CHANNEL


def _bulk(data: bytes) -> bytes:
    return b"$%d\r\n%s\r\n" % (len(data), data)


def message(payload: bytes) -> bytes:
    return b"*3\r\n" + _bulk(b"message") + _bulk(BUS_CHANNEL) + _bulk(payload)


class Server(Harness):
    """One chat core on the bus: a Harness whose every call lets the bus carry what it sent."""

    def __init__(self, bus: Bus, key: str, limits: Limits, seed: int) -> None:
        super().__init__(limits, network_seed=seed)
        self.bus = bus
        # How the bus tells servers apart: their names, unless a test gives two one name.
        self.key = key

    def apply(self, effects: list[Effect]) -> list[Effect]:
        effects = super().apply(effects)
        self.bus.collect(self)
        return effects

    def feed(self, conn: int, data: bytes) -> list[Effect]:
        effects = super().feed(conn, data)
        self.bus.run()
        return effects


class Bus:
    """Redis, as far as the cores' links use it; nothing is delivered until ``run``."""

    def __init__(self) -> None:
        self.servers: dict[str, Server] = {}
        self.linked: set[str] = set()
        self.subscribed: set[str] = set()
        self.leases: dict[str, bytes] = {}
        self._readers: dict[tuple[str, LinkRole], hiredis.Reader] = {}
        # Bytes on their way to a server, in order.
        self.in_flight: deque[tuple[str, LinkRole, bytes]] = deque()
        self.published: list[bytes] = []

    def add(self, name: str, key: str | None = None, **limits: Any) -> Server:
        """A server named ``name`` (``key`` tells two of one name apart)."""
        key = key or name
        seed = len(self.servers) + 1
        server = Server(self, key, lenient_limits(server_name=name, **limits), seed)
        self.servers[key] = server
        return server

    def link(self, server: Server) -> None:
        """Open the server's link and let it join (its HELLO, a snapshot or GEN, its BURST)."""
        assert server.core.link_retry_delay() >= 0
        for role in LinkRole:
            self._readers[(server.key, role)] = hiredis.Reader()
        self.linked.add(server.key)
        server.apply(server.core.link_opened(server.now))
        self.run()

    def cut(self, server: Server, reason: str = "link cut by the test") -> None:
        """The server's connections to Redis fail, as an adapter reports it."""
        self._unlink(server.key)
        server.apply(server.core.link_closed(reason, server.now))
        self.run()

    def _unlink(self, name: str) -> None:
        self.linked.discard(name)
        self.subscribed.discard(name)
        self.in_flight = deque(item for item in self.in_flight if item[0] != name)

    def collect(self, server: Server) -> None:
        """Take what the server's core asked of its link."""
        for effect in server.core.take_link_effects():
            if server.key not in self.linked:
                continue
            if isinstance(effect, LinkSend):
                self._receive(server, effect.role, effect.data)
            else:
                self._unlink(server.key)

    def _receive(self, server: Server, role: LinkRole, data: bytes) -> None:
        reader = self._readers[(server.key, role)]
        reader.feed(data)
        while (command := reader.gets()) is not False:
            self._execute(server.key, role, command)

    def _execute(self, name: str, role: LinkRole, command: list[bytes]) -> None:
        verb = command[0].upper()
        if verb == b"SUBSCRIBE":
            self.subscribed.add(name)
            reply = b"*3\r\n" + _bulk(b"subscribe") + _bulk(BUS_CHANNEL) + b":1\r\n"
            self.in_flight.append((name, role, reply))
        elif verb == b"EVAL":  # The lease: taken or kept only by its holder.
            key, holder = command[3].decode(), command[4]
            free = self.leases.get(key, holder) == holder
            if free:
                self.leases[key] = holder
            self.in_flight.append((name, role, b":1\r\n" if free else b":0\r\n"))
        elif verb == b"PUBLISH":
            payload = command[2]
            self.published.append(payload)
            for subscriber in sorted(self.subscribed):
                self.in_flight.append((subscriber, LinkRole.SUBSCRIBER, message(payload)))
            self.in_flight.append((name, role, b":%d\r\n" % len(self.subscribed)))
        else:
            raise AssertionError(f"a command the bus does not know: {command!r}")

    def run(self, limit: int = 100_000) -> None:
        """Deliver everything in flight, and what that causes, until nothing is left."""
        for _ in range(limit):
            if not self.in_flight:
                return
            name, role, data = self.in_flight.popleft()
            server = self.servers[name]
            server.apply(server.core.link_receive(role, data, server.now))
            while server.core.link_has_ready_messages():
                server.apply(server.core.link_continue(server.now))
        raise AssertionError("the bus never went quiet")

    def advance(self, seconds: float) -> None:
        """Let time pass on every server at once: client timers and the links' timers fire,
        each at its moment, and the bus carries what they send as they do."""
        servers = list(self.servers.values())
        end = max(server.now for server in servers) + seconds
        while True:
            due = [d for s in servers if (d := s.core.link_deadline()) is not None and d <= end]
            moment = min(due, default=end)
            for server in servers:
                server.advance(max(moment - server.now, 0.0))
                if (deadline := server.core.link_deadline()) is not None and deadline <= moment:
                    server.apply(server.core.link_handle_timer(server.now))
            self.run()
            if not due:
                return

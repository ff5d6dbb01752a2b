"""The link to Redis, with no I/O: what a server says to Redis and what it makes of the answers.

A server on a network (``--redis URL``) holds two connections to one Redis,
as the Redis docs require of a subscriber (a connection in RESP2 subscribe
mode may only (un)subscribe and PING):

* the **subscriber** connection subscribes to the bus channel and receives
  every event of the network, in the one order Redis published them;
* the **commands** connection publishes this server's events, holds the
  server's name with a lease (a lease that expires unless refreshed),
  and answers nothing else.

RESP is read by ``hiredis.Reader`` (the C parser redis-py uses; it parses
bytes fed to it and never reads a socket) and written by
``hiredis.pack_command``. This module is the link's state machine only; what
the events mean is ``echochat.core.federation``'s business, and the adapters
move the bytes.
"""

from __future__ import annotations

import random
import urllib.parse
from collections import deque
from dataclasses import dataclass

import hiredis

from echochat.core.effects import LinkRole
from echochat.core.state import Seconds

# The one Redis channel every server publishes to and subscribes to: one
# channel, so that every server receives every event in the same order.
BUS_CHANNEL = b"echochat:bus"
LEASE_KEY_PREFIX = "echochat:server:"
# A server's name is its own while its lease lives; a server that dies frees it this
# long after its last refresh.
LEASE_TTL = 10.0
LEASE_REFRESH = 3.0
# A command Redis has not answered in this long means the link is stuck: it is
# treated as lost (a stalled Redis must not hold the network's events for ever).
REPLY_TIMEOUT = 5.0
# Bytes this server may have queued for Redis and not yet handed to the kernel.
# Redis reads fast; more than this means it has stopped reading, and the link is lost
# rather than the server's memory.
MAX_UNSENT = 8 * 1024 * 1024
# Reconnection: the first retry after this long, doubling to at most RETRY_MAX,
# each delay drawn at random from its upper half so that servers that lost
# Redis together do not come back in lockstep ("equal jitter").
RETRY_FIRST = 0.25
RETRY_MAX = 5.0

# Takes the server's name, or keeps it: the lease is set (or its life renewed)
# only if nobody holds it or this process (its instance) does. One script for
# taking and refreshing, atomic in Redis: a server cut off for less than the
# lease's life takes its own name back, and one stalled past it does not take
# a name another server has since taken.
_LEASE_SCRIPT = (
    "local holder = redis.call('get', KEYS[1]) "
    "if holder == false or holder == ARGV[1] then "
    "redis.call('set', KEYS[1], ARGV[1], 'px', ARGV[2]) return 1 end return 0"
)
# Gives the name up at a graceful shutdown, if this process still holds it, so
# that the server started again at once (a restart) is not refused.
_RELEASE_SCRIPT = (
    "if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) end return 0"
)


@dataclass(frozen=True, slots=True)
class RedisAddress:
    """Where Redis listens: a TCP host and port, or a unix socket's path."""

    host: str = ""
    port: int = 0
    path: str = ""

    def __str__(self) -> str:
        return f"unix://{self.path}" if self.path else f"redis://{self.host}:{self.port}"


def parse_redis_url(url: str) -> RedisAddress:
    """``redis://HOST[:PORT]`` (port 6379 by default) or ``unix:///PATH``.

    Raises ValueError with a message fit for one line of a command-line error.
    """
    parts = urllib.parse.urlsplit(url)
    if parts.scheme == "unix":
        if parts.netloc or not parts.path.startswith("/"):
            raise ValueError(f"{url!r}: a unix socket's URL is unix:///absolute/path")
        return RedisAddress(path=parts.path)
    if parts.scheme != "redis":
        raise ValueError(f"{url!r}: expected redis://HOST:PORT or unix:///PATH")
    if parts.username or parts.password or parts.path not in ("", "/") or parts.query:
        raise ValueError(f"{url!r}: only redis://HOST:PORT is understood (no user, db or options)")
    try:
        port = parts.port or 6379
    except ValueError:
        raise ValueError(f"{url!r}: the port must be a number from 1 to 65535") from None
    if not parts.hostname:
        raise ValueError(f"{url!r}: no host")
    return RedisAddress(host=parts.hostname, port=port)


@dataclass(frozen=True, slots=True)
class LinkUp:
    """Both connections are ready: the lease is held and the bus subscribed."""


@dataclass(frozen=True, slots=True)
class BusMessage:
    """One event of the network, as published (this server's own too)."""

    payload: bytes


@dataclass(frozen=True, slots=True)
class LinkFailed:
    """The link cannot go on; the adapter must close both connections."""

    reason: str


@dataclass(frozen=True, slots=True)
class NameTaken:
    """Another live server holds this server's name on the network."""


LinkEvent = LinkUp | BusMessage | LinkFailed | NameTaken


class RedisLink:
    """The conversation with Redis over the two connections, one connection attempt at a time."""

    def __init__(self, server_name: str, instance: str, rng: random.Random) -> None:
        self.server_name = server_name
        # Unique to this process: the lease's value, so that only its holder refreshes it.
        self.instance = instance
        self._rng = rng
        self._failures = 0
        self._lease_key = LEASE_KEY_PREFIX + server_name
        self._reset()

    def _reset(self) -> None:
        self.opened = False
        self.up = False
        self._readers = {role: hiredis.Reader() for role in LinkRole}
        self._subscribed = False
        self._leased = False
        # What each command sent on the commands connection is waiting for, and since when.
        self._awaiting: deque[tuple[str, Seconds]] = deque()
        self._unsent = {role: 0 for role in LinkRole}
        self._refresh_at: Seconds = 0.0

    # -- Connecting -----------------------------------------------------------------------

    def retry_delay(self) -> Seconds:
        """How long to wait before the next connection attempt: none for the first."""
        if not self._failures:
            return 0.0
        ceiling = min(RETRY_MAX, RETRY_FIRST * 2 ** (self._failures - 1))
        return self._rng.uniform(ceiling / 2, ceiling)

    def open(self, now: Seconds) -> list[tuple[LinkRole, bytes]]:
        """Both connections are open: what to send on each to take the lease and subscribe."""
        self._reset()
        self.opened = True
        self._awaiting.append(("lease", now))
        return [
            self._queued(LinkRole.COMMANDS, self._lease_command()),
            self._queued(LinkRole.SUBSCRIBER, _command("SUBSCRIBE", BUS_CHANNEL)),
        ]

    def close(self) -> None:
        """The connections are closed (failed, or closed on purpose): the next attempt waits."""
        if self.up:
            self._failures = 1  # It worked until now: retry soon.
        else:
            self._failures += 1
        self._reset()

    # -- Sending --------------------------------------------------------------------------

    def publish(self, payload: bytes, now: Seconds) -> tuple[LinkRole, bytes]:
        """An event for the whole network, this server included."""
        self._awaiting.append(("publish", now))
        return self._queued(LinkRole.COMMANDS, _command("PUBLISH", BUS_CHANNEL, payload))

    def release(self, now: Seconds) -> tuple[LinkRole, bytes]:
        """Give up the server's name (a graceful shutdown): the next start need not wait."""
        self._awaiting.append(("release", now))
        command = _command("EVAL", _RELEASE_SCRIPT, 1, self._lease_key, self.instance)
        return self._queued(LinkRole.COMMANDS, command)

    def _queued(self, role: LinkRole, data: bytes) -> tuple[LinkRole, bytes]:
        self._unsent[role] += len(data)
        return role, data

    def data_sent(self, role: LinkRole, nbytes: int) -> None:
        """``nbytes`` for ``role`` reached the kernel."""
        self._unsent[role] -= nbytes

    def overloaded(self) -> bool:
        """Whether Redis has left more than ``MAX_UNSENT`` bytes unread: the link is lost."""
        return self._unsent[LinkRole.COMMANDS] > MAX_UNSENT

    # -- Receiving ------------------------------------------------------------------------

    def receive_data(self, role: LinkRole, data: bytes, now: Seconds) -> list[LinkEvent]:
        """Bytes from Redis on ``role``'s connection: the events they complete, in order."""
        reader = self._readers[role]
        reader.feed(data)
        events: list[LinkEvent] = []
        while True:
            try:
                reply = reader.gets()
            except hiredis.ProtocolError as error:
                return [*events, LinkFailed(f"Redis sent something that is not RESP: {error}")]
            if reply is False:
                return events
            if role is LinkRole.SUBSCRIBER:
                event = self._on_subscriber_reply(reply)
            else:
                event = self._on_command_reply(reply, now)
            if event is not None:
                events.append(event)
                if isinstance(event, LinkFailed | NameTaken):
                    return events

    def _on_subscriber_reply(self, reply: object) -> LinkEvent | None:
        if isinstance(reply, list) and len(reply) == 3:
            kind, channel, body = reply
            if kind == b"message" and channel == BUS_CHANNEL and isinstance(body, bytes):
                return BusMessage(body) if self.up else None
            if kind == b"subscribe" and channel == BUS_CHANNEL and not self._subscribed:
                self._subscribed = True
                return self._maybe_up()
        return LinkFailed(f"unexpected reply on the subscriber connection: {_show(reply)}")

    def _on_command_reply(self, reply: object, now: Seconds) -> LinkEvent | None:
        if not self._awaiting:
            return LinkFailed(f"a reply nobody asked for: {_show(reply)}")
        waiting_for, _ = self._awaiting.popleft()
        if isinstance(reply, hiredis.ReplyError):
            return LinkFailed(f"Redis refused a command: {reply}")
        if waiting_for == "publish":
            # How many servers got it; the bus itself tells us which did.
            return None if isinstance(reply, int) else LinkFailed(f"PUBLISH: {_show(reply)}")
        return self._on_lease_reply(reply, now, refreshing=waiting_for == "refresh")

    def _on_lease_reply(self, reply: object, now: Seconds, refreshing: bool) -> LinkEvent | None:
        if reply == 1:
            if not refreshing:
                self._leased = True
                self._refresh_at = now + LEASE_REFRESH
                return self._maybe_up()
            return None
        if reply == 0:
            if refreshing:
                return LinkFailed(f"this server's lease on its name {self.server_name!r} was lost")
            return NameTaken()
        return LinkFailed(f"unexpected reply to the lease: {_show(reply)}")

    def _maybe_up(self) -> LinkEvent | None:
        if self._leased and self._subscribed and not self.up:
            self.up = True
            self._failures = 0
            return LinkUp()
        return None

    # -- Time -----------------------------------------------------------------------------

    def deadline(self) -> Seconds | None:
        """When ``handle_timer`` must run: the lease's refresh, or a reply overdue."""
        if not self.opened:
            return None
        deadlines = [self._awaiting[0][1] + REPLY_TIMEOUT] if self._awaiting else []
        if self._leased:
            deadlines.append(self._refresh_at)
        return min(deadlines, default=None)

    def handle_timer(self, now: Seconds) -> tuple[list[tuple[LinkRole, bytes]], LinkFailed | None]:
        """Refresh the lease when due; a reply overdue fails the link."""
        if not self.opened:
            return [], None
        if self._awaiting and now >= self._awaiting[0][1] + REPLY_TIMEOUT:
            return [], LinkFailed(f"Redis did not answer within {REPLY_TIMEOUT:g} s")
        sends: list[tuple[LinkRole, bytes]] = []
        if self._leased and now >= self._refresh_at:
            self._refresh_at = now + LEASE_REFRESH
            self._awaiting.append(("refresh", now))
            sends.append(self._queued(LinkRole.COMMANDS, self._lease_command()))
        return sends, None

    def _lease_command(self) -> bytes:
        ttl = int(LEASE_TTL * 1000)
        return _command("EVAL", _LEASE_SCRIPT, 1, self._lease_key, self.instance, ttl)


def _command(*words: str | int | bytes) -> bytes:
    """One command in RESP, as Redis reads it."""
    # hiredis's stub types the argument as a one-element tuple; it takes any length.
    packed: bytes = hiredis.pack_command(words)  # type: ignore[arg-type]
    return packed


def _show(reply: object) -> str:
    """A reply, shortened for a log line."""
    text = repr(reply)
    return text if len(text) <= 80 else text[:77] + "..."

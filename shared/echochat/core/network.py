"""The chat server's tables and its outbox: what every command handler works on.

``Network`` holds every client, nick and channel, and builds the effects of
the call in progress (lines queued for clients, connections to close). The
command handlers (``echochat.core.commands``) read and change it;
``ChatCore`` (``echochat.core.chat``) adds the calls an adapter makes. So the
handlers never see the adapter-facing API, and it never sees a command.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable

from echochat.core.effects import Close, ConnId, Effect, Send
from echochat.core.errors import CommandError
from echochat.core.limits import TURN_BYTES, WHOWAS_SIZE, Limits
from echochat.core.message import ascii_lower, format_message, token
from echochat.core.state import Channel, Client, PastNick, Seconds, UnixTime


class Network:
    """Every client, nick and channel of one server, and the effects being built."""

    # Slots, not a __dict__: every delivery reads several of these, and CPython's
    # fastest attribute access is a slot's (an instance dict of more than 30 keys,
    # which the network's state would make, loses the shared-keys fast path).
    __slots__ = (
        "_channels",
        "_clients",
        "_connections_per_host",
        "_effects",
        "_nicks",
        "_overflowed",
        "_turn_budget",
        "_turn_clients",
        "_turn_sendq",
        "_turn_spent",
        "created",
        "epoch",
        "limits",
        "most_users",
        "now",
        "replicating",
        "whowas",
    )

    def __init__(self, limits: Limits, created: str, epoch: UnixTime = 0.0) -> None:
        self.limits = limits
        self.created = created
        # Unix time when the adapter's monotonic clock read 0, so that times
        # the core shows (TIME, 317, 333) need no clock of their own.
        self.epoch = epoch
        # The adapter's time of the call in progress.
        self.now: Seconds = 0.0
        self._clients: dict[ConnId, Client] = {}
        self._nicks: dict[str, Client] = {}
        self._channels: dict[str, Channel] = {}
        self._connections_per_host: dict[str, int] = {}
        # Newest last, at most WHOWAS_SIZE of them.
        self.whowas: deque[PastNick] = deque(maxlen=WHOWAS_SIZE)
        self.most_users = 0
        # True while a command that came through Redis runs (--redis): it must
        # then decide exactly as on every other server, from the shared tables only.
        self.replicating = False
        # Effects of the call in progress, returned and reset at its end.
        self._effects: list[Effect] = []
        self._overflowed: list[Client] = []
        # Clients queued for by the call in progress, and whether one of them
        # has had the budget: the call then runs no further line. A writer
        # needs a turn or two to report what the kernel took, so one call may
        # fill only a small part of a SendQ.
        self._turn_clients: list[Client] = []
        self._turn_spent = False
        self._turn_budget = min(TURN_BYTES, limits.sendq // 8)
        # A client whose SendQ is past this also ends the call's turn. The budget
        # is per call, and the calls of many connections can run in one turn
        # of the event loop before any writer does: 40 members sending at once
        # queued 40 budgets for everyone, more than a SendQ. Past half full,
        # each talker runs one line per turn until the writers catch up (or
        # the client that does not read overflows, and is dropped).
        self._turn_sendq = limits.sendq // 2

    @property
    def wall_time(self) -> UnixTime:
        return self.epoch + self.now

    # -- Output -------------------------------------------------------------------------

    def _send(self, client: Client, data: bytes) -> None:
        """Queue ``data`` for ``client`` unless that would overflow its SendQ.

        Never waits for the client: a full queue marks it for disconnection.
        """
        if client.silent:
            return
        size = len(data)
        queued = client.queued + size
        if queued > self.limits.sendq:
            client.overflowed = client.silent = True
            self._overflowed.append(client)
            return
        client.queued = queued
        # The turn's budget; every delivery passes here, so it is kept cheap.
        turn = client.turn_bytes + size
        if turn == size:
            self._turn_clients.append(client)  # Its first bytes in this call.
        client.turn_bytes = turn
        if turn >= self._turn_budget or queued > self._turn_sendq:
            self._turn_spent = True
        self._effects.append(Send(client.conn, data))

    def _send_to_all(self, recipients: Iterable[Client], data: bytes) -> None:
        for recipient in recipients:
            self._send(recipient, data)

    def _line(self, prefix: str | None, command: str, params: list[str], text: str | None) -> bytes:
        return format_message(prefix, command, params, text, self.limits.max_line)

    def _error_line(self, text: str) -> bytes:
        return self._line(None, "ERROR", [], text)

    def _numeric(self, client: Client, numeric: str, params: list[str], text: str | None) -> None:
        server = self.limits.server_name
        self._send(client, self._line(server, numeric, [client.name, *params], text))

    def _server_reply(self, client: Client, command: str, params: list[str], text: str) -> None:
        self._send(client, self._line(self.limits.server_name, command, params, text))

    def _numeric_spread(
        self, client: Client, numeric: str, params: list[str], items: list[str], text: str | None
    ) -> None:
        """``numeric`` carrying ``items``, over as many lines as ``max_line`` needs.

        With ``text`` the items are middle parameters before it (005);
        without, they are the trailing parameter, space-separated (353, 319).
        """
        head = self._line(self.limits.server_name, numeric, [client.name, *params], text or "")
        room = self.limits.max_line - len(head) - 1
        batch: list[str] = []
        used = 0
        for item in items:
            if batch and used + 1 + len(item.encode()) > room:
                self._spread_line(client, numeric, params, batch, text)
                batch, used = [], 0
            used += len(item.encode()) + (1 if batch else 0)
            batch.append(item)
        if batch:
            self._spread_line(client, numeric, params, batch, text)

    def _spread_line(
        self, client: Client, numeric: str, params: list[str], batch: list[str], text: str | None
    ) -> None:
        if text is None:
            self._numeric(client, numeric, params, " ".join(batch))
        else:
            self._numeric(client, numeric, [*params, *batch], text)

    # -- Lookups ------------------------------------------------------------------------

    @staticmethod
    def _need(params: list[str], count: int, command: str) -> None:
        if len(params) < count:
            raise CommandError("461", [command], "Not enough parameters")

    def _find_channel(self, name: str) -> Channel:
        channel = self._channels.get(ascii_lower(name))
        if channel is None:
            raise CommandError("403", [token(name)], "No such channel")
        return channel

    def _find_user(self, nick: str) -> Client | None:
        """The registered user with this nick. An unregistered connection's nick
        is reserved (433 for others) but it is nobody to talk to yet."""
        user = self._nicks.get(ascii_lower(nick))
        return user if user is not None and user.registered else None

    def _find_target(self, name: str) -> Client | Channel:
        found: Client | Channel | None = (
            self._channels.get(ascii_lower(name)) if name.startswith("#") else self._find_user(name)
        )
        if found is None:
            raise CommandError("401", [token(name)], "No such nick/channel")
        return found

    def _each_target(
        self, client: Client, targets: str, action: Callable[[str], None], quiet: bool = False
    ) -> None:
        """Run ``action`` for each comma-separated target; an error on one spares the rest.

        ``quiet`` swallows the errors instead of replying (for NOTICE).
        """
        seen: set[str] = set()
        for target in targets.split(","):
            folded = ascii_lower(target)
            if not target or folded in seen:
                continue  # A repeated target still gets the message only once.
            seen.add(folded)
            try:
                action(target)
            except CommandError as error:
                if not quiet:
                    self._numeric(client, error.numeric, error.params, error.text)

    @staticmethod
    def _sees(client: Client, channel: Channel) -> bool:
        """Whether ``client`` may learn of ``channel``: +s hides it from outsiders."""
        return "s" not in channel.modes or client.conn in channel.members

    # -- Leaving ------------------------------------------------------------------------

    def _leave(self, client: Client, channel: Channel) -> None:
        """Take ``client`` off ``channel`` (already announced); an empty channel ends."""
        conn = client.conn
        del channel.members[conn]
        channel.ops.discard(conn)
        channel.voiced.discard(conn)
        channel.banned.discard(conn)
        del client.channels[ascii_lower(channel.name)]
        if not channel.members:
            del self._channels[ascii_lower(channel.name)]

    def _remember_nick(self, client: Client) -> None:
        if client.registered and client.nick is not None:
            past = PastNick(
                client.nick, str(client.user), client.host, client.realname, self.wall_time
            )
            self.whowas.append(past)

    def _release_nick(self, client: Client) -> None:
        """Free ``client``'s nick, if the table still gives it to ``client``.

        On a network, a user of another server may have taken the nick an
        unregistered connection here had reserved (the first claim on the bus
        wins), so a nick is only released by whoever holds it.
        """
        folded = ascii_lower(str(client.nick))
        if self._nicks.get(folded) is client:
            del self._nicks[folded]

    def _forget_member(self, client: Client) -> None:
        """What a network remembers of a client beyond these tables (see Federation)."""

    def _opered(self, client: Client) -> bool:
        """Whether ``client``'s matching OPER must first cross the network (see Federation)."""
        return False

    def _welcomed(self, client: Client) -> None:
        """``client`` got its welcome; a network tells it if it is cut off (see Federation)."""

    def _introduce(self, client: Client) -> bool:
        """Whether ``client``'s registration must first cross the network (see Federation)."""
        return False

    def _remove(
        self, client: Client, reason: str, farewell: bytes, flush: bool, remember: bool = True
    ) -> None:
        """Forget ``client``, tell everyone sharing a channel with it once, then close it.

        ``remember``: WHOWAS keeps its nick (not for users split off a network,
        whom each server forgets at a moment of its own).
        """
        peers: dict[ConnId, Client] = {}
        for channel in list(client.channels.values()):
            self._leave(client, channel)
            peers.update(channel.members)
        if client.nick is not None:
            if remember:
                self._remember_nick(client)
            self._release_nick(client)
        del self._clients[client.conn]
        if client.origin is None:
            remaining = self._connections_per_host[client.host] - 1
            if remaining:
                self._connections_per_host[client.host] = remaining
            else:
                del self._connections_per_host[client.host]
            if not client.gone:
                self._effects.append(Close(client.conn, farewell, flush, reason))
        self._forget_member(client)
        if peers:
            self._send_to_all(peers.values(), self._line(client.prefix, "QUIT", [], reason))

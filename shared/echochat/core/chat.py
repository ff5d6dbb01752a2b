"""The chat service's state machine: an IRC subset (RFC 1459/2812), with no I/O at all.

``ChatCore`` holds every client, nick and channel. Adapters call it with
what happened on the wire (a connection opened, bytes arrived, bytes left the
outbound queue, the peer went away, the server is stopping) and carry out the
effects it returns. All protocol decisions live here, so the asyncio, trio and
anyio adapters only move bytes and can be compared line by line.
"""

from __future__ import annotations

import re
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from echochat.core.effects import Close, ConnId, Effect, Send
from echochat.core.errors import CommandError
from echochat.core.framing import FrameEvent, LineFramer, LineTooLong
from echochat.core.limits import CHANNELLEN, NICKLEN, TURN_BYTES, Limits
from echochat.core.message import Message, ascii_lower, command_of, format_message, parse, token
from echochat.core.version import __version__

_NICK = re.compile(rf"[A-Za-z\[\]\\`_^{{|}}][A-Za-z0-9\[\]\\`_^{{|}}\-]{{0,{NICKLEN - 1}}}")
_CHANNEL_FORBIDDEN = frozenset(" ,\x07\0\r\n")
# Characters that would let a username forge the nick!user@host prefix.
_USER_FORBIDDEN = str.maketrans("", "", "@!")
USERLEN = 16

# Commands a client may send before it has registered (NICK and USER done).
_PRE_REGISTRATION = frozenset({"NICK", "USER", "CAP", "PASS", "PING", "PONG", "QUIT", "NOTICE"})

# What a browser or scanner sends when it speaks HTTP to the IRC port (a
# cross-protocol request): such a connection is closed at once, as Redis
# closes one that sends POST or Host:.
_HTTP_WORDS = frozenset(
    {"GET", "HEAD", "POST", "PUT", "DELETE", "OPTIONS", "CONNECT", "PATCH", "TRACE", "HOST:"}
)

# A token counts as whole within this much: deadline() computes when the
# bucket holds one from the same floats that handle_timer() then adds up, and
# rounding could leave it a hair short, so the adapter would wake again at once.
_TOKEN_ROUNDING = 1e-9

Seconds = float
"""A reading of the adapter's monotonic clock; the core only compares and subtracts them."""


@dataclass(eq=False, slots=True)
class Client:
    """One connection's protocol state."""

    conn: ConnId
    host: str
    framer: LineFramer
    connected_at: Seconds
    # Tokens of the flood-control bucket, as of tokens_at.
    tokens: float
    tokens_at: Seconds
    # Whole lines are what counts as activity, so a client that trickles
    # bytes without ever ending a line (slowloris) is still idle.
    last_line_at: Seconds
    # When the keepalive PING went out, while no line has come since.
    ping_sent_at: Seconds | None = None
    # Lines received but not yet executed, held back by flood control (the RecvQ).
    inbox: deque[FrameEvent] = field(default_factory=deque)
    inbox_bytes: int = 0
    # Lines in the inbox that flood control lets through but that the last call
    # left for the next one, its output budget spent (has_ready_lines).
    ready: bool = False
    nick: str | None = None
    user: str | None = None
    realname: str = ""
    registered: bool = False
    # Set by CAP LS/REQ: registration waits for CAP END (IRCv3 capability negotiation).
    negotiating_caps: bool = False
    # Bytes handed to the adapter and not yet reported sent: the SendQ.
    queued: int = 0
    # Bytes queued by the call in progress, for its output budget.
    turn_bytes: int = 0
    # Set when the SendQ overflowed; the client is dropped once the current
    # operation (a whole broadcast) is over, as InspIRCd does.
    overflowed: bool = False
    channels: dict[str, Channel] = field(default_factory=dict)

    @property
    def name(self) -> str:
        """How numerics address this client: its nick once registered, before that ``*``."""
        return self.nick if self.registered and self.nick else "*"

    @property
    def prefix(self) -> str:
        return f"{self.nick}!{self.user}@{self.host}"


@dataclass(eq=False, slots=True)
class Channel:
    name: str
    # Insertion-ordered, so NAMES lists members in the order they joined.
    members: dict[ConnId, Client] = field(default_factory=dict)
    topic: str = ""


Handler = Callable[["ChatCore", Client, list[str]], None]


class ChatCore:
    """Every client, nick and channel of one chat server, driven by events from an adapter."""

    def __init__(self, limits: Limits, created: str) -> None:
        self.limits = limits
        self.created = created
        self._clients: dict[ConnId, Client] = {}
        self._nicks: dict[str, Client] = {}
        self._channels: dict[str, Channel] = {}
        self._connections_per_host: dict[str, int] = {}
        self._next_conn: ConnId = 1
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
        self._shutting_down = False

    # -- The adapter-facing API ---------------------------------------------------------

    def connect(self, host: str, now: Seconds) -> tuple[ConnId, list[Effect]]:
        """A connection was accepted from ``host`` at ``now``: its id, and what to do with it."""
        conn = self._next_conn
        self._next_conn += 1
        if self._shutting_down:
            # Accepted in the same instant as the shutdown began.
            return conn, [Close(conn, self._error_line("Server shutting down"), flush=True)]
        if len(self._clients) >= self.limits.max_clients:
            farewell = self._error_line("Closing link (Server is full)")
            return conn, [Close(conn, farewell, flush=True)]
        # An IPv6 address such as ::1 would start a trailing parameter where
        # it stands as a middle one (WHOIS, WHO); IRC servers write 0::1.
        host = f"0{host}" if host.startswith(":") else host
        max_per_ip = self.limits.max_per_ip
        if max_per_ip and self._connections_per_host.get(host, 0) >= max_per_ip:
            farewell = self._error_line("Closing link (Too many connections from your IP)")
            return conn, [Close(conn, farewell, flush=True)]
        self._connections_per_host[host] = self._connections_per_host.get(host, 0) + 1
        self._clients[conn] = Client(
            conn,
            host,
            LineFramer(self.limits.max_line),
            connected_at=now,
            tokens=self.limits.flood_burst,
            tokens_at=now,
            last_line_at=now,
        )
        return conn, []

    def receive_data(self, conn: ConnId, data: bytes, now: Seconds) -> list[Effect]:
        """Bytes arrived from ``conn`` at ``now``; complete lines are executed in order,
        as fast as flood control allows."""
        client = self._clients.get(conn)
        if client is not None:
            events = client.framer.receive_data(data)
            if events:
                client.last_line_at = now
                client.ping_sent_at = None
                client.inbox.extend(events)
                client.inbox_bytes += sum(self._size(event) for event in events)
                self._run_inbox(client, now)
        return self._finish()

    def has_ready_lines(self, conn: ConnId) -> bool:
        """Whether the last call left lines of ``conn`` that may run now, its output budget spent.

        The adapter then lets its writers run (one turn of its event loop) and
        calls ``handle_timer``, and reads no more from ``conn`` until this is
        False. Each call runs at least one line, so that loop ends.
        """
        client = self._clients.get(conn)
        return client is not None and client.ready

    def sendq(self, conn: ConnId) -> int:
        """Bytes queued for ``conn`` and not yet reported sent (0 for an unknown connection)."""
        client = self._clients.get(conn)
        return 0 if client is None else client.queued

    def deadline(self, conn: ConnId) -> Seconds | None:
        """When ``handle_timer`` must next be called for ``conn``, or None for never.

        An adapter waits for input until then; being woken early is harmless.
        """
        client = self._clients.get(conn)
        if client is None:
            return None
        limits = self.limits
        deadlines: list[Seconds] = []
        if not client.registered and limits.registration_timeout:
            deadlines.append(client.connected_at + limits.registration_timeout)
        if client.registered and limits.ping_interval:
            if client.ping_sent_at is None:
                deadlines.append(client.last_line_at + limits.ping_interval)
            else:
                deadlines.append(client.ping_sent_at + limits.ping_timeout)
        if client.inbox and limits.flood_rate:
            # When the bucket holds a whole token again.
            deadlines.append(client.tokens_at + (1 - client.tokens) / limits.flood_rate)
        return min(deadlines, default=None)

    def handle_timer(self, conn: ConnId, now: Seconds) -> list[Effect]:
        """It is ``now``, at or after ``deadline(conn)``: apply the time policies to ``conn``."""
        client = self._clients.get(conn)
        if client is None:
            return []
        limits = self.limits
        # Lines held back by flood control first: one of them may register
        # the client or count as activity, which the checks below must see.
        self._run_inbox(client, now)
        if client.conn not in self._clients:
            return self._finish()  # QUIT, SendQ or Excess Flood among them.
        if not client.registered:
            if limits.registration_timeout and (
                now >= client.connected_at + limits.registration_timeout
            ):
                farewell = self._error_line("Closing link (Registration timeout)")
                self._remove(client, "Registration timeout", farewell, flush=True)
                return self._finish()
        elif limits.ping_interval:
            if client.ping_sent_at is not None:
                if now >= client.ping_sent_at + limits.ping_timeout:
                    reason = f"Ping timeout: {limits.ping_timeout:g} seconds"
                    farewell = self._error_line(f"Closing link ({reason})")
                    self._remove(client, reason, farewell, flush=True)
                    return self._finish()
            elif now >= client.last_line_at + limits.ping_interval:
                client.ping_sent_at = now
                self._send(client, self._line(None, "PING", [], limits.server_name))
        return self._finish()

    def data_sent(self, conn: ConnId, nbytes: int) -> None:
        """``nbytes`` of ``conn``'s queued data left the outbound queue."""
        client = self._clients.get(conn)
        if client is not None:
            client.queued -= nbytes

    def connection_lost(self, conn: ConnId) -> list[Effect]:
        """The peer closed or reset ``conn`` (a no-op if the core closed it already)."""
        client = self._clients.get(conn)
        if client is not None:
            self._remove(client, "Connection closed", b"", flush=True)
        return self._finish()

    def shutdown(self) -> list[Effect]:
        """The server is stopping: say goodbye to everyone, forget them, admit nobody new."""
        self._shutting_down = True
        farewell = self._error_line("Server shutting down")
        self._effects = [Close(conn, farewell, flush=True) for conn in self._clients]
        self._clients.clear()
        self._nicks.clear()
        self._channels.clear()
        self._connections_per_host.clear()
        return self._finish()

    @property
    def client_count(self) -> int:
        return len(self._clients)

    @property
    def channel_count(self) -> int:
        return len(self._channels)

    # -- Plumbing -----------------------------------------------------------------------

    def _size(self, event: FrameEvent) -> int:
        """A received line's cost in the RecvQ: its bytes and CR LF (a dropped one: the most)."""
        return self.limits.max_line if isinstance(event, LineTooLong) else len(event.data) + 2

    def _run_inbox(self, client: Client, now: Seconds) -> None:
        """Execute ``client``'s waiting lines that flood control lets through at ``now``.

        Lines over the rate wait (the token bucket refills at ``flood_rate`` per
        second); a client with more than ``recvq`` bytes waiting is closed.
        Other clients never wait for it: nothing here blocks.
        """
        limits = self.limits
        if limits.flood_rate:
            elapsed = now - client.tokens_at
            client.tokens = min(limits.flood_burst, client.tokens + elapsed * limits.flood_rate)
            client.tokens_at = now
        client.ready = False
        while client.inbox:
            if client.conn not in self._clients or client.overflowed:
                return  # QUIT or SendQ earlier on: the rest is not executed.
            if limits.flood_rate and client.tokens < 1 - _TOKEN_ROUNDING:
                break
            if self._turn_spent:
                # Bounded work per call: the rest runs in the next one, once the
                # writers have had a turn. Flood control let these lines through,
                # so they take no token yet and do not count against the RecvQ.
                client.ready = True
                return
            if limits.flood_rate:
                client.tokens = max(client.tokens - 1, 0.0)
            event = client.inbox.popleft()
            client.inbox_bytes -= self._size(event)
            if isinstance(event, LineTooLong):
                self._numeric(client, "417", [], "Input line was too long")
            else:
                self._execute(client, event.data)
            # A client overflowed by this line is dropped before the next
            # runs, so when that happens does not depend on how TCP cut the input.
            self._drop_overflowed()
        if (
            client.inbox_bytes > limits.recvq
            and client.conn in self._clients
            and not client.overflowed  # Leaving for SendQ already.
        ):
            farewell = self._error_line("Closing link (Excess Flood)")
            self._remove(client, "Excess Flood", farewell, flush=True)

    def _finish(self) -> list[Effect]:
        self._drop_overflowed()
        effects, self._effects = self._effects, []
        for client in self._turn_clients:
            client.turn_bytes = 0
        self._turn_clients.clear()
        self._turn_spent = False
        return effects

    def _drop_overflowed(self) -> None:
        # Dropping a client for SendQ announces its QUIT, which can overflow
        # another client's SendQ in turn, so loop until nobody is pending.
        while self._overflowed:
            client = self._overflowed.pop(0)
            farewell = self._error_line("Closing link (SendQ exceeded)")
            self._remove(client, "SendQ exceeded", farewell, flush=False)

    def _send(self, client: Client, data: bytes) -> None:
        """Queue ``data`` for ``client`` unless that would overflow its SendQ.

        Never waits for the client: a full queue marks it for disconnection.
        """
        if client.overflowed:
            return
        size = len(data)
        queued = client.queued + size
        if queued > self.limits.sendq:
            client.overflowed = True
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

    def _remove(self, client: Client, reason: str, farewell: bytes, flush: bool) -> None:
        """Forget ``client``, tell everyone sharing a channel with it once, then close it."""
        peers: dict[ConnId, Client] = {}
        for channel in client.channels.values():
            del channel.members[client.conn]
            peers.update(channel.members)
            if not channel.members:
                del self._channels[ascii_lower(channel.name)]
        client.channels.clear()
        if client.nick is not None:
            del self._nicks[ascii_lower(client.nick)]
        del self._clients[client.conn]
        remaining = self._connections_per_host[client.host] - 1
        if remaining:
            self._connections_per_host[client.host] = remaining
        else:
            del self._connections_per_host[client.host]
        self._effects.append(Close(client.conn, farewell, flush))
        if peers:
            self._send_to_all(peers.values(), self._line(client.prefix, "QUIT", [], reason))

    def _execute(self, client: Client, raw: bytes) -> None:
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError:
            command = command_of(raw)
            self._server_reply(
                client, "FAIL", [command, "INVALID_UTF8"], "Message rejected, invalid UTF-8"
            )
            return
        message = parse(text)
        if message is None:
            return  # Blank lines are ignored, as every IRC server does.
        self._dispatch(client, message)

    def _dispatch(self, client: Client, message: Message) -> None:
        command = message.command
        if not client.registered and command in _HTTP_WORDS:
            farewell = self._error_line("Closing link (HTTP request on an IRC port)")
            self._remove(client, "HTTP request", farewell, flush=True)
            return
        if not client.registered and command not in _PRE_REGISTRATION:
            self._numeric(client, "451", [], "You have not registered")
            return
        handler = _HANDLERS.get(command)
        if handler is None:
            self._numeric(client, "421", [token(command)], "Unknown command")
            return
        try:
            handler(self, client, message.params)
        except CommandError as error:
            self._numeric(client, error.numeric, error.params, error.text)

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

    def _try_register(self, client: Client) -> None:
        if (
            client.registered
            or client.negotiating_caps
            or client.nick is None
            or client.user is None
        ):
            return
        client.registered = True
        server, version = self.limits.server_name, f"echochat-{__version__}"
        self._numeric(client, "001", [], f"Welcome to the echochat IRC network {client.prefix}")
        self._numeric(client, "002", [], f"Your host is {server}, running version {version}")
        self._numeric(client, "003", [], f"This server was created {self.created}")
        self._numeric(client, "004", [server, version, "i", "n"], None)
        isupport = [
            "CASEMAPPING=ascii",
            "CHANTYPES=#",
            f"NICKLEN={NICKLEN}",
            f"CHANNELLEN={CHANNELLEN}",
            "NETWORK=echochat",
            "UTF8ONLY",
        ]
        self._numeric(client, "005", isupport, "are supported by this server")
        self._numeric(client, "422", [], "MOTD File is missing")

    def _send_names(self, client: Client, channel: Channel) -> None:
        """353 lines listing the members, as many as the line limit needs, then 366."""
        head = self._line(self.limits.server_name, "353", [client.name, "=", channel.name], "")
        room = self.limits.max_line - len(head)
        batch: list[str] = []
        used = 0
        for member in channel.members.values():
            nick = member.name
            if batch and used + 1 + len(nick) > room:
                self._numeric(client, "353", ["=", channel.name], " ".join(batch))
                batch, used = [], 0
            used += len(nick) + (1 if batch else 0)
            batch.append(nick)
        if batch:
            self._numeric(client, "353", ["=", channel.name], " ".join(batch))
        self._numeric(client, "366", [channel.name], "End of /NAMES list")

    def _send_topic(self, client: Client, channel: Channel) -> None:
        if channel.topic:
            self._numeric(client, "332", [channel.name], channel.topic)
        else:
            self._numeric(client, "331", [channel.name], "No topic is set")

    def _part(self, client: Client, channel: Channel, reason: str | None) -> None:
        params = [channel.name]
        self._send_to_all(
            channel.members.values(), self._line(client.prefix, "PART", params, reason)
        )
        del channel.members[client.conn]
        del client.channels[ascii_lower(channel.name)]
        if not channel.members:
            del self._channels[ascii_lower(channel.name)]

    # -- Commands ------------------------------------------------------------------------

    def _cmd_cap(self, client: Client, params: list[str]) -> None:
        self._need(params, 1, "CAP")
        subcommand = params[0].upper()
        who = client.name
        if subcommand in ("LS", "LIST"):
            # We offer no capabilities; the empty list still completes negotiation.
            client.negotiating_caps = subcommand == "LS" and not client.registered
            self._server_reply(client, "CAP", [who, subcommand], "")
        elif subcommand == "REQ":
            client.negotiating_caps = not client.registered
            requested = params[1] if len(params) > 1 else ""
            self._server_reply(client, "CAP", [who, "NAK"], requested)
        elif subcommand == "END":
            client.negotiating_caps = False
            self._try_register(client)
        else:
            raise CommandError("410", [token(subcommand)], "Invalid CAP command")

    def _cmd_ignore(self, client: Client, params: list[str]) -> None:
        """PASS (no passwords here) and PONG are accepted silently.

        A PONG needs no handler of its own: like any line, it resets the
        keepalive when it arrives (``receive_data``).
        """

    def _cmd_nick(self, client: Client, params: list[str]) -> None:
        if not params or not params[0]:
            raise CommandError("431", [], "No nickname given")
        nick = params[0]
        if not _NICK.fullmatch(nick):
            raise CommandError("432", [token(nick)], "Erroneous nickname")
        owner = self._nicks.get(ascii_lower(nick))
        if owner is not None and owner is not client:
            raise CommandError("433", [nick], "Nickname is already in use")
        if nick == client.nick:
            return
        old_prefix = client.prefix
        if client.nick is not None:
            del self._nicks[ascii_lower(client.nick)]
        self._nicks[ascii_lower(nick)] = client
        client.nick = nick
        if not client.registered:
            self._try_register(client)
            return
        # The user and everyone sharing a channel with them, each once.
        recipients = {client.conn: client}
        for channel in client.channels.values():
            recipients.update(channel.members)
        self._send_to_all(recipients.values(), self._line(old_prefix, "NICK", [nick], None))

    def _cmd_user(self, client: Client, params: list[str]) -> None:
        self._need(params, 4, "USER")
        if client.registered:
            raise CommandError("462", [], "You may not reregister")
        # Without '@' and '!' a name like "@:x" would start with ':', which in
        # the middle parameter of 311 and 352 would begin the trailing one.
        client.user = params[0].translate(_USER_FORBIDDEN).lstrip(":")[:USERLEN] or "user"
        client.realname = params[3]
        self._try_register(client)

    def _cmd_ping(self, client: Client, params: list[str]) -> None:
        self._need(params, 1, "PING")
        server = self.limits.server_name
        self._server_reply(client, "PONG", [server], params[0])

    def _cmd_quit(self, client: Client, params: list[str]) -> None:
        reason = f"Quit: {params[0] if params else 'Client Quit'}"
        self._remove(client, reason, self._error_line(f"Closing link ({reason})"), flush=True)

    def _cmd_join(self, client: Client, params: list[str]) -> None:
        self._need(params, 1, "JOIN")
        if params[0] == "0":
            for channel in list(client.channels.values()):
                self._part(client, channel, None)
            return
        self._each_target(client, params[0], lambda name: self._join(client, name))

    def _join(self, client: Client, name: str) -> None:
        if (
            not name.startswith("#")
            or len(name) < 2
            or len(name.encode()) > CHANNELLEN
            or not _CHANNEL_FORBIDDEN.isdisjoint(name)
        ):
            raise CommandError("403", [token(name)], "No such channel")
        folded = ascii_lower(name)
        channel = self._channels.setdefault(folded, Channel(name))
        if client.conn in channel.members:
            return
        channel.members[client.conn] = client
        client.channels[folded] = channel
        self._send_to_all(
            channel.members.values(), self._line(client.prefix, "JOIN", [channel.name], None)
        )
        self._send_topic(client, channel)
        self._send_names(client, channel)

    def _cmd_part(self, client: Client, params: list[str]) -> None:
        self._need(params, 1, "PART")
        reason = params[1] if len(params) > 1 else None

        def part_one(name: str) -> None:
            channel = self._find_channel(name)
            if client.conn not in channel.members:
                raise CommandError("442", [channel.name], "You're not on that channel")
            self._part(client, channel, reason)

        self._each_target(client, params[0], part_one)

    def _cmd_privmsg(self, client: Client, params: list[str]) -> None:
        self._relay_message(client, params, "PRIVMSG")

    def _cmd_notice(self, client: Client, params: list[str]) -> None:
        # NOTICE never causes an error reply (RFC 2812 section 3.3.2), so that
        # two bots can never loop on each other's errors.
        if client.registered and len(params) >= 2 and params[1]:
            text = params[1]
            self._each_target(
                client,
                params[0],
                lambda target: self._deliver(client, target, "NOTICE", text),
                quiet=True,
            )

    def _relay_message(self, client: Client, params: list[str], command: str) -> None:
        if not params or not params[0]:
            raise CommandError("411", [], f"No recipient given ({command})")
        if len(params) < 2 or not params[1]:
            raise CommandError("412", [], "No text to send")
        text = params[1]
        self._each_target(
            client, params[0], lambda target: self._deliver(client, target, command, text)
        )

    def _deliver(self, client: Client, target: str, command: str, text: str) -> None:
        found = self._find_target(target)
        if isinstance(found, Client):
            self._send(found, self._line(client.prefix, command, [found.name], text))
            return
        if client.conn not in found.members:
            raise CommandError("404", [found.name], "Cannot send to channel")
        line = self._line(client.prefix, command, [found.name], text)
        self._send_to_all((m for m in found.members.values() if m is not client), line)

    def _cmd_names(self, client: Client, params: list[str]) -> None:
        if not params:
            self._numeric(client, "366", ["*"], "End of /NAMES list")
            return

        def names_one(name: str) -> None:
            channel = self._channels.get(ascii_lower(name))
            if channel is None:
                self._numeric(client, "366", [token(name)], "End of /NAMES list")
            else:
                self._send_names(client, channel)

        self._each_target(client, params[0], names_one)

    def _cmd_topic(self, client: Client, params: list[str]) -> None:
        self._need(params, 1, "TOPIC")
        channel = self._find_channel(params[0])
        if len(params) == 1:
            self._send_topic(client, channel)
            return
        if client.conn not in channel.members:
            raise CommandError("442", [channel.name], "You're not on that channel")
        channel.topic = params[1]
        line = self._line(client.prefix, "TOPIC", [channel.name], channel.topic)
        self._send_to_all(channel.members.values(), line)

    def _cmd_mode(self, client: Client, params: list[str]) -> None:
        self._need(params, 1, "MODE")
        target = params[0]
        changes = params[1] if len(params) > 1 else ""
        letters = changes.lstrip("+-")
        if target.startswith("#"):
            channel = self._find_channel(target)
            if not letters:
                self._numeric(client, "324", [channel.name, "+"], None)
            elif letters == "b":
                # Clients ask for the ban list on join; it is always empty here.
                self._numeric(client, "368", [channel.name], "End of channel ban list")
            else:
                raise CommandError("472", [token(letters[0])], "is unknown mode char to me")
            return
        user = self._find_target(target)
        if user is not client:
            raise CommandError("502", [], "Can't change or view modes for other users")
        if letters:
            raise CommandError("501", [], "Unknown MODE flag")
        self._numeric(client, "221", ["+"], None)

    def _cmd_whois(self, client: Client, params: list[str]) -> None:
        self._need(params, 1, "WHOIS")
        nick = params[-1]  # WHOIS [<server>] <nick>
        user = self._find_user(nick)
        if user is None:
            self._numeric(client, "401", [token(nick)], "No such nick/channel")
        else:
            self._numeric(client, "311", [user.name, str(user.user), user.host, "*"], user.realname)
        self._numeric(client, "318", [token(nick)], "End of /WHOIS list")

    def _cmd_lusers(self, client: Client, params: list[str]) -> None:
        """How many users, unregistered connections and channels there are (RFC 2812 3.4.2)."""
        users = sum(1 for other in self._clients.values() if other.registered)
        unknown = len(self._clients) - users
        self._numeric(client, "251", [], f"There are {users} users and 0 invisible on 1 servers")
        if unknown:
            self._numeric(client, "253", [str(unknown)], "unknown connection(s)")
        self._numeric(client, "254", [str(len(self._channels))], "channels formed")
        self._numeric(client, "255", [], f"I have {len(self._clients)} clients and 0 servers")

    def _cmd_who(self, client: Client, params: list[str]) -> None:
        mask = params[0] if params else "*"
        channel = self._channels.get(ascii_lower(mask))
        found = self._find_user(mask)
        members = list(channel.members.values()) if channel else [found] if found else []
        where = channel.name if channel else "*"
        server = self.limits.server_name
        for member in members:
            params_ = [where, str(member.user), member.host, server, member.name, "H"]
            self._numeric(client, "352", params_, f"0 {member.realname}")
        self._numeric(client, "315", [token(mask)], "End of WHO list")


_HANDLERS: dict[str, Handler] = {
    "CAP": ChatCore._cmd_cap,
    "PASS": ChatCore._cmd_ignore,
    "PONG": ChatCore._cmd_ignore,
    "NICK": ChatCore._cmd_nick,
    "USER": ChatCore._cmd_user,
    "PING": ChatCore._cmd_ping,
    "QUIT": ChatCore._cmd_quit,
    "JOIN": ChatCore._cmd_join,
    "PART": ChatCore._cmd_part,
    "PRIVMSG": ChatCore._cmd_privmsg,
    "NOTICE": ChatCore._cmd_notice,
    "NAMES": ChatCore._cmd_names,
    "TOPIC": ChatCore._cmd_topic,
    "MODE": ChatCore._cmd_mode,
    "WHOIS": ChatCore._cmd_whois,
    "WHO": ChatCore._cmd_who,
    "LUSERS": ChatCore._cmd_lusers,
}

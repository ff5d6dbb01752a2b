"""The chat service's state machine: an IRC server (RFC 1459/2812), with no I/O at all.

``ChatCore`` is what an adapter talks to: it tells the core what happened on
the wire (a connection opened, bytes arrived, bytes left the outbound queue,
the peer went away, the server is stopping) and carries out the effects it
returns. This module is the connection bookkeeping: admission, framing, flood
control, the time policies, the SendQ, and dispatching each line to its
command handler. The handlers live in ``echochat.core.commands`` and the
tables they work on in ``echochat.core.network`` and ``echochat.core.state``,
so the asyncio, trio and anyio adapters only move bytes and can be compared
line by line.
"""

from __future__ import annotations

from echochat.core.commands import HANDLERS, PRE_REGISTRATION
from echochat.core.effects import (
    Close,
    CloseLink,
    ConnId,
    Effect,
    LinkEffect,
    LinkRole,
    LinkSend,
)
from echochat.core.errors import CommandError
from echochat.core.federation import Federation, Phase
from echochat.core.framing import FrameEvent, LineFramer, LineTooLong
from echochat.core.limits import Limits
from echochat.core.message import Message, command_of, parse, token
from echochat.core.state import Client, Seconds, UnixTime

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


class ChatCore(Federation):
    """Every client, nick and channel of one chat server, driven by events from an adapter."""

    __slots__ = ("_shutting_down",)

    def __init__(
        self,
        limits: Limits,
        created: str,
        epoch: UnixTime = 0.0,
        network_seed: int | None = None,
    ) -> None:
        """``created`` is shown in 003; ``epoch`` is the Unix time when the adapter's
        clock read 0, so the core can show dates without reading a clock.

        With ``network_seed`` (random bits from the adapter) the server is part
        of a network over Redis (``--redis``; ``echochat.core.federation``): the
        adapter then drives the link with the ``link_*`` calls.
        """
        super().__init__(limits, created, epoch, network_seed)
        self._shutting_down = False

    # -- The adapter-facing API ---------------------------------------------------------

    def connect(self, host: str, now: Seconds) -> tuple[ConnId, list[Effect]]:
        """A connection was accepted from ``host`` at ``now``: its id, and what to do with it."""
        conn = self._next_conn
        self._next_conn += 1
        self.now = now
        if self._shutting_down:
            # Accepted in the same instant as the shutdown began.
            farewell = self._error_line("Server shutting down")
            return conn, [Close(conn, farewell, flush=True, reason="Server shutting down")]
        if len(self._clients) - len(self._remote) >= self.limits.max_clients:
            farewell = self._error_line("Closing link (Server is full)")
            return conn, [Close(conn, farewell, flush=True, reason="Server is full")]
        # An IPv6 address such as ::1 would start a trailing parameter where
        # it stands as a middle one (WHOIS, WHO); IRC servers write 0::1.
        host = f"0{host}" if host.startswith(":") else host
        max_per_ip = self.limits.max_per_ip
        if max_per_ip and self._connections_per_host.get(host, 0) >= max_per_ip:
            reason = "Too many connections from your IP"
            farewell = self._error_line(f"Closing link ({reason})")
            return conn, [Close(conn, farewell, flush=True, reason=reason)]
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

    def registered_as(self, conn: ConnId) -> str | None:
        """``conn``'s ``nick!user@host`` once it has registered; None before, or once gone."""
        client = self._clients.get(conn)
        return client.prefix if client is not None and client.registered else None

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
                    self._disconnect(client, reason, farewell, flush=True)
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
        if client is not None and client.origin is None:
            self._disconnect(client, "Connection closed", b"", flush=True)
        return self._finish()

    def shutdown(self) -> list[Effect]:
        """The server is stopping: say goodbye to everyone, forget them, admit nobody new."""
        self._shutting_down = True
        if self.joined:
            # The others split our users off now rather than after SILENCE.
            self._publish(
                b"SPLIT",
                [self.server_name.encode(), self.incarnation.encode(), b"Server shutting down"],
                self.now,
            )
        if self.link is not None and self.link.up:
            # The name is free at once, not when the lease runs out: a restart is not refused.
            self._link_effects.append(LinkSend(*self.link.release(self.now)))
            self._link_effects.append(CloseLink("Server shutting down", flush=True))
        self.phase = Phase.ALONE
        farewell = self._error_line("Server shutting down")
        self._effects.extend(
            Close(conn, farewell, flush=True, reason="Server shutting down")
            for conn, client in self._clients.items()
            if client.origin is None and not client.gone
        )
        self._clients.clear()
        self._remote.clear()
        self._nicks.clear()
        self._channels.clear()
        self._connections_per_host.clear()
        return self._finish()

    # -- The link to Redis (--redis), in the same vocabulary --------------------------------

    def take_link_effects(self) -> list[LinkEffect]:
        """What the calls so far ask of the link to Redis: bytes to send, or closing it.

        Kept apart from the clients' effects, which every call returns, so that
        a server without ``--redis`` never sees them.
        """
        effects, self._link_effects = self._link_effects, []
        return effects

    def link_retry_delay(self) -> Seconds:
        """How long to wait before connecting to Redis (again): 0 at first, then backing off."""
        return self._need_link().retry_delay()

    def link_opened(self, now: Seconds) -> list[Effect]:
        """Both connections to Redis are open: take the server's name, subscribe, join."""
        self.now = now
        self._open_link(now)
        return self._finish()

    def link_receive(self, role: LinkRole, data: bytes, now: Seconds) -> list[Effect]:
        """Bytes from Redis on ``role``'s connection; events run in a bounded turn.

        Raises ``LinkRefusedError`` if the server's name is held by another live
        server and this server has never been on the network: it must not start.
        """
        self.now = now
        link = self._need_link()
        if link.opened:
            self._on_link_events(link.receive_data(role, data, now), now)
            self._run_bus(now)
        return self._finish()

    def link_has_ready_messages(self) -> bool:
        """Whether events wait that the last call left for the next, its output budget spent.

        As with ``has_ready_lines``: the adapter lets its writers run, calls
        ``link_continue``, and reads no more from Redis until this is False.
        """
        return bool(self._bus_inbox)

    def link_continue(self, now: Seconds) -> list[Effect]:
        """Run the next turn of waiting events."""
        self._run_bus(now)
        return self._finish()

    def link_data_sent(self, role: LinkRole, nbytes: int) -> None:
        """``nbytes`` queued for Redis on ``role``'s connection reached the kernel."""
        self._need_link().data_sent(role, nbytes)

    def link_deadline(self) -> Seconds | None:
        """When ``link_handle_timer`` must run: heartbeats, silence, the lease, replies."""
        return self._link_deadline()

    def link_handle_timer(self, now: Seconds) -> list[Effect]:
        self.now = now
        self._link_timer(now)
        if self.link is not None and self.link.overloaded():
            self._lose_link("Redis stopped reading this server's events", now)
        return self._finish()

    def link_closed(self, reason: str, now: Seconds) -> list[Effect]:
        """A connection to Redis failed, closed or could not be opened (a no-op if the core
        closed the link already): go on alone, and try again after ``link_retry_delay``."""
        self.now = now
        if self._link_cut:
            self._link_cut = False  # The core cut it and went on already.
        else:
            self._need_link().close()
            self._go_alone(reason)
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
        self.now = now
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
            self._disconnect(client, "Excess Flood", farewell, flush=True)

    def _finish(self) -> list[Effect]:
        self._drop_overflowed()
        effects, self._effects = self._effects, []
        for client in self._turn_clients:
            client.turn_bytes = 0
        self._turn_clients.clear()
        self._turn_spent = False
        return effects

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
        if self._goes_through_bus(client, message.command):
            # Every server runs it, this one too, when Redis delivers it.
            self._publish_for(client, b"L", raw, self.now)
            return
        self._dispatch(client, message)

    def _dispatch(self, client: Client, message: Message) -> None:
        command = message.command
        if not client.registered and command in _HTTP_WORDS:
            farewell = self._error_line("Closing link (HTTP request on an IRC port)")
            self._remove(client, "HTTP request", farewell, flush=True)
            return
        if not client.registered and command not in PRE_REGISTRATION:
            self._numeric(client, "451", [], "You have not registered")
            return
        handler = HANDLERS.get(command)
        if handler is None:
            self._numeric(client, "421", [token(command)], "Unknown command")
            return
        try:
            handler(self, client, message.params)
        except CommandError as error:
            self._numeric(client, error.numeric, error.params, error.text)

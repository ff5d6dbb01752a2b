"""Channels across servers: every server of a network runs the same commands in the same order.

With ``--redis`` a server joins a network of echochat servers that share one
Redis. The design is state-machine replication over one Redis pub/sub
channel, the bus:

* A registered user's command is not run where it arrives: it is published on
  the bus, and every server runs it when Redis delivers it, in the one order
  Redis gives every subscriber. Each server keeps the whole network's tables
  (users, channels, modes) and, from the same commands in the same order,
  decides the same; it then queues the lines only for its own users, and a
  query (WHO, WHOIS, ...) is answered only by the server of whoever asked.
  So a channel's messages reach every member in one order, local members
  included, and a nick is claimed by whichever claim the bus carries first,
  on every server alike (what ``SET NX`` on one key would decide).
* What only one server can know is decided there and published as a fact:
  a connection that closed (``Q``), an operator whose password matched (``O``),
  a user who finished registering (``U``).
* A server joins by asking for the network's tables (``HELLO``); any server
  already in answers with a snapshot (``SNAP``) taken at that point of the
  bus. If nobody answers, the network is empty and the first ``GEN`` starts
  it. The joining server then introduces its own users and their channels
  (``BURST``), which every server merges the same way: the older nick keeps
  it and the older channel keeps its modes (TS6's rules).
* Servers publish a heartbeat (``H``); a server silent for ``split_after`` seconds
  is split off (``SPLIT``): its users quit with ``*.net *.split``. A server
  that loses Redis splits the others off locally, serves its own users
  alone, tells them, and joins again when the link returns.

Every event is ``KIND SERVER INCARNATION WALLTIME FIELDS...``. The incarnation
is new each time a server joins, so that events of an earlier life of a
server, still in flight, are ignored.
"""

from __future__ import annotations

import json
import random
from collections import deque
from dataclasses import dataclass
from enum import Enum
from typing import Any

from echochat.core.commands.channels import send_topic
from echochat.core.commands.registration import complete_registration, rename
from echochat.core.effects import Close, CloseLink, ConnId, LinkEffect, LinkSend
from echochat.core.framing import LineFramer
from echochat.core.limits import HEARTBEAT, Limits
from echochat.core.message import Message, ascii_lower, parse
from echochat.core.network import Network
from echochat.core.redislink import (
    LEASE_TTL,
    BusMessage,
    LinkEvent,
    LinkFailed,
    LinkUp,
    NameTaken,
    RedisLink,
)
from echochat.core.state import Ban, Channel, Client, PastNick, Seconds, UnixTime, compile_mask
from echochat.core.version import __version__

# How long a joining server waits for a snapshot before it takes the network to be empty.
SYNC_WAIT = 1.0
SPLIT_REASON = "*.net *.split"

# Commands run only by the server of the user who sent them, when Redis
# delivers them: they change nothing the other servers keep, and their answer
# is for the sender alone, or they read this server's own configuration (OPER's
# hashes, the MOTD). They still cross the bus, so that a user's answers come
# in the order of its commands (a PING after a JOIN is answered after it).
ORIGIN_ONLY = frozenset(
    {"WHO", "WHOIS", "WHOWAS", "NAMES", "LIST", "ISON", "USERHOST", "PING"}
    | {"MOTD", "VERSION", "TIME", "INFO", "LUSERS", "OPER"}
)
# Commands run at once by the user's server and never published: a PONG only
# counts as activity, and the rest only refuse (462) once a user is registered.
LOCAL_COMMANDS = frozenset({"PONG", "CAP", "PASS", "USER"})


class LinkRefusedError(Exception):
    """The network refuses this server (its name is held by another live server)."""


class Phase(Enum):
    """Where this server is in joining the network."""

    ALONE = "alone"  # No link to Redis: serving its own users only.
    JOINING = "joining"  # Linked; its HELLO is on its way through Redis.
    WAITING = "waiting"  # Its HELLO came back; waiting for a snapshot (or GEN).
    JOINED = "joined"  # Every registered user's command goes through Redis.


class Federation(Network):
    """The tables of one server, kept in step with every server of its network."""

    __slots__ = (
        "_answered",
        "_bus_inbox",
        "_ever_up",
        "_gen_sent",
        "_heard",
        "_held",
        "_link_cut",
        "_link_effects",
        "_local_now",
        "_next_conn",
        "_next_heartbeat",
        "_remote",
        "_rng",
        "_servers",
        "_split",
        "_split_asked",
        "_wait_until",
        "incarnation",
        "link",
        "phase",
        "server_name",
    )

    def __init__(
        self, limits: Limits, created: str, epoch: UnixTime, network_seed: int | None
    ) -> None:
        super().__init__(limits, created, epoch)
        self._next_conn: ConnId = 1
        self.phase = Phase.ALONE
        self.link: RedisLink | None = None
        self._rng = random.Random(network_seed)
        if network_seed is not None:
            self.link = RedisLink(limits.server_name, self._new_id(), self._rng)
        self.server_name = limits.server_name
        self.incarnation = ""
        # Shared by every joined server: who is on the network, by name, with
        # its incarnation; incarnations split off (their late events are ignored).
        self._servers: dict[str, str] = {}
        self._split: set[tuple[str, str]] = set()
        self._remote: dict[tuple[str, ConnId], Client] = {}
        # This server's own view: when it last heard each server, which
        # servers it has asked to split, and which HELLOs it answered.
        self._heard: dict[str, Seconds] = {}
        self._split_asked: set[tuple[str, str]] = set()
        self._answered: set[tuple[str, str]] = set()
        self._next_heartbeat: Seconds = 0.0
        self._wait_until: Seconds = 0.0
        self._gen_sent = False
        # Events that came while waiting for a snapshot, replayed on top of it.
        self._held: list[bytes] = []
        # Events not yet run: a bounded turn of work per call, as for a client's lines.
        self._bus_inbox: deque[bytes] = deque()
        self._ever_up = False
        # What to do on the link, apart from the clients' effects (take_link_effects).
        self._link_effects: list[LinkEffect] = []
        # The core cut the link (CloseLink); the adapter's link_closed is then a no-op.
        self._link_cut = False
        # The adapter's clock at the event being run (self.now is then the event's time).
        self._local_now: Seconds = 0.0

    def _new_id(self) -> str:
        return f"{self._rng.getrandbits(48):012x}"

    @property
    def joined(self) -> bool:
        return self.phase is Phase.JOINED

    # -- The link's lifecycle, driven by the adapter -----------------------------------------

    def link_retry_delay(self) -> Seconds:
        return self._need_link().retry_delay()

    def _need_link(self) -> RedisLink:
        if self.link is None:
            raise RuntimeError("this server was started without --redis")
        return self.link

    def _open_link(self, now: Seconds) -> None:
        for role, data in self._need_link().open(now):
            self._link_effects.append(LinkSend(role, data))

    def _on_link_events(self, events: list[LinkEvent], now: Seconds) -> None:
        for event in events:
            if isinstance(event, BusMessage):
                self._bus_inbox.append(event.payload)
            elif isinstance(event, LinkUp):
                self._ever_up = True
                self._hello(now)
            elif isinstance(event, NameTaken):
                message = (
                    f"the server name {self.server_name!r} is in use by another live server "
                    "on this network (a server killed just now frees it within "
                    f"{LEASE_TTL:g} s)"
                )
                if not self._ever_up:
                    raise LinkRefusedError(message)
                self._lose_link(message, now)
            elif isinstance(event, LinkFailed):
                self._lose_link(event.reason, now)

    def _lose_link(self, reason: str, now: Seconds) -> None:
        """The link failed or was cut: close it, and go on alone until it is back."""
        link = self._need_link()
        if link.opened:
            link.close()
            self._link_cut = True
            self._link_effects.append(CloseLink(reason, flush=False))
        self._go_alone(reason)

    def _go_alone(self, reason: str) -> None:
        """Forget every other server: its users quit with ``*.net *.split`` for ours."""
        was = self.phase
        self.phase = Phase.ALONE
        self._bus_inbox.clear()
        self._held.clear()
        if was is Phase.ALONE:
            return
        for name in list(self._servers):
            if name != self.server_name:
                self._split_server(name)
        self._servers.clear()
        self._heard.clear()
        self._settle_own_users()
        if was is Phase.JOINED:
            self._tell_users(
                f"Lost the link to the network ({reason}). Only users of this server "
                "can be reached until it is back; lines sent just now may not have "
                "reached the others. Reconnecting."
            )

    def _settle_own_users(self) -> None:
        """Alone now: what this server's users waited for from Redis will not come."""
        for client in list(self._clients.values()):
            if client.gone:
                super()._remove(client, client.leaving or "Connection closed", b"", flush=True)
            elif client.introducing:
                # Its password, if any, was checked before it was introduced.
                complete_registration(self, client)
                self._run_held_lines(client)

    def _tell_users(self, text: str) -> None:
        for client in list(self._clients.values()):
            if client.registered and client.origin is None:
                self._server_reply(client, "NOTICE", [client.name], f"*** {text}")

    # -- Joining -----------------------------------------------------------------------------

    def _hello(self, now: Seconds) -> None:
        self.incarnation = self._new_id()
        self.phase = Phase.JOINING
        self._gen_sent = False
        self._publish(b"HELLO", [__version__.encode()], now)

    def _sync(self, snapshot: dict[str, Any] | None, now: Seconds) -> None:
        """Take the network's tables (None: it is empty), then introduce this server's users."""
        burst = self._burst_of_own_users()
        # Our users leave every channel and give up their nicks here, silently:
        # the BURST brings them back, merged, at its place in the bus's order,
        # which is where every other server merges them too.
        for client in list(self._clients.values()):
            if client.origin is None and client.registered:
                for channel in list(client.channels.values()):
                    self._leave(client, channel)
                self._release_nick(client)
        if snapshot is not None:
            self._load(snapshot, now)
        self.phase = Phase.JOINED
        self._tell_users_if_rejoined()
        self._publish(b"BURST", [json.dumps(burst).encode()], now)
        self._next_heartbeat = now + HEARTBEAT
        held, self._held = self._held, []
        self._bus_inbox.extendleft(reversed(held))

    def _tell_users_if_rejoined(self) -> None:
        if any(c.registered and c.origin is None for c in self._clients.values()):
            self._tell_users(
                "Linked to the network: users of the other servers can be reached again."
            )

    # -- Sending events ----------------------------------------------------------------------

    def _publish(self, kind: bytes, fields: list[bytes], now: Seconds) -> None:
        head = b" ".join(
            [
                kind,
                self.server_name.encode(),
                self.incarnation.encode(),
                repr(self.wall_time).encode(),
            ]
        )
        payload = b" ".join([head, *fields])
        role, data = self._need_link().publish(payload, now)
        self._link_effects.append(LinkSend(role, data))

    def _publish_for(self, client: Client, kind: bytes, tail: bytes, now: Seconds) -> None:
        self._publish(kind, [str(client.conn).encode(), tail], now)

    def _introduce(self, client: Client) -> bool:
        if not self.joined:
            return False
        client.introducing = True
        fields = {"nick": client.nick, "user": client.user, "host": client.host}
        fields["realname"] = client.realname
        self._publish_for(client, b"U", json.dumps(fields).encode(), self.now)
        return True

    def _welcomed(self, client: Client) -> None:
        if self.link is not None and not self.joined:
            self._server_reply(
                client,
                "NOTICE",
                [client.name],
                "*** This server is not linked to its network yet (Redis cannot be reached): "
                "only users of this server can be reached until it is.",
            )

    def _goes_through_bus(self, client: Client, command: str) -> bool:
        return self.joined and client.registered and command not in LOCAL_COMMANDS

    def _disconnect(self, client: Client, reason: str, farewell: bytes, flush: bool) -> None:
        """This server closed ``client``'s connection; on a network its QUIT crosses it first."""
        if not (self.joined and client.registered and client.origin is None):
            # (An introduction in flight keeps it, closed, until it is back: _remove.)
            self._remove(client, reason, farewell, flush)
            return
        if client.gone:
            return
        client.gone = client.silent = True
        client.leaving = reason
        self._effects.append(Close(client.conn, farewell, flush, reason))
        self._publish_for(client, b"Q", reason.encode(), self.now)

    def _opered(self, client: Client) -> bool:
        """OPER matched here; on a network every server must learn it from Redis."""
        if not self.joined:
            return False
        self._publish_for(client, b"O", b"", self.now)
        return True

    # -- Receiving events --------------------------------------------------------------------

    def _run_bus(self, now: Seconds) -> None:
        """Run waiting events until done or the turn's output budget is spent."""
        while self._bus_inbox and not self._turn_spent:
            payload = self._bus_inbox.popleft()
            try:
                self._apply(payload, now)
            except (ValueError, KeyError, TypeError, IndexError) as error:
                # Only echochat servers publish on the bus; anything else there
                # means the network cannot be trusted: join it again.
                self._lose_link(f"a malformed event on the bus ({error})", now)
                return
            self._drop_overflowed()

    def _drop_overflowed(self) -> None:
        # Dropping a client for SendQ announces its QUIT, which can overflow
        # another client's SendQ in turn, so loop until nobody is pending.
        while self._overflowed:
            client = self._overflowed.pop(0)
            farewell = self._error_line("Closing link (SendQ exceeded)")
            self._disconnect(client, "SendQ exceeded", farewell, flush=False)

    def _apply(self, payload: bytes, now: Seconds) -> None:
        self._local_now = now
        event = Event.parse(payload)
        if self.phase is Phase.JOINING:
            if event.kind == b"HELLO" and event.sender == self._me:
                self.phase = Phase.WAITING
                self._wait_until = now + SYNC_WAIT
        elif self.phase is Phase.WAITING:
            self._apply_waiting(event, now)
        else:
            # Times shown to users (333, 329, 317) are the sender's: the same everywhere.
            self.now = event.wall_time - self.epoch
            self.replicating = True
            try:
                self._apply_joined(event, now)
            finally:
                self.replicating = False

    @property
    def _me(self) -> tuple[str, str]:
        return self.server_name, self.incarnation

    def _apply_waiting(self, event: Event, now: Seconds) -> None:
        if event.kind == b"SNAP":
            target, version, body = event.rest.split(b" ", 2)
            if target.decode() != self.incarnation:
                return
            if version.decode() != __version__:
                reason = (
                    f"the network runs echochat {version.decode()}, this server "
                    f"{__version__}: servers of one network must run one version"
                )
                self._lose_link(reason, now)
                return
            self._sync(json.loads(body), now)
        elif event.kind == b"GEN":
            # Nobody was in: the network starts empty, here, for everyone waiting.
            self._held.clear()
            self._sync(None, now)
        else:
            self._held.append(event.payload)

    def _apply_joined(self, event: Event, now: Seconds) -> None:
        kind, (server, incarnation) = event.kind, event.sender
        if kind == b"HELLO":
            if server != self.server_name:
                self._answer_hello(server, incarnation, now)
        elif kind == b"GEN":
            if event.sender in self._answered:
                # It gave up waiting for the snapshot we sent: it started from
                # nothing, so it must join again.
                self._ask_split(server, incarnation, "joined without the network's state", now)
        elif kind == b"BURST":
            self._apply_burst(server, incarnation, json.loads(event.rest), now)
        elif kind == b"SPLIT":
            victim, victim_incarnation, reason = event.rest.decode().split(" ", 2)
            self._apply_split(victim, victim_incarnation, reason, now)
        elif self._servers.get(server) == incarnation:  # Else not (or no longer) on the network.
            self._heard[server] = now
            if kind in _USER_EVENTS:
                self._apply_user_event(event)
            elif kind == b"H" and server == self.server_name:
                self._find_silent_servers(now)

    def _apply_user_event(self, event: Event) -> None:
        conn_field, _, tail = event.rest.partition(b" ")
        server, conn = event.sender[0], int(conn_field)
        if event.kind == b"U":
            self._apply_introduction(server, conn, json.loads(tail))
            return
        client = self._member(server, conn)
        if client is None:
            return
        if event.kind == b"L":
            self._apply_line(client, tail)
        elif event.kind == b"Q":
            self._remove(client, tail.decode(), b"", flush=True)
        else:
            self._apply_oper(client)

    def _member(self, server: str, conn: ConnId) -> Client | None:
        if server == self.server_name:
            return self._clients.get(conn)
        return self._remote.get((server, conn))

    def _apply_line(self, client: Client, raw: bytes) -> None:
        message = parse(raw.decode("utf-8"))
        if message is None or (client.origin is not None and message.command in ORIGIN_ONLY):
            return
        self._dispatch(client, message)

    def _dispatch(self, client: Client, message: Message) -> None:
        """Run one command (ChatCore's dispatcher); declared here for the bus's lines."""

    def _apply_oper(self, client: Client) -> None:
        if client.is_oper:
            return
        client.modes.add("o")
        self._send(client, self._line(client.prefix, "MODE", [str(client.nick)], "+o"))
        self._numeric(client, "381", [], "You are now an IRC operator")

    def _apply_introduction(self, server: str, conn: ConnId, fields: dict[str, str]) -> None:
        nick = fields["nick"]
        owner = self._nicks.get(ascii_lower(nick))
        taken = owner is not None and owner.registered
        if server != self.server_name:
            if not taken:
                user = self._new_remote(server, conn, fields)
                user.signon_at = user.nick_at = self.wall_time
                self._register_remote(user)
            return
        client = self._clients.get(conn)
        if client is None or not client.introducing:
            return  # Closed while unregistered: introduced nowhere, and no Q follows.
        client.introducing = False
        if taken:
            self._release_nick(client)
            client.nick = None
            if client.gone:
                super()._remove(client, "Connection closed", b"", flush=True)
            else:
                self._numeric(client, "433", [nick], "Nickname is already in use")
            return
        # It registers under the nick every server saw in its introduction;
        # a NICK it sent meanwhile (unregistered, so only here) follows as
        # a nick change, which crosses the network like any other.
        later = client.nick if client.nick != nick else None
        self._release_nick(client)
        self._nicks[ascii_lower(nick)] = client
        client.nick = nick
        complete_registration(self, client)
        if client.gone:
            # It left while its introduction crossed: every server added it, so
            # every server must now see it go.
            self._publish_for(client, b"Q", client.leaving.encode(), self.now)
            return
        if later is not None:
            self._publish_for(client, b"L", f"NICK {later}".encode(), self.now)
        self._run_held_lines(client)

    def _run_held_lines(self, client: Client) -> None:
        """Run what ``client`` sent after NICK and USER while it was introduced (a JOIN sent
        at once with them, say), now that it is registered, in the order it sent them."""
        if not client.inbox:
            return
        # Outside the event's replication, and past the turn's output budget: the
        # adapter waits for no wake-up from the bus, and these lines are at most
        # a RecvQ's worth. Flood control still holds what it must (deadline()).
        replicating, spent = self.replicating, self._turn_spent
        self.replicating = False
        try:
            while True:
                self._turn_spent = False
                self._run_inbox(client, self._local_now)
                if not client.ready:
                    break
        finally:
            self.replicating = replicating
            self._turn_spent = spent or self._turn_spent

    def _run_inbox(self, client: Client, now: Seconds) -> None:
        """Run ``client``'s waiting lines (ChatCore's); declared here for the held ones."""

    def _remove(
        self, client: Client, reason: str, farewell: bytes, flush: bool, remember: bool = True
    ) -> None:
        if client.introducing and not client.gone:
            # Its introduction is on the bus, and every server will add it:
            # it is closed now and forgotten when its QUIT comes back.
            client.gone = client.silent = True
            client.leaving = reason
            self._effects.append(Close(client.conn, farewell, flush, reason))
            return
        super()._remove(client, reason, farewell, flush, remember)

    def _new_remote(self, server: str, conn: ConnId, fields: dict[str, Any]) -> Client:
        local_conn = self._next_conn
        self._next_conn += 1
        user = Client(
            local_conn,
            fields["host"],
            _NO_FRAMER,
            connected_at=self.now,
            tokens=0.0,
            tokens_at=self.now,
            last_line_at=self.now,
            silent=True,
            origin=server,
            origin_conn=conn,
        )
        user.nick, user.user, user.realname = fields["nick"], fields["user"], fields["realname"]
        user.spoke_at = self.now
        return user

    def _register_remote(self, user: Client) -> None:
        user.registered = True
        self._clients[user.conn] = user
        self._nicks[ascii_lower(str(user.nick))] = user
        self._remote[(str(user.origin), user.origin_conn)] = user
        users = sum(1 for other in self._clients.values() if other.registered)
        self.most_users = max(self.most_users, users)

    def _forget_member(self, client: Client) -> None:
        if client.origin is not None:
            del self._remote[(client.origin, client.origin_conn)]

    # -- Servers coming and going ------------------------------------------------------------

    def _answer_hello(self, server: str, incarnation: str, now: Seconds) -> None:
        self._answered.add((server, incarnation))
        snapshot = json.dumps(self._snapshot()).encode()
        self._publish(b"SNAP", [incarnation.encode(), __version__.encode(), snapshot], now)

    def _ask_split(self, server: str, incarnation: str, reason: str, now: Seconds) -> None:
        if (server, incarnation) not in self._split_asked:
            self._split_asked.add((server, incarnation))
            fields = [server.encode(), incarnation.encode(), reason.encode()]
            self._publish(b"SPLIT", fields, now)

    def _apply_split(self, victim: str, incarnation: str, reason: str, now: Seconds) -> None:
        if (victim, incarnation) in self._split:
            return
        self._split.add((victim, incarnation))
        if (victim, incarnation) == self._me:
            # The others dropped us (we were silent too long): join again.
            self._go_alone(f"this server was split from the network: {reason}")
            self._hello(now)
            return
        if self._servers.get(victim) == incarnation:
            self._split_server(victim)
            del self._servers[victim]
            self._heard.pop(victim, None)

    def _split_server(self, name: str) -> None:
        """Every user of server ``name`` quits with ``*.net *.split``; their nicks are free."""
        for client in [c for c in self._clients.values() if c.origin == name]:
            self._remove(client, SPLIT_REASON, b"", flush=True, remember=False)

    def _apply_burst(
        self, server: str, incarnation: str, burst: dict[str, Any], now: Seconds
    ) -> None:
        if (server, incarnation) in self._split:
            return
        if server in self._servers and self._servers[server] != incarnation:
            self._split.add((server, self._servers[server]))
            self._split_server(server)
        self._servers[server] = incarnation
        self._heard[server] = now
        mine = server == self.server_name
        joined: dict[tuple[str, ConnId], Client] = {}
        for fields in burst["users"]:
            user = self._bursted_user(server, fields, mine)
            if user is not None:
                joined[(server, fields["conn"])] = user
        for fields in burst["channels"]:
            self._merge_channel(fields, joined, server)

    def _bursted_user(self, server: str, fields: dict[str, Any], mine: bool) -> Client | None:
        if mine:
            user = self._clients.get(fields["conn"])
            if user is None or not user.registered:
                return None
        else:
            user = self._new_remote(server, fields["conn"], fields)
            user.modes = set(fields["modes"])
            user.away = fields["away"]
            user.signon_at = fields["signon"]
        user.nick_at = fields["nick_at"]
        nick = str(fields["nick"])
        folded = ascii_lower(nick)
        holder = self._nicks.get(folded)
        if mine:
            user.nick = nick
        else:
            self._register_remote(user)
            if holder is None:
                return user
        if holder is None or holder is user or not holder.registered:
            self._nicks[folded] = user
            return user
        # Two users with one nick: the older keeps it, the other is renamed
        # (TS6's SAVE); on a tie the newcomer yields.
        if holder.nick_at <= user.nick_at:
            # The holder keeps it (_register_remote gave the table's entry to
            # the newcomer, and renaming the newcomer frees whatever it holds).
            loser, self._nicks[folded] = user, holder
        else:
            loser, self._nicks[folded] = holder, user
        rename(self, loser, self._free_nick(loser))
        if loser is user and user.origin is None and user.nick is not None:
            self._nicks[ascii_lower(user.nick)] = user
        return user

    def _free_nick(self, client: Client) -> str:
        """A nick no one has, the same on every server: ``Guest`` and a number."""
        number = client.origin_conn if client.origin is not None else client.conn
        while True:
            candidate = f"Guest{number}"
            if ascii_lower(candidate) not in self._nicks:
                return candidate
            number += 100_000

    def _merge_channel(
        self, fields: dict[str, Any], joined: dict[tuple[str, ConnId], Client], server: str
    ) -> None:
        """One channel of a BURST: its members join; of two channels the older one's modes win."""
        newcomers = [
            (joined[(server, conn)], status)
            for conn, status in fields["members"]
            if (server, conn) in joined
        ]
        if not newcomers:
            return
        folded = ascii_lower(fields["name"])
        channel = self._channels.get(folded)
        created = float(fields["created"])
        before: list[Client] = []
        # TS6: the older channel keeps its modes and its members their status;
        # the newer side loses them. Of the same age, both keep theirs.
        keep_status = True
        if channel is None:
            channel = Channel(fields["name"], created_at=created)
            self._channels[folded] = channel
            _adopt_modes(channel, fields)
        else:
            before = list(channel.members.values())
            keep_status = created <= channel.created_at
            if created < channel.created_at:
                self._strip_status(channel)
                channel.created_at = created
                _adopt_modes(channel, fields)
                self._announce_modes(before, channel)
        for user, status in newcomers:
            _add_member(channel, user, status if keep_status else "")
        for member in channel.members.values():
            channel.recheck_ban(member)
        # Each side learns the other's members, as if they had just joined.
        for user, _ in newcomers:
            self._send_to_all(before, self._line(user.prefix, "JOIN", [channel.name], None))
            self._announce_status(before, channel, user)
        arrived = [user for user, _ in newcomers if user.origin is None]
        for member in before:
            self._send_to_all(arrived, self._line(member.prefix, "JOIN", [channel.name], None))
            self._announce_status(arrived, channel, member)
        if before and not keep_status:
            self._announce_modes(arrived, channel)
        if channel.topic:
            for user in arrived:
                send_topic(self, user, channel)

    def _strip_status(self, channel: Channel) -> None:
        for conn in list(channel.ops | channel.voiced):
            member = channel.members[conn]
            letters = ("o" if conn in channel.ops else "") + ("v" if conn in channel.voiced else "")
            params = [channel.name, f"-{letters}", *[str(member.nick)] * len(letters)]
            line = self._line(self.server_name, "MODE", params, None)
            self._send_to_all(channel.members.values(), line)
        channel.ops.clear()
        channel.voiced.clear()

    def _announce_modes(self, recipients: list[Client], channel: Channel) -> None:
        """The channel's modes, as they now are, for members who knew others."""
        letters, args = channel.mode_string(show_key=True)
        line = self._line(self.server_name, "MODE", [channel.name, letters, *args], None)
        self._send_to_all(recipients, line)

    def _announce_status(self, recipients: list[Client], channel: Channel, member: Client) -> None:
        letters = ("o" if member.conn in channel.ops else "") + (
            "v" if member.conn in channel.voiced else ""
        )
        if letters:
            params = [channel.name, f"+{letters}", *[str(member.nick)] * len(letters)]
            self._send_to_all(recipients, self._line(self.server_name, "MODE", params, None))

    # -- Snapshots ---------------------------------------------------------------------------

    def _burst_of_own_users(self) -> dict[str, Any]:
        users = [c for c in self._clients.values() if c.origin is None and c.registered]
        channels = {
            ascii_lower(channel.name): channel
            for user in users
            for channel in user.channels.values()
        }
        return {
            "users": [_user_fields(self.server_name, user) for user in users],
            "channels": [
                _channel_fields(self.server_name, channel, only_local=True)
                for channel in channels.values()
            ],
        }

    def _snapshot(self) -> dict[str, Any]:
        users = [c for c in self._clients.values() if c.registered]
        return {
            "servers": self._servers,
            "split": sorted(self._split),
            "users": [_user_fields(self.server_name, user) for user in users],
            "channels": [
                _channel_fields(self.server_name, channel, only_local=False)
                for channel in self._channels.values()
            ],
            "whowas": [
                [past.nick, past.user, past.host, past.realname, past.left_at]
                for past in self.whowas
            ],
            "most_users": self.most_users,
        }

    def _load(self, snapshot: dict[str, Any], now: Seconds) -> None:
        self._servers = {
            name: incarnation
            for name, incarnation in snapshot["servers"].items()
            if name != self.server_name
        }
        self._split = {(name, incarnation) for name, incarnation in snapshot["split"]}
        self._heard = dict.fromkeys(self._servers, now)
        by_key: dict[tuple[str, ConnId], Client] = {}
        for fields in snapshot["users"]:
            if fields["server"] == self.server_name:
                continue  # An earlier life of this server: its BURST replaces them.
            user = self._new_remote(fields["server"], fields["conn"], fields)
            user.modes = set(fields["modes"])
            user.away = fields["away"]
            user.signon_at = fields["signon"]
            user.nick_at = fields["nick_at"]
            self._register_remote(user)
            by_key[(fields["server"], fields["conn"])] = user
        for fields in snapshot["channels"]:
            members = [
                (by_key[(server, conn)], status)
                for server, conn, status in fields["members"]
                if (server, conn) in by_key
            ]
            if not members:
                continue
            channel = Channel(fields["name"], created_at=float(fields["created"]))
            _adopt_modes(channel, fields)
            folded = ascii_lower(channel.name)
            self._channels[folded] = channel
            for user, status in members:
                _add_member(channel, user, status)
            for member in channel.members.values():
                channel.recheck_ban(member)
        self.whowas.clear()
        self.whowas.extend(PastNick(*fields) for fields in snapshot["whowas"])
        self.most_users = max(self.most_users, int(snapshot["most_users"]))

    # -- Time --------------------------------------------------------------------------------

    def _link_deadline(self) -> Seconds | None:
        link = self.link
        if link is None:
            return None
        deadlines = [d for d in (link.deadline(),) if d is not None]
        if self.phase is Phase.WAITING and not self._gen_sent:
            deadlines.append(self._wait_until)
        if self.joined:
            deadlines.append(self._next_heartbeat)
        return min(deadlines, default=None)

    def _link_timer(self, now: Seconds) -> None:
        link = self._need_link()
        sends, failure = link.handle_timer(now)
        for role, data in sends:
            self._link_effects.append(LinkSend(role, data))
        if failure is not None:
            self._lose_link(failure.reason, now)
            return
        if self.phase is Phase.WAITING and not self._gen_sent and now >= self._wait_until:
            self._gen_sent = True
            self._publish(b"GEN", [], now)
        if self.joined and now >= self._next_heartbeat:
            self._next_heartbeat = now + HEARTBEAT
            self._publish(b"H", [], now)

    def _find_silent_servers(self, now: Seconds) -> None:
        """Our own heartbeat is back: split off every server silent for ``split_after`` since.

        Judged when our own heartbeat comes back through Redis, not by a timer:
        a server that was itself stopped (SIGSTOP, starved of CPU) reads the
        others' heartbeats and its own in the order Redis had them, so it never
        takes what it has not read yet for silence; and while Redis itself is
        stalled, nobody's heartbeat comes back and nobody is split.
        """
        silence = self.limits.split_after
        for name, heard in list(self._heard.items()):
            if name != self.server_name and now >= heard + silence:
                reason = f"no word from {name} for {silence:g} s"
                self._ask_split(name, self._servers[name], reason, now)


# The events about one user: a line it sent, its introduction, its leaving, its OPER.
_USER_EVENTS = frozenset({b"L", b"U", b"Q", b"O"})


@dataclass(frozen=True, slots=True)
class Event:
    """One event from the bus: ``KIND SERVER INCARNATION WALLTIME REST``."""

    kind: bytes
    sender: tuple[str, str]
    wall_time: UnixTime
    rest: bytes
    payload: bytes

    @classmethod
    def parse(cls, payload: bytes) -> Event:
        """Raises ValueError if ``payload`` is not an event."""
        kind, server, incarnation, wall_time, *rest = payload.split(b" ", 4)
        sender = (server.decode(), incarnation.decode())
        return cls(kind, sender, float(wall_time), rest[0] if rest else b"", payload)


# Users of other servers send this server no bytes; they share one framer that never runs.
_NO_FRAMER = LineFramer(64)


def _user_fields(server: str, user: Client) -> dict[str, Any]:
    return {
        "server": user.origin or server,
        "conn": user.origin_conn if user.origin is not None else user.conn,
        "nick": user.nick,
        "user": user.user,
        "host": user.host,
        "realname": user.realname,
        "modes": sorted(user.modes),
        "away": user.away,
        "signon": user.signon_at,
        "nick_at": user.nick_at,
    }


def _channel_fields(server: str, channel: Channel, only_local: bool) -> dict[str, Any]:
    members = []
    for conn, member in channel.members.items():
        if only_local and member.origin is not None:
            continue
        status = ("o" if conn in channel.ops else "") + ("v" if conn in channel.voiced else "")
        key = member.origin_conn if member.origin is not None else member.conn
        if only_local:
            members.append([key, status])
        else:
            members.append([member.origin or server, key, status])
    return {
        "name": channel.name,
        "created": channel.created_at,
        "modes": sorted(channel.modes),
        "key": channel.key,
        "limit": channel.limit,
        "bans": [[ban.mask, ban.set_by, ban.set_at] for ban in channel.bans.values()],
        "topic": [channel.topic, channel.topic_by, channel.topic_at],
        "members": members,
    }


def _add_member(channel: Channel, user: Client, status: str) -> None:
    """``user`` is on ``channel``, with the status letters (``o``, ``v``) in ``status``."""
    channel.members[user.conn] = user
    user.channels[ascii_lower(channel.name)] = channel
    if "o" in status:
        channel.ops.add(user.conn)
    if "v" in status:
        channel.voiced.add(user.conn)


def _adopt_modes(channel: Channel, fields: dict[str, Any]) -> None:
    channel.modes = set(fields["modes"])
    channel.key = fields["key"]
    channel.limit = fields["limit"]
    channel.bans = {
        ascii_lower(mask): Ban(mask, compile_mask(mask), by, at) for mask, by, at in fields["bans"]
    }
    channel.topic, channel.topic_by, channel.topic_at = fields["topic"]

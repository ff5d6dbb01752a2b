"""A Hypothesis state machine fuzzing the chat core through random interleavings of events.

The machine plays an adapter around ``ChatCore``: it connects clients from
a few hosts, feeds them commands, garbage and keepalive replies, loses
connections, reports sent bytes (or stalls, as a client that stops reading
would), lets the clock run (firing each connection's timer at its deadline,
or late, as a busy adapter would) and shuts the server down. After every
step it checks the invariants that must hold whatever the input:

* the nick and channel tables agree with each other and with the clients;
* every effect goes to a known connection and none follows its Close;
* every line sent is CR LF ended, within ``max_line``, UTF-8, with no stray
  CR, LF or NUL; the SendQ accounting matches what was sent and reported;
* no deadline is left overdue after the timers ran (or an adapter would
  spin), and a timer that fires early does nothing;
* the admission rules (max_clients, max_per_ip, shutdown) and LUSERS agree
  with a model of who is connected and registered;
* the registration timeout and the keepalive act neither early nor late, as
  timed by a model that frames each client's input with its own LineFramer
  (only whole lines are activity);
* keepalive replies come back in order, none twice, none lost;
* whole input equals piecewise input: a twin server gets every event too,
  but each receive_data cut into random pieces, and must return the same
  effects and deadlines.

Its default run is short so that ``make test`` stays fast. Run it longer with
``ECHOCHAT_FUZZ_EXAMPLES`` (examples) and ``ECHOCHAT_FUZZ_STEPS`` (steps per
example), e.g. ``ECHOCHAT_FUZZ_EXAMPLES=20000 .venv/bin/pytest
tests/core/test_state_machine.py --timeout 0`` (about 8 minutes). Memory grows
with the examples of one run (20,000 peaked at 4.3 GB RSS), so for longer
fuzzing repeat runs of that size rather than raising the count further.
"""

from __future__ import annotations

import hashlib
import itertools
import math
import os
import re
from collections import Counter

from core_helpers import (
    CREATED,
    Harness,
    check_output_line,
    fold,
    lenient_limits,
    parse_line,
    prefix_of,
    split_lines,
)
from hypothesis import HealthCheck, event, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from echochat.core import ChatCore, Close, ConnId, Effect, Limits, LineFramer, LineTooLong, Send
from echochat.core.limits import MAXBANS
from echochat.core.passwords import PasswordHash

EXAMPLES = int(os.environ.get("ECHOCHAT_FUZZ_EXAMPLES", "100"))
STEPS = int(os.environ.get("ECHOCHAT_FUZZ_STEPS", "40"))

SERVER = "fuzz.example"
# An IPv6 loopback too: the core writes it 0::1, and must count it as one host.
HOSTS = ["10.0.0.1", "10.0.0.2", "::1"]
# The names the first two clients take come up most, so that commands find them.
NICKS = ["alice", "alice", "ALICE", "bob", "bob", "c[a]rol", "dave", "x" * 17, "9bad"]
CHANNELS = ["#a", "#a", "#A", "#chan", "#b", "#a,#b", "bad", "#" + "c" * 60]
KEEPALIVE_TOKEN = re.compile(r"k\d+")

TEXT = st.one_of(
    st.text(
        st.characters(blacklist_categories=["Cs"], blacklist_characters="\r\n"),
        min_size=1,
        max_size=20,
    ),
    st.sampled_from(["", ":", " : ", "é" * 300, "\U0001f600" * 150, "x" * 600, "a\tb\x01c"]),
)


NICK = st.sampled_from(NICKS)
CHANNEL = st.sampled_from(CHANNELS)
TARGET = st.one_of(NICK, CHANNEL, st.just("alice,#a,alice"))
# Lines that change or use channels, where the tables are most at risk.
# MODE changes with and without arguments, known and unknown letters.
MODE_CHANGE = st.sampled_from(
    [
        "+o bob",
        "+o alice",
        "-o alice",
        "+v bob",
        "-v bob",
        "+ov-v alice bob alice",
        "+b bob",
        "+b *!*@10.0.0.*",
        "-b bob!*@*",
        "+b",
        "+i",
        "-i",
        "+k key",
        "-k key",
        "+l 2",
        "-l",
        "+mns",
        "-mnst",
        "+t",
        "+X",
        "+bbbbbbb a b c d e f g",
    ]
)
CHANNEL_LINE = st.one_of(
    st.builds("JOIN {}".format, st.one_of(CHANNEL, st.just("0"))),
    st.builds("JOIN {} key".format, CHANNEL),
    st.builds("MODE {} {}".format, CHANNEL, MODE_CHANGE),
    st.builds("KICK {} {} :{}".format, CHANNEL, NICK, TEXT),
    st.builds("INVITE {} {}".format, NICK, CHANNEL),
    st.builds("PRIVMSG @{} :{}".format, CHANNEL, TEXT),
    st.builds("PART {} :{}".format, CHANNEL, TEXT),
    st.builds("PRIVMSG {} :{}".format, TARGET, TEXT),
    st.builds("NOTICE {} :{}".format, TARGET, TEXT),
    st.builds("TOPIC {} :{}".format, CHANNEL, TEXT),
)
OTHER_LINE = st.one_of(
    st.builds("NICK {}".format, NICK),
    st.builds("USER {} 0 * :{}".format, NICK, TEXT),
    st.builds("TOPIC {}".format, CHANNEL),
    st.builds("QUIT :{}".format, TEXT),
    st.builds(
        "{} {}".format,
        st.sampled_from(["NAMES", "WHO", "WHOIS", "MODE", "WHOWAS", "LIST", "ISON", "USERHOST"]),
        TARGET,
    ),
    st.builds("MODE {} {}".format, NICK, st.sampled_from(["+i", "-i", "+w", "+o", "-o", "+x"])),
    st.builds("AWAY :{}".format, TEXT),
    st.builds("KILL {} :{}".format, NICK, TEXT),
    st.sampled_from(
        [
            "CAP LS 302",
            "CAP END",
            "CAP REQ :x",
            "PING zz",
            "PONG",
            "LUSERS",
            "QUIT",
            "",
            "AWAY",
            "OPER root pw",
            "OPER root wrong",
            "WALLOPS :hi",
            "MOTD",
            "VERSION",
            "TIME",
            "INFO",
        ]
    ),
)


def lines(line: st.SearchStrategy[str]) -> st.SearchStrategy[bytes]:
    """A line, once or repeated (a burst for flood control), CR LF ended."""
    return st.tuples(line, st.integers(1, 3)).map(
        lambda pair: (f"{pair[0]}\r\n" * pair[1]).encode()
    )


GARBAGE = st.one_of(
    st.binary(max_size=80),
    st.lists(
        st.sampled_from(
            [
                b"\n",
                b"\r",
                b"\r\n",
                b"\0",
                b"\xff",
                b"\xc3",
                b"\xe2\x82",
                b" ",
                b":",
                b"@t ",
                b"PRIVMSG #a :",
                b"NICK ",
                b"GET / HTTP/1.1\r\n",
                b"x" * 70,
                b"y" * 600,
                "é".encode(),
            ]
        ),
        max_size=10,
    ).map(b"".join),
)


# A cheap hash (N=2), so that OPER lines do not slow the run; the format is the real one.
_FUZZ_SALT = b"fuzz salt 16 byt"
CHEAP_OPER_HASH = PasswordHash(
    2, 1, 1, _FUZZ_SALT, hashlib.scrypt(b"pw", salt=_FUZZ_SALT, n=2, r=1, p=1, dklen=32)
)


@st.composite
def limits(draw: st.DrawFn) -> Limits:
    """Small limits, so that every policy and queue is reached within a few steps."""
    max_line = draw(st.sampled_from([64, 100, 512]))
    return Limits(
        max_line=max_line,
        # A welcome burst takes about 450 bytes: the smallest SendQ drops it,
        # 1024 bytes soon overflow for a stalled client.
        sendq=draw(st.sampled_from([max_line, 1024, 1024, 65_536, 65_536])),
        max_clients=draw(st.sampled_from([3, 6, 50])),
        server_name=SERVER,
        registration_timeout=draw(st.sampled_from([0, 5.0, 30.0])),
        ping_interval=draw(st.sampled_from([0, 4.0, 30.0])),
        ping_timeout=draw(st.sampled_from([1.5, 3.0])),
        flood_burst=draw(st.sampled_from([1, 3, 20])),
        flood_rate=draw(st.sampled_from([0, 2.0, 5.0])),
        recvq=max_line * draw(st.sampled_from([1, 2, 10])),
        max_per_ip=draw(st.sampled_from([0, 1, 3])),
        opers=(("root", CHEAP_OPER_HASH),),
        motd=draw(st.sampled_from([None, ("line one", "", "x" * 100)])),
    )


def pieces(data: bytes, cuts: list[int]) -> list[bytes]:
    bounds = [0, *sorted(cut % (len(data) + 1) for cut in cuts), len(data)]
    return [data[a:b] for a, b in itertools.pairwise(bounds)]


def check_tables(core: ChatCore) -> None:
    """The nick and channel tables agree with each other and with the clients.

    This needs the core's private tables: no public call lists them all.
    """
    clients = core._clients
    for key, owner in core._nicks.items():
        assert clients.get(owner.conn) is owner, f"nick {key!r} of a gone client"
        assert owner.nick is not None
        assert fold(owner.nick) == key
    for client in clients.values():
        if client.nick is not None:
            assert core._nicks[fold(client.nick)] is client
    for key, channel in core._channels.items():
        assert fold(channel.name) == key
        assert channel.members, f"empty channel {key}"
        # Member modes and the ban cache only ever name members, and the
        # cache agrees with the bans (speaking looks it up instead of matching).
        assert channel.ops | channel.voiced | channel.banned <= channel.members.keys()
        assert channel.banned == {
            conn for conn, member in channel.members.items() if channel.is_banned(member)
        }
        assert len(channel.bans) <= MAXBANS
        assert channel.limit is None or channel.limit >= 1
        for conn, member in channel.members.items():
            assert clients.get(conn) is member, f"{key} holds a gone client"
            assert member.registered
            assert member.channels[key] is channel
    for client in clients.values():
        for key, channel in client.channels.items():
            assert core._channels[key] is channel
            assert client.conn in channel.members
    assert core._connections_per_host == Counter(client.host for client in clients.values())


class ChatMachine(RuleBasedStateMachine):
    """Drives a ChatCore (and its piecewise-fed twin) as an adapter would."""

    def __init__(self) -> None:
        super().__init__()
        self.now = 5000.0
        self.known: list[ConnId] = []
        self.open: set[ConnId] = set()
        self.host: dict[ConnId, str] = {}
        self.welcomed: set[ConnId] = set()
        self.stalled: set[ConnId] = set()
        # Clients that read but never answer the keepalive.
        self.mute: set[ConnId] = set()
        # Bytes handed over in Sends and not yet reported with data_sent: the SendQ.
        self.unsent: Counter[ConnId] = Counter()
        self.pings: dict[ConnId, list[str]] = {}
        self.pongs: dict[ConnId, list[str]] = {}
        # The model of the time policies: when each connection came, its last
        # line (as its own framer sees lines), and its keepalive PING if one is out.
        self.framers: dict[ConnId, LineFramer] = {}
        self.connected_at: dict[ConnId, float] = {}
        self.last_line_at: dict[ConnId, float] = {}
        self.pinged_at: dict[ConnId, float] = {}
        self.next_token = 0
        self.shut_down = False

    @initialize(chosen=limits())
    def start(self, chosen: Limits) -> None:
        self.limits = chosen
        self.core = ChatCore(chosen, created=CREATED)
        self.twin = ChatCore(chosen, created=CREATED)
        # Two clients registering and joining a channel, so that even short runs
        # (Hypothesis tries many) reach the channel tables.
        for nick, host in (("alice", HOSTS[0]), ("bob", HOSTS[1])):
            self.connect(host)
            line = f"NICK {nick}\r\nUSER {nick} 0 * :{nick}\r\nJOIN #a\r\n".encode()
            self.feed(self.known[-1], line, [])

    # -- Playing the adapter -----------------------------------------------------------

    def apply(self, effects: list[Effect]) -> None:
        for effect in effects:
            assert effect.conn in self.host, f"effect for an unknown connection: {effect!r}"
            assert effect.conn in self.open, f"effect after Close: {effect!r}"
            if isinstance(effect, Send):
                self.unsent[effect.conn] += len(effect.data)
                for line in split_lines(effect.data):
                    self.observe(effect.conn, check_output_line(line, self.limits.max_line))
            else:
                self.close(effect)
        # Readers take all they were sent; stalled clients leave it queued.
        for conn in sorted(self.open - self.stalled):
            self.report_sent(conn, self.unsent[conn])

    def close(self, effect: Close) -> None:
        conn, limits = effect.conn, self.limits
        farewell = ""
        if effect.farewell:
            farewell = check_output_line(effect.farewell, limits.max_line)
            assert farewell.startswith("ERROR :"), farewell
        reason = farewell.removeprefix("ERROR :").removeprefix("Closing link (").removesuffix(")")
        event(f"closed: {reason.partition(':')[0] or 'connection lost'}")
        if farewell == "ERROR :Closing link (Registration timeout)":
            assert conn not in self.welcomed
            assert self.now >= self.connected_at[conn] + limits.registration_timeout
        elif farewell.startswith("ERROR :Closing link (Ping timeout"):
            assert (
                farewell == f"ERROR :Closing link (Ping timeout: {limits.ping_timeout:g} seconds)"
            )
            assert self.now >= self.pinged_at[conn] + limits.ping_timeout
        # Only a SendQ overflow drops what was queued.
        assert effect.flush == (effect.farewell != b"ERROR :Closing link (SendQ exceeded)\r\n")
        self.open.discard(conn)
        self.welcomed.discard(conn)
        self.stalled.discard(conn)
        self.mute.discard(conn)
        del self.unsent[conn]

    def observe(self, conn: ConnId, line: str) -> None:
        message = parse_line(line)
        if line == f"PING :{SERVER}":
            # The keepalive: only to registered clients, once per silence, not early.
            assert conn in self.welcomed
            assert conn not in self.pinged_at, "a second keepalive PING in one silence"
            assert self.now >= self.last_line_at[conn] + self.limits.ping_interval
            self.pinged_at[conn] = self.now
            event("keepalive PING")
        if message.command in ("JOIN", "PRIVMSG", "TOPIC", "QUIT"):
            event(f"sent: {message.command}")
        if message.prefix != SERVER:
            return
        if message.command == "001":
            event("registered")
            assert conn not in self.welcomed, "welcomed twice"
            self.welcomed.add(conn)
        elif message.command == "PONG" and KEEPALIVE_TOKEN.fullmatch(message.params[-1]):
            self.pongs[conn].append(message.params[-1])

    def report_sent(self, conn: ConnId, nbytes: int) -> None:
        if nbytes:
            self.core.data_sent(conn, nbytes)
            self.twin.data_sent(conn, nbytes)
            self.unsent[conn] -= nbytes

    def both(self, call: str, conn: ConnId) -> None:
        """``handle_timer`` or ``connection_lost`` on both servers, which must agree."""
        if call == "timer":
            effects = self.core.handle_timer(conn, self.now)
            effects += run_ready(self.core, conn, self.now)
            twin = self.twin.handle_timer(conn, self.now)
            assert twin + run_ready(self.twin, conn, self.now) == effects
        else:
            effects = self.core.connection_lost(conn)
            assert self.twin.connection_lost(conn) == effects
        self.apply(effects)

    def feed(self, conn: ConnId, data: bytes, cuts: list[int]) -> list[Effect]:
        """``data`` whole to the server, in pieces to the twin: the effects must be equal."""
        if conn in self.open and self.framers[conn].receive_data(data):
            self.last_line_at[conn] = self.now
            self.pinged_at.pop(conn, None)
        effects = self.core.receive_data(conn, data, self.now)
        effects += run_ready(self.core, conn, self.now)
        piecewise: list[Effect] = []
        for piece in pieces(data, cuts):
            piecewise += self.twin.receive_data(conn, piece, self.now)
            piecewise += run_ready(self.twin, conn, self.now)
        assert piecewise == effects, f"whole {data!r} vs pieces {pieces(data, cuts)!r}"
        self.apply(effects)
        self.fire_overdue()
        return effects

    def fire_overdue(self) -> None:
        """Fire, once, the timer of every connection whose deadline is not in the future."""
        for conn in sorted(self.open):
            deadline = self.core.deadline(conn)
            if deadline is not None and deadline <= self.now:
                self.fire(conn)

    def fire(self, conn: ConnId) -> None:
        self.both("timer", conn)
        deadline = self.core.deadline(conn)
        assert deadline is None or deadline > self.now, (
            f"handle_timer({conn}, {self.now!r}) left deadline {deadline!r}: an adapter would spin"
        )
        if self.pinged_at.get(conn) == self.now and conn not in self.stalled | self.mute:
            # A live client answers the keepalive at once; without this, the
            # first long advance would time everybody out.
            self.feed(conn, f"PONG :{SERVER}\r\n".encode(), [])

    def pick(self, index: int, registered: bool = False) -> ConnId:
        """An open connection (a registered one if asked and there is one), else a closed one."""
        pools = [sorted(self.open & self.welcomed)] if registered else []
        pool = next(pool for pool in [*pools, sorted(self.open), self.known] if pool)
        return pool[index % len(pool)]

    # -- Rules -------------------------------------------------------------------------

    @rule(host=st.sampled_from(HOSTS))
    def connect(self, host: str) -> None:
        conn, effects = self.core.connect(host, self.now)
        assert self.twin.connect(host, self.now) == (conn, effects)
        assert conn not in self.host, "a connection id was reused"
        self.known.append(conn)
        self.host[conn] = f"0{host}" if host.startswith(":") else host
        per_host = sum(1 for other in self.open if self.host[other] == self.host[conn])
        if self.shut_down:
            expected = "Server shutting down"
        elif len(self.open) >= self.limits.max_clients:
            expected = "Closing link (Server is full)"
        elif self.limits.max_per_ip and per_host >= self.limits.max_per_ip:
            expected = "Closing link (Too many connections from your IP)"
        else:
            expected = ""
        self.open.add(conn)
        self.pings[conn], self.pongs[conn] = [], []
        self.framers[conn] = LineFramer(self.limits.max_line)
        self.connected_at[conn] = self.last_line_at[conn] = self.now
        if expected:
            assert effects == [Close(conn, f"ERROR :{expected}\r\n".encode(), flush=True)]
        else:
            assert effects == []
        self.apply(effects)

    @precondition(lambda self: self.known)
    @rule(index=st.integers(0), nick=st.sampled_from(NICKS), cuts=st.lists(st.integers(0)))
    def register(self, index: int, nick: str, cuts: list[int]) -> None:
        line = f"NICK {nick}\r\nUSER {nick} 0 * :{nick}\r\n".encode()
        self.feed(self.pick(index), line, cuts)

    @precondition(lambda self: self.known)
    @rule(index=st.integers(0), data=lines(OTHER_LINE), cuts=st.lists(st.integers(0)))
    def command(self, index: int, data: bytes, cuts: list[int]) -> None:
        self.feed(self.pick(index, registered=True), data, cuts)

    @precondition(lambda self: self.known)
    @rule(index=st.integers(0), data=lines(CHANNEL_LINE), cuts=st.lists(st.integers(0)))
    def talk(self, index: int, data: bytes, cuts: list[int]) -> None:
        self.feed(self.pick(index, registered=True), data, cuts)

    @precondition(lambda self: self.known)
    @rule(index=st.integers(0), data=GARBAGE, cuts=st.lists(st.integers(0)))
    def garbage(self, index: int, data: bytes, cuts: list[int]) -> None:
        self.feed(self.pick(index), data, cuts)

    @precondition(lambda self: self.known)
    @rule(index=st.integers(0), cuts=st.lists(st.integers(0)))
    def keepalive(self, index: int, cuts: list[int]) -> None:
        """A PING with a fresh token, after a line end that completes any partial garbage."""
        conn = self.pick(index)
        token = f"k{self.next_token}"
        self.next_token += 1
        if conn in self.open:
            self.pings[conn].append(token)
        self.feed(conn, f"\r\nPING {token}\r\n".encode(), cuts)

    @precondition(lambda self: self.known and not self.limits.flood_rate)
    @rule(index=st.integers(0))
    def lusers(self, index: int) -> None:
        """LUSERS counts what the model counts (as of before the call: it is the only line)."""
        conn = self.pick(index, registered=True)
        users = len(self.open & self.welcomed)
        unknown = len(self.open) - users
        channels = self.core.channel_count
        effects = self.feed(conn, b"LUSERS\r\n", [])
        replies = [
            parse_line(line.decode().rstrip("\r\n"))
            for effect in effects
            if isinstance(effect, Send) and effect.conn == conn
            for line in split_lines(effect.data)
        ]
        counts = {m.command: m for m in replies if m.command in ("251", "253", "254", "255", "265")}
        if not counts or conn not in self.open:
            # Not registered, the line finished a partial one, or the reply
            # overflowed the SendQ part-way.
            return
        # A small max_line may cut the texts short, never the counts in the middle.
        invisible = sum(1 for c in self.core._clients.values() if c.registered and "i" in c.modes)
        visible = users - invisible
        assert f"There are {visible} users and {invisible} invisible on 1 servers".startswith(
            counts["251"].params[-1]
        )
        assert ("253" in counts) == (unknown > 0)
        if unknown:
            assert counts["253"].params[1] == str(unknown)
        assert counts["254"].params[1] == str(channels)
        assert f"I have {users} clients and 0 servers".startswith(counts["255"].params[-1])
        if "265" in counts:
            assert counts["265"].params[1] == str(users)

    @precondition(lambda self: set(self.known) - self.open)
    @rule(index=st.integers(0), data=GARBAGE)
    def closed_connection(self, index: int, data: bytes) -> None:
        """Whatever an adapter still reports for a closed connection is ignored."""
        closed = sorted(set(self.known) - self.open)
        conn = closed[index % len(closed)]
        for core in (self.core, self.twin):
            assert core.receive_data(conn, data, self.now) == []
            assert core.handle_timer(conn, self.now) == []
            assert core.connection_lost(conn) == []
            core.data_sent(conn, 1)
            assert core.deadline(conn) is None

    @precondition(lambda self: self.known)
    @rule(index=st.integers(0))
    def disconnect(self, index: int) -> None:
        conn = self.pick(index)
        self.both("lost", conn)
        assert conn not in self.open

    @precondition(lambda self: self.open)
    @rule(index=st.integers(0), mute=st.booleans())
    def stall(self, index: int, mute: bool) -> None:
        """A client stops reading, or stops answering the keepalive only."""
        (self.mute if mute else self.stalled).add(sorted(self.open)[index % len(self.open)])

    @precondition(lambda self: self.stalled)
    @rule(index=st.integers(0), share=st.sampled_from([0.0, 0.3, 1.0]), resume=st.booleans())
    def read(self, index: int, share: float, resume: bool) -> None:
        """A stalled client reads part of its queue, and perhaps reads promptly again."""
        conn = sorted(self.stalled)[index % len(self.stalled)]
        self.report_sent(conn, int(self.unsent[conn] * share))
        if resume:
            self.stalled.discard(conn)
            self.report_sent(conn, self.unsent[conn])

    @rule(seconds=st.sampled_from([0.01, 0.2, 0.5, 1.0, 1.5, 3.0, 5.0, 40.0]), late=st.booleans())
    def advance(self, seconds: float, late: bool) -> None:
        """Time passes: timers fire at their deadlines, or all at the end for a late adapter."""
        end = self.now + seconds
        while not late:
            due = [
                (deadline, conn)
                for conn in self.open
                if (deadline := self.core.deadline(conn)) is not None and deadline <= end
            ]
            if not due:
                break
            self.now, conn = min(due)
            self.fire(conn)
        self.now = end
        self.fire_overdue()

    @precondition(lambda self: self.known)
    @rule(index=st.integers(0))
    def early_wakeup(self, index: int) -> None:
        """A timer that fires before the deadline (adapters may wake early) does nothing."""
        conn = self.pick(index)
        deadline = self.core.deadline(conn)
        assert self.core.handle_timer(conn, self.now) == []
        assert self.twin.handle_timer(conn, self.now) == []
        after = self.core.deadline(conn)
        # The bucket is recomputed as of now: the same instant, give or take rounding.
        assert (after is None) == (deadline is None)
        assert after is None or deadline is None or math.isclose(after, deadline, abs_tol=1e-9)

    @rule(go=st.integers(0, 9))
    def shutdown(self, go: int) -> None:
        if go:
            return  # Rarely, so that most runs get far before it.
        open_before = set(self.open)
        effects = self.core.shutdown()
        assert self.twin.shutdown() == effects
        farewell = b"ERROR :Server shutting down\r\n"
        assert effects == [Close(conn, farewell, flush=True) for conn in sorted(open_before)]
        self.apply(effects)
        self.shut_down = True

    # -- Invariants --------------------------------------------------------------------

    @invariant()
    def tables_are_consistent(self) -> None:
        if not hasattr(self, "server"):
            return
        check_tables(self.core)
        assert self.core.client_count == len(self.open)
        assert self.twin.client_count == len(self.open)
        assert self.twin.channel_count == self.core.channel_count
        assert self.core.client_count <= self.limits.max_clients
        if self.shut_down:
            assert self.core.channel_count == 0

    @invariant()
    def queues_are_accounted(self) -> None:
        if not hasattr(self, "server"):
            return
        limits = self.limits
        for conn, client in self.core._clients.items():
            # The SendQ is what was sent and not reported; never negative, never over.
            assert client.queued == self.unsent[conn]
            assert 0 <= client.queued <= limits.sendq
            # The RecvQ: its byte count matches its lines and stays within recvq.
            assert client.inbox_bytes == sum(
                limits.max_line if isinstance(e, LineTooLong) else len(e.data) + 2
                for e in client.inbox
            )
            assert 0 <= client.inbox_bytes <= limits.recvq
            assert not client.inbox or limits.flood_rate
            assert client.framer.buffered < limits.max_line
            assert 0 <= client.tokens <= limits.flood_burst
        if limits.max_per_ip:
            hosts = Counter(self.host[conn] for conn in self.open)
            assert max(hosts.values(), default=0) <= limits.max_per_ip

    @invariant()
    def deadlines_agree_and_are_in_the_future(self) -> None:
        if not hasattr(self, "server"):
            return
        for conn in self.known:
            deadline = self.core.deadline(conn)
            assert self.twin.deadline(conn) == deadline
            if conn not in self.open:
                assert deadline is None
            else:
                assert deadline is None or deadline > self.now

    @invariant()
    def time_policies_are_not_late(self) -> None:
        """Whatever was due by now has happened (the early side is checked as it happens)."""
        if not hasattr(self, "server"):
            return
        limits = self.limits
        for conn in self.open:
            if conn not in self.welcomed and limits.registration_timeout:
                assert self.now < self.connected_at[conn] + limits.registration_timeout
            if conn in self.welcomed and limits.ping_interval:
                if conn in self.pinged_at:
                    assert self.now < self.pinged_at[conn] + limits.ping_timeout
                else:
                    assert self.now < self.last_line_at[conn] + limits.ping_interval

    @invariant()
    def keepalive_replies_are_in_order_and_none_lost(self) -> None:
        if not hasattr(self, "server"):
            return
        for conn in self.open:
            sent, answered = self.pings[conn], self.pongs[conn]
            assert answered == sent[: len(answered)], (sent, answered)
            if not self.core._clients[conn].inbox:
                # Nothing waits: every PING ran (the client may be closed instead).
                assert answered == sent


ChatMachine.TestCase.settings = settings(
    max_examples=EXAMPLES,
    stateful_step_count=STEPS,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)
test_chat_state_machine = ChatMachine.TestCase


def test_a_sendq_drop_does_not_depend_on_packet_boundaries() -> None:
    """When a member dropped for SendQ leaves must not depend on how TCP cut the input.

    Found by the state machine: the core drops overflowed clients at the end
    of each receive_data call, so fed in one packet bob's QUIT reached alice
    after all her PONGs, and cut after the line that overflowed bob, before
    the last one.
    """
    data = b"".join(b"PRIVMSG #a :" + b"x" * 400 + f"\r\nPING t{n}\r\n".encode() for n in range(4))
    cut = data.index(b"PING t2\r\n") + len(b"PING t2\r\n")
    seen = []
    for packets in ([data], [data[:cut], data[cut:]]):
        h = Harness(lenient_limits(sendq=1024))
        alice = h.register("alice")
        bob = h.register("bob")
        h.join(alice, "#a")
        h.join(bob, "#a", alice)
        h.stall(bob)
        for packet in packets:
            h.feed(alice, packet)
        assert bob in h.closed  # Its third message overflowed it.
        seen.append(h.take(alice))
    whole, piecewise = seen
    assert f":{prefix_of('bob')} QUIT :SendQ exceeded" in whole
    assert piecewise == whole


def run_ready(core: ChatCore, conn: ConnId, now: float) -> list[Effect]:
    """What an adapter does after each call: run the lines a bounded turn left."""
    effects: list[Effect] = []
    while core.has_ready_lines(conn):
        effects += core.handle_timer(conn, now)
    return effects

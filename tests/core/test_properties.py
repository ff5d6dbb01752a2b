"""Property tests of the core: packet boundaries never matter, and output is always well formed."""

from __future__ import annotations

from dataclasses import dataclass

from core_helpers import HOST, Harness, fold, lenient_limits, parse_line, reference_frames, split_at
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from echochat.core import ChatCore, ConnId, Effect, Limits, LineFramer, Send
from echochat.core.framing import FrameEvent

SETTINGS = settings(
    max_examples=120,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


def cuts_for(data: bytes) -> st.SearchStrategy[list[int]]:
    return st.lists(st.integers(0, len(data)), max_size=8)


# -- (a) Framing ---------------------------------------------------------------------------


@st.composite
def framer_case(draw: st.DrawFn) -> tuple[int, bytes]:
    """A line limit, and input rich in line endings, CR, NUL and lines right at the limit."""
    max_line = draw(st.sampled_from([64, 65, 100, 512]))
    near_limit = [b"n" * (max_line + delta) for delta in (-3, -2, -1, 0, 1)]
    # Whole lines of max_line - 1, max_line and max_line + 1 bytes with their ending.
    at_limit = [
        b"m" * (max_line - len(end) + delta) + end
        for delta in (-1, 0, 1)
        for end in (b"\n", b"\r\n")
    ]
    pieces = [b"\n", b"\r", b"\0", b"\r\n", b"a", b"b" * 30, *near_limit, *at_limit]
    data = draw(
        st.one_of(
            st.binary(max_size=600),
            st.lists(st.sampled_from(pieces), max_size=16).map(b"".join),
        )
    )
    # An unterminated last line right at the limit.
    tail = draw(st.sampled_from([b"", *(b"t" * (max_line + d) for d in (-1, 0, 1))]))
    return max_line, data + tail


@SETTINGS
@given(case=framer_case(), draw=st.data())
def test_framer_is_independent_of_packet_boundaries(
    case: tuple[int, bytes], draw: st.DataObject
) -> None:
    max_line, data = case
    whole = LineFramer(max_line).receive_data(data)
    assert whole == reference_frames(data, max_line)
    framer = LineFramer(max_line)
    piecewise: list[FrameEvent] = []
    for piece in split_at(data, draw.draw(cuts_for(data))):
        piecewise += framer.receive_data(piece)
        assert framer.buffered <= max_line - 1
    assert piecewise == whole


# -- Scripts of client activity ------------------------------------------------------------

NICKS = ["alice", "Alice", "bob", "BOB", "c", "[x]", "x" * 16, "x" * 17, "1bad", "nick!"]
CHANNELS = ["#a", "#A", "#b", "#chan", "0", "#", "a", "#a,#b", "#b,#A,#c"]
# Text from a small alphabet (multi-byte, separators, CR and NUL), which also keeps
# Hypothesis from building its Unicode tables on a fresh checkout.
TEXT = st.lists(
    st.sampled_from(["a", "Z", "é", "€", "𝄞", " ", ":", ",", "#", "!", "\r", "\0", "\t"]),
    max_size=20,
).map("".join)
NAME = st.sampled_from(NICKS)
CHANNEL = st.sampled_from(CHANNELS)
TARGET = st.one_of(NAME, CHANNEL, st.just("alice,#a"))

command_line = st.one_of(
    st.builds("NICK {}".format, NAME),
    st.builds(lambda user: f"USER {user} 0 * :real {user}", NAME),
    st.builds("JOIN {}".format, CHANNEL),
    st.builds("PART {} :{}".format, CHANNEL, TEXT),
    st.builds("PART {}".format, CHANNEL),
    st.builds("PRIVMSG {} :{}".format, TARGET, TEXT),
    st.builds("NOTICE {} :{}".format, TARGET, TEXT),
    st.builds("QUIT :{}".format, TEXT),
    st.builds("PING {}".format, NAME),
    st.builds("TOPIC {} :{}".format, CHANNEL, TEXT),
    st.builds("TOPIC {}".format, CHANNEL),
    st.builds("NAMES {}".format, CHANNEL),
    st.builds("MODE {}".format, TARGET),
    st.builds("WHOIS {}".format, NAME),
    st.sampled_from(["CAP LS 302", "CAP END", "CAP REQ :sasl", "PING", "JOIN", "FOO", "", "QUIT"]),
).map(str.encode)

# Joining and leaving drive the channel invariants, so they come up more often.
membership_line = st.one_of(
    st.builds("JOIN {}".format, CHANNEL),
    st.builds("PART {}".format, CHANNEL),
    st.sampled_from(["JOIN 0", "QUIT", "NICK c9", "PART #a,#b :bye"]),
).map(str.encode)

raw_line = st.one_of(
    st.tuples(command_line, st.sampled_from([b"\r\n", b"\n"])).map(b"".join),
    st.tuples(membership_line, st.sampled_from([b"\r\n", b"\n"])).map(b"".join),
    st.tuples(membership_line, st.just(b"\r\n")).map(b"".join),
    st.binary(max_size=30),  # garbage, with or without line endings
    st.integers(450, 1200).map(lambda n: b"PRIVMSG #a :" + b"L" * n + b"\r\n"),
    st.just(b"PRIVMSG #a :\xff\xfe bad utf-8\r\n"),
    st.integers(1, 12).map(lambda n: (b"PRIVMSG #a,#b :flood " + b"F" * 60 + b"\r\n") * n),
)


@dataclass(frozen=True)
class Step:
    client: int
    data: bytes | None  # None: the connection is lost


CLIENTS = 4
packet = st.lists(raw_line, min_size=1, max_size=4).map(b"".join)
# One step in five is a lost connection.
step = st.builds(
    Step, st.integers(0, CLIENTS - 1), st.one_of(packet, packet, packet, packet, st.none())
)


def prelude(register: list[bool]) -> list[Step]:
    """Register some clients and put them on #a, so that the random steps have an audience."""
    steps = []
    for client, wanted in enumerate(register):
        if wanted:
            steps.append(Step(client, f"NICK c{client}\r\nUSER u 0 * :r\r\nJOIN #a\r\n".encode()))
    return steps


script = st.builds(
    lambda pre, rest: prelude(pre) + rest,
    st.lists(st.booleans(), min_size=CLIENTS, max_size=CLIENTS),
    st.lists(step, max_size=25),
)

# Only joining, leaving and renaming, to reach the channel bookkeeping's corner cases.
membership_step = st.builds(
    Step,
    st.integers(0, CLIENTS - 1),
    st.lists(membership_line.map(lambda line: line + b"\r\n"), min_size=1, max_size=3).map(
        b"".join
    ),
)
membership_script = st.builds(
    lambda pre, rest: prelude(pre) + rest,
    st.lists(st.booleans(), min_size=CLIENTS, max_size=CLIENTS),
    st.lists(membership_step, max_size=15),
)


# -- (b) Chat: packet boundaries do not matter ---------------------------------------------


def run_script(limits: Limits, steps: list[Step], cuts: list[list[int]] | None) -> list[Effect]:
    """All effects of a script; every Send is reported sent at the end of its step."""
    server = ChatCore(limits, created="today")
    effects: list[Effect] = []
    conns: list[ConnId] = []
    for _ in range(CLIENTS):
        conn, connected = server.connect(HOST, 0.0)
        conns.append(conn)
        effects += connected
    for i, current in enumerate(steps):
        conn = conns[current.client]
        if current.data is None:
            produced = server.connection_lost(conn)
        else:
            pieces = [current.data] if cuts is None else split_at(current.data, cuts[i])
            produced = []
            for piece in pieces:
                produced += server.receive_data(conn, piece, 0.0)
        for effect in produced:
            if isinstance(effect, Send):
                server.data_sent(effect.conn, len(effect.data))
        effects += produced
    return effects


# Flood control off: time stands still in these scripts (the state machine
# in test_core_state_machine.py lets it pass).
LIMITS = st.sampled_from(
    [
        lenient_limits(),
        lenient_limits(max_line=64, max_clients=3),
        lenient_limits(max_line=100),
    ]
)


@SETTINGS
@given(limits=LIMITS, steps=script, draw=st.data())
def test_chat_is_independent_of_packet_boundaries(
    limits: Limits, steps: list[Step], draw: st.DataObject
) -> None:
    cuts = [draw.draw(cuts_for(s.data or b"")) for s in steps]
    whole = run_script(limits, steps, None)
    assert run_script(limits, steps, cuts) == whole


# -- (c) Invariants over random scripts ------------------------------------------------------


class Model:
    """What each connection was told about itself: its nick and its channels."""

    def __init__(self) -> None:
        self.nick: dict[ConnId, str] = {}
        self.channels: dict[ConnId, set[str]] = {}

    def observe(self, conn: ConnId, line: str) -> None:
        message = parse_line(line)
        mine = conn in self.nick and fold(message.source_nick or "") == fold(self.nick[conn])
        if message.command == "001":
            self.nick[conn] = message.params[0]
            self.channels[conn] = set()
        elif mine and message.command == "NICK":
            self.nick[conn] = message.params[0]
        elif mine and message.command == "JOIN":
            self.channels[conn].add(fold(message.params[0]))
        elif mine and message.command == "PART":
            self.channels[conn].discard(fold(message.params[0]))

    def forget(self, conn: ConnId) -> None:
        self.nick.pop(conn, None)
        self.channels.pop(conn, None)

    def channel_count(self) -> int:
        return len(set().union(*self.channels.values()))


@SETTINGS
@given(
    max_line=st.sampled_from([100, 512]),
    sendq=st.sampled_from([512, 1024, 262_144]),
    max_clients=st.sampled_from([2, 3, 4]),
    stalled=st.sets(st.integers(0, CLIENTS - 1), max_size=2),
    steps=st.one_of(script, membership_script),
    shutdown=st.booleans(),
)
def test_chat_invariants(
    *,
    max_line: int,
    sendq: int,
    max_clients: int,
    stalled: set[int],
    steps: list[Step],
    shutdown: bool,
) -> None:
    h = Harness(lenient_limits(max_line=max_line, sendq=sendq, max_clients=max_clients))
    conns = [h.connect() for _ in range(CLIENTS)]
    known = set(conns)
    for client in stalled:
        h.stall(conns[client])
    model = Model()
    open_conns = {conn for conn in conns if conn not in h.closed}
    assert len(open_conns) == min(CLIENTS, max_clients)

    def check(effects: list[Effect]) -> None:
        # The harness has already checked CR LF, max_line, UTF-8 and nothing-after-Close.
        for effect in effects:
            assert effect.conn in known
        for conn in list(h.lines):
            for line in h.take(conn):
                model.observe(conn, line)
        for conn in list(open_conns):
            if conn in h.closed:
                open_conns.discard(conn)
                model.forget(conn)
        assert h.core.client_count == len(open_conns)
        assert h.core.channel_count == model.channel_count()
        event(f"channels: {model.channel_count()}")

    for current in steps:
        conn = conns[current.client]
        check(h.lose(conn) if current.data is None else h.feed(conn, current.data))
    event(f"closed by the core: {len(h.closed) - (CLIENTS - min(CLIENTS, max_clients))}")
    event(f"SendQ drops: {sum(1 for c in h.closed.values() if not c.flush)}")
    if shutdown:
        effects = h.shutdown()
        check(effects)
        assert open_conns == set()
        assert h.core.channel_count == 0

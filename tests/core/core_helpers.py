"""Helpers for the pure tests of the sans-I/O core: an in-memory harness around ``ChatCore``.

The harness plays the adapter: it connects clients, feeds bytes, records what
each connection was sent and how it was closed, and reports sent bytes back
with ``data_sent`` as a client that reads everything would, unless a client
is marked as stalled. It checks the output contract of docs/protocol.md on every
effect (CR LF endings, ``max_line``, UTF-8, nothing after a Close), so every
test that uses it checks those too.
"""

from __future__ import annotations

import itertools
from collections import defaultdict
from dataclasses import dataclass
from typing import Any

from echochat.core import ChatCore, Close, ConnId, Effect, Limits, Line, LineTooLong, Send
from echochat.core.framing import FrameEvent

SERVER = "echochat.local"
HOST = "127.0.0.1"
CREATED = "Mon Jan 1 2024"

_ASCII_LOWER = str.maketrans("ABCDEFGHIJKLMNOPQRSTUVWXYZ", "abcdefghijklmnopqrstuvwxyz")


def lenient_limits(**overrides: Any) -> Limits:
    """Limits with flood control and the per-IP limit off, unless a test sets them.

    Most tests send bursts from many clients on one address, and time stands
    still until a test advances it.
    """
    return Limits(**({"flood_rate": 0, "max_per_ip": 0} | overrides))


def fold(name: str) -> str:
    """ASCII case folding, as ``CASEMAPPING=ascii`` promises."""
    return name.translate(_ASCII_LOWER)


@dataclass(frozen=True)
class Parsed:
    """A server line split per the message format of docs/protocol.md."""

    prefix: str | None
    command: str
    params: list[str]  # middle parameters, then the trailing one if any
    trailing: str | None

    @property
    def source_nick(self) -> str | None:
        return None if self.prefix is None else self.prefix.split("!", 1)[0]


def parse_line(line: str) -> Parsed:
    """Split ``:prefix COMMAND middle... :trailing`` (no CR LF) into its parts."""
    prefix = None
    rest = line
    if rest.startswith(":"):
        prefix, _, rest = rest[1:].partition(" ")
    trailing = None
    if " :" in rest:
        rest, _, trailing = rest.partition(" :")
    words = rest.split(" ")
    params = words[1:]
    if trailing is not None:
        params.append(trailing)
    return Parsed(prefix, words[0], params, trailing)


def check_output_line(line: bytes, max_line: int) -> str:
    """One line the server sends: CR LF ended, within ``max_line``, UTF-8, no stray CR/LF/NUL."""
    assert line.endswith(b"\r\n"), f"not ended by CR LF: {line!r}"
    assert len(line) <= max_line, f"{len(line)} > max_line {max_line}: {line!r}"
    body = line[:-2]
    assert b"\r" not in body, f"stray CR: {line!r}"
    assert b"\n" not in body, f"stray LF: {line!r}"
    assert b"\0" not in body, f"NUL: {line!r}"
    return body.decode("utf-8")  # raises if not valid UTF-8


def check_middle(word: str) -> None:
    """A middle parameter: one word that cannot be taken for the trailing one."""
    assert word, word
    assert " " not in word, word
    assert not word.startswith(":"), word


def split_at(data: bytes, cuts: list[int]) -> list[bytes]:
    bounds = [0, *sorted(cuts), len(data)]
    return [data[a:b] for a, b in itertools.pairwise(bounds)]


def reference_frames(data: bytes, max_line: int) -> list[FrameEvent]:
    """The **Lines** rule of docs/protocol.md, written out for a whole input at once.

    The property tests and fuzz/fuzz_framing.py compare ``LineFramer`` with it.
    """
    *complete, tail = data.split(b"\n")
    events: list[FrameEvent] = []
    for line in complete:
        if len(line) + 1 > max_line:
            events.append(LineTooLong())
            continue
        body = line[:-1] if line.endswith(b"\r") else line
        events.append(Line(body.replace(b"\r", b" ").replace(b"\0", b" ")))
    if len(tail) >= max_line:
        # The framer may not hold max_line bytes: it must give up before the LF.
        events.append(LineTooLong())
    return events


def split_lines(data: bytes) -> list[bytes]:
    """Split a Send's data into lines, each keeping its CR LF."""
    assert data.endswith(b"\n"), f"Send does not end with a whole line: {data!r}"
    return [piece + b"\n" for piece in data.split(b"\n")[:-1]]


class Harness:
    """A ChatCore plus the bookkeeping of an adapter whose clients read promptly."""

    def __init__(self, limits: Limits | None = None, network_seed: int | None = None) -> None:
        self.limits = limits or lenient_limits()
        self.core = ChatCore(self.limits, created=CREATED, network_seed=network_seed)
        self.now = 1000.0  # Any start will do: the core only compares and subtracts times.
        self.lines: dict[ConnId, list[str]] = defaultdict(list)  # unread lines, no CR LF
        self.closed: dict[ConnId, Close] = {}
        self.stalled: set[ConnId] = set()
        self.pending: dict[ConnId, int] = defaultdict(int)  # bytes a stalled client has not read
        self.log: list[Effect] = []
        self.conns: list[ConnId] = []

    # -- driving the core ----------------------------------------------------------

    def apply(self, effects: list[Effect]) -> list[Effect]:
        """Carry out effects as an adapter would, checking the output contract."""
        for effect in effects:
            assert effect.conn not in self.closed, f"effect after Close: {effect!r}"
            self.log.append(effect)
            if isinstance(effect, Send):
                for line in split_lines(effect.data):
                    self.lines[effect.conn].append(check_output_line(line, self.limits.max_line))
                if effect.conn in self.stalled:
                    self.pending[effect.conn] += len(effect.data)
                else:
                    self.core.data_sent(effect.conn, len(effect.data))
            else:
                if effect.farewell:
                    check_output_line(effect.farewell, self.limits.max_line)
                self.closed[effect.conn] = effect
        return effects

    def connect(self, host: str = HOST) -> ConnId:
        conn, effects = self.core.connect(host, self.now)
        self.conns.append(conn)
        self.apply(effects)
        return conn

    def feed(self, conn: ConnId, data: bytes) -> list[Effect]:
        effects = self.apply(self.core.receive_data(conn, data, self.now))
        return effects + self.run_ready(conn)

    def run_ready(self, conn: ConnId) -> list[Effect]:
        """What an adapter does after each call: once its writers have had a turn
        (``apply``), run the lines a bounded turn left, before reading more."""
        effects: list[Effect] = []
        while self.core.has_ready_lines(conn):
            effects += self.apply(self.core.handle_timer(conn, self.now))
        return effects

    def advance(self, seconds: float) -> list[Effect]:
        """Let time pass as an adapter would: each connection's timer fires at its deadline."""
        end = self.now + seconds
        effects: list[Effect] = []
        while True:
            due = [
                (deadline, conn)
                for conn in self.open_conns()
                if (deadline := self.core.deadline(conn)) is not None and deadline <= end
            ]
            if not due:
                break
            self.now, conn = min(due)
            effects += self.apply(self.core.handle_timer(conn, self.now))
            effects += self.run_ready(conn)
        self.now = end
        return effects

    def open_conns(self) -> list[ConnId]:
        """Connections the harness has seen and not seen closed."""
        return [conn for conn in self.conns if conn not in self.closed]

    def send(self, conn: ConnId, *lines: str) -> list[Effect]:
        return self.feed(conn, "".join(f"{line}\r\n" for line in lines).encode())

    def lose(self, conn: ConnId) -> list[Effect]:
        return self.apply(self.core.connection_lost(conn))

    def shutdown(self) -> list[Effect]:
        return self.apply(self.core.shutdown())

    def stall(self, conn: ConnId) -> None:
        self.stalled.add(conn)

    # -- reading what clients got --------------------------------------------------

    def take(self, conn: ConnId) -> list[str]:
        """Lines received by ``conn`` since the last take, without CR LF."""
        return self.lines.pop(conn, [])

    def take_parsed(self, conn: ConnId) -> list[Parsed]:
        return [parse_line(line) for line in self.take(conn)]

    def register(self, nick: str, user: str | None = None, host: str = HOST) -> ConnId:
        """Connect and register ``nick``; the welcome burst is read and checked to end in 422."""
        conn = self.connect(host)
        self.send(conn, f"NICK {nick}", f"USER {user or nick} 0 * :Real {nick}")
        lines = self.take(conn)
        assert lines, f"no welcome for {nick}"
        assert parse_line(lines[-1]).command == "422", lines
        return conn

    def join(self, conn: ConnId, channel: str, *others: ConnId) -> None:
        """Join ``channel`` and discard the resulting lines for ``conn`` and ``others``."""
        self.send(conn, f"JOIN {channel}")
        for who in (conn, *others):
            self.take(who)


def prefix_of(nick: str, user: str | None = None, host: str = HOST) -> str:
    return f"{nick}!{user or nick}@{host}"

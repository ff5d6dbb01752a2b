"""Coverage-guided fuzz target for the whole chat core, through ChatCore's adapter-facing API.

Run it with ``make fuzz FUZZ_TARGETS=chat`` (see fuzz/README.md). The input is
a script for four client slots on one ``ChatCore``, played by the small
interpreter in ``Script``: connect, send bytes, send a registration, lose the
connection, report queued bytes as sent, advance the clock (firing every
deadline that passes, at its exact instant, as an adapter's timer would),
and at the end perhaps shut down. Checked after every call:

- every effect is addressed to an open connection, and nothing follows a Close;
- every line sent (and every farewell) passes ``core_helpers.check_output_line``: CR LF,
  nothing else that ends a line, at most ``max_line`` bytes, valid UTF-8;
- every middle parameter the core formats is one word that cannot be read as
  the trailing one (``core_helpers.check_middle``): otherwise a client's text would
  shift the parameters other clients see;
- ``client_count`` matches the connections the script still holds, and a closed
  connection has no deadline;
- time cannot stall: firing a connection's deadline at its exact instant moves
  that deadline past the instant (or clears it), and one clock step fires at
  most ``MAX_FIRINGS`` deadlines.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path

import atheris

# The output checks the core's tests apply to every effect, so the two cannot drift apart.
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "core"))
from core_helpers import check_middle, check_output_line

with atheris.instrument_imports(include=["echochat"]):
    from echochat.core import chat
    from echochat.core.chat import ChatCore
    from echochat.core.effects import Close, ConnId, Effect, Send
    from echochat.core.limits import Limits
    from echochat.core.message import format_message

DICTIONARY = Path(__file__).with_name("irc.dict")
SLOTS = 4
# Two hosts, one an IPv6 address starting with ':', which the core rewrites.
HOSTS = ["127.0.0.1", "::1", "127.0.0.1", "::1"]
# Slot 3's reader is stalled: its bytes are only reported sent by DRAIN.
STALLED_SLOT = 3
LIMITS = [
    # Short limits, every policy on: timeouts, flood control, one connection per host.
    Limits(
        max_line=64,
        sendq=512,
        max_clients=3,
        registration_timeout=5,
        ping_interval=10,
        ping_timeout=5,
        flood_burst=3,
        flood_rate=1,
        recvq=256,
        max_per_ip=1,
    ),
    # Fewer places than slots, so "Server is full" comes up.
    Limits(max_line=100, sendq=1024, max_clients=3, flood_rate=0, recvq=400),
    Limits(max_line=512, sendq=2048, flood_burst=2, flood_rate=2, recvq=1024),
    Limits(),
]
# How often one clock advance may fire deadlines before time is deemed stalled.
MAX_FIRINGS = 10_000
CONNECT, SEND, SEND_LONG, REGISTER, LOSE, DRAIN, ADVANCE, JOIN = range(8)


def checked_format_message(
    prefix: str | None,
    command: str,
    params: tuple[str, ...] | list[str],
    trailing: str | None,
    max_line: int,
) -> bytes:
    """``format_message``, after checking that the core asks it for a well-formed message."""
    assert command.isascii(), command
    assert command.isalnum(), command
    for param in params:
        check_middle(param)
    return format_message(prefix, command, params, trailing, max_line)


# Every line the core sends goes through the name chat.py imported (not a
# public attribute of chat.py, hence the ignore).
chat.format_message = checked_format_message  # type: ignore[attr-defined]


class Script:
    """One ChatCore and what the script knows of its connections."""

    def __init__(self, limits: Limits) -> None:
        self.limits = limits
        self.core = ChatCore(limits, created="fuzz")
        self.now = 0.0
        self.slots: list[ConnId | None] = [None] * SLOTS
        self.open: set[ConnId] = set()
        self.closed: set[ConnId] = set()
        self.queued: dict[ConnId, int] = {}

    def apply(self, effects: list[Effect]) -> None:
        for effect in effects:
            assert effect.conn in self.open, (effect, self.closed)
            if isinstance(effect, Send):
                check_output_line(effect.data, self.limits.max_line)
                self.queued[effect.conn] = self.queued.get(effect.conn, 0) + len(effect.data)
            else:
                assert isinstance(effect, Close), effect
                if effect.farewell:
                    check_output_line(effect.farewell, self.limits.max_line)
                self.open.discard(effect.conn)
                self.closed.add(effect.conn)
                self.queued.pop(effect.conn, None)
        self.slots = [conn if conn in self.open else None for conn in self.slots]
        # Readers that keep up report everything sent once the call is over.
        for slot, conn in enumerate(self.slots):
            if conn is not None and slot != STALLED_SLOT:
                self.drain(conn)
        assert self.core.client_count == len(self.open), (self.core.client_count, self.open)

    def drain(self, conn: ConnId) -> None:
        sent = self.queued.pop(conn, 0)
        if sent:
            self.core.data_sent(conn, sent)

    def connect(self, slot: int) -> None:
        if self.slots[slot] is not None:
            return
        conn, effects = self.core.connect(HOSTS[slot], self.now)
        assert conn not in self.open, conn
        assert conn not in self.closed, conn
        self.open.add(conn)
        self.slots[slot] = conn
        self.apply(effects)

    def send(self, slot: int, data: bytes) -> None:
        conn = self.slots[slot]
        if conn is not None:
            self.apply(self.core.receive_data(conn, data, self.now))

    def lose(self, slot: int) -> None:
        conn = self.slots[slot]
        if conn is not None:
            self.apply(self.core.connection_lost(conn))
            # The peer is gone whether or not the core had anything to close.
            self.open.discard(conn)
            self.closed.add(conn)
            self.slots[slot] = None
            assert self.core.client_count == len(self.open)

    def advance(self, seconds: float) -> None:
        """Move the clock on, firing each deadline on the way at its own instant."""
        until = self.now + seconds
        for _ in range(MAX_FIRINGS):
            due = [
                (deadline, conn)
                for conn in sorted(self.open)
                if (deadline := self.core.deadline(conn)) is not None and deadline <= until
            ]
            if not due:
                self.now = until
                return
            deadline, conn = min(due)
            # A deadline already behind the clock fires now: the clock never runs back.
            self.now = max(self.now, deadline)
            self.apply(self.core.handle_timer(conn, self.now))
            after = self.core.deadline(conn)
            # Otherwise an adapter would wake again at once, for ever if its clock is coarse.
            assert after is None or after > self.now, (conn, self.now, after)
        raise AssertionError(f"deadlines still due after {MAX_FIRINGS} firings: time is stuck")

    def check_closed(self) -> None:
        for conn in self.closed:
            assert self.core.deadline(conn) is None, conn

    def shutdown(self) -> None:
        self.apply(self.core.shutdown())
        assert not self.open, self.open
        assert self.core.channel_count == 0


def play(script: Script, ops: Sequence[int]) -> None:
    """Interpret ``ops``: an opcode byte (kind in the low 3 bits, slot above), then its operands."""
    i = 0
    while i < len(ops):
        op = ops[i]
        kind, slot = op % 8, (op // 8) % SLOTS
        i += 1
        if kind == CONNECT:
            script.connect(slot)
        elif kind in (SEND, SEND_LONG):
            # A length byte (times 16 for SEND_LONG, to reach the line and queue limits).
            length = ops[i] * (16 if kind == SEND_LONG else 1) if i < len(ops) else 0
            script.send(slot, bytes(ops[i + 1 : i + 1 + length]))
            i += 1 + length
        elif kind == REGISTER:
            script.send(slot, f"NICK n{slot}\r\nUSER u{slot} 0 * :r\r\n".encode())
        elif kind == JOIN:
            script.send(slot, b"JOIN #a\r\n")
        elif kind == LOSE:
            script.lose(slot)
        elif kind == DRAIN:
            conn = script.slots[slot]
            if conn is not None:
                script.drain(conn)
        else:
            # ADVANCE: an operand byte of quarter seconds.
            quarters = ops[i] if i < len(ops) else 0
            script.advance(quarters / 4)
            i += 1
        script.check_closed()


def test_one_input(raw: bytes) -> None:
    # Layout: a byte for the limits (and whether to shut down at the end), then the script.
    if not raw:
        return
    script = Script(LIMITS[raw[0] % len(LIMITS)])
    play(script, raw[1:])
    if raw[0] // len(LIMITS) % 2:
        script.shutdown()


def main() -> None:
    # The IRC words help the fuzzer past the parser into the commands.
    atheris.Setup([*sys.argv, f"-dict={DICTIONARY}"], test_one_input)
    atheris.Fuzz()


if __name__ == "__main__":
    main()

"""LineFramer against the **Lines** rule of docs/protocol.md, with no sockets at all."""

from __future__ import annotations

import pytest

from echochat.core import Line, LineFramer, LineTooLong
from echochat.core.framing import FrameEvent

MAX = 512


def feed_bytewise(framer: LineFramer, data: bytes) -> list[FrameEvent]:
    """Feed one byte at a time, checking the buffer bound after every byte."""
    events: list[FrameEvent] = []
    for i in range(len(data)):
        events += framer.receive_data(data[i : i + 1])
        assert framer.buffered <= framer.max_line - 1, (i, framer.buffered)
    return events


def test_lines_split_on_lf() -> None:
    framer = LineFramer(MAX)
    assert framer.receive_data(b"one\ntwo\nthree\n") == [Line(b"one"), Line(b"two"), Line(b"three")]
    assert framer.buffered == 0


def test_crlf_and_lf_both_end_a_line() -> None:
    framer = LineFramer(MAX)
    assert framer.receive_data(b"a\r\nb\nc\r\n") == [Line(b"a"), Line(b"b"), Line(b"c")]


def test_incomplete_line_waits_for_its_lf() -> None:
    framer = LineFramer(MAX)
    assert framer.receive_data(b"PING :to") == []
    assert framer.buffered == len(b"PING :to")
    assert framer.receive_data(b"ken\r") == []
    assert framer.receive_data(b"\nNI") == [Line(b"PING :token")]
    assert framer.buffered == 2


def test_cr_split_from_its_lf_across_packets_is_still_the_ending() -> None:
    framer = LineFramer(MAX)
    assert framer.receive_data(b"abc\r") == []
    assert framer.receive_data(b"\n") == [Line(b"abc")]


def test_only_one_cr_before_lf_is_dropped() -> None:
    framer = LineFramer(MAX)
    # The CR right before the LF ends the line; the one before it becomes a space.
    assert framer.receive_data(b"abc\r\r\n") == [Line(b"abc ")]


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (b"a\rb\n", b"a b"),
        (b"a\0b\n", b"a b"),
        (b"\rPRIVMSG\0#a\r:x\r\n", b" PRIVMSG #a :x"),
        (b"\0\0\r\n", b"  "),
        (b"\r\r\r\n", b"  "),
    ],
)
def test_other_cr_and_nul_become_spaces(raw: bytes, expected: bytes) -> None:
    assert LineFramer(MAX).receive_data(raw) == [Line(expected)]


def test_no_cr_or_nul_survives_in_any_line() -> None:
    framer = LineFramer(MAX)
    events = framer.receive_data(b"\r\0x\r\0\r\n\0\r\r\n\r\n")
    assert len(events) == 3
    for event in events:
        assert isinstance(event, Line)
        assert b"\r" not in event.data
        assert b"\0" not in event.data
        assert b"\n" not in event.data


@pytest.mark.parametrize("ending", [b"\r\n", b"\n"])
def test_empty_lines(ending: bytes) -> None:
    framer = LineFramer(MAX)
    assert framer.receive_data(ending * 3) == [Line(b"")] * 3


@pytest.mark.parametrize("max_line", [64, 100, 512])
@pytest.mark.parametrize("bytewise", [False, True])
def test_line_of_exactly_max_line_with_crlf_is_accepted(max_line: int, bytewise: bool) -> None:
    body = b"x" * (max_line - 2)
    raw = body + b"\r\n"
    assert len(raw) == max_line
    framer = LineFramer(max_line)
    events = feed_bytewise(framer, raw) if bytewise else framer.receive_data(raw)
    assert events == [Line(body)]


@pytest.mark.parametrize("max_line", [64, 100, 512])
@pytest.mark.parametrize("bytewise", [False, True])
def test_one_byte_over_max_line_is_too_long(max_line: int, bytewise: bool) -> None:
    raw = b"x" * (max_line - 1) + b"\r\n"
    assert len(raw) == max_line + 1
    framer = LineFramer(max_line)
    events = feed_bytewise(framer, raw) if bytewise else framer.receive_data(raw)
    assert events == [LineTooLong()]
    # The framer is back to normal afterwards.
    assert framer.receive_data(b"ok\r\n") == [Line(b"ok")]


@pytest.mark.parametrize("max_line", [64, 512])
def test_lf_only_line_of_max_line_bytes_is_accepted(max_line: int) -> None:
    body = b"y" * (max_line - 1)
    assert LineFramer(max_line).receive_data(body + b"\n") == [Line(body)]
    assert LineFramer(max_line).receive_data(body + b"y\n") == [LineTooLong()]


@pytest.mark.parametrize("chunk", [1, 7, 511, 512, 513, 4096, 10_000])
def test_long_line_then_valid_line(chunk: int) -> None:
    # The tail of the long line looks like a command: it must never surface.
    long_line = b"PRIVMSG #a :" + b"A" * 4000 + b" QUIT :tail " + b"B" * 1000 + b"\r\n"
    assert len(long_line) > 5000
    data = long_line + b"PING :ok\r\n"
    framer = LineFramer(MAX)
    events: list[FrameEvent] = []
    for start in range(0, len(data), chunk):
        events += framer.receive_data(data[start : start + chunk])
        assert framer.buffered <= MAX - 1
    assert events == [LineTooLong(), Line(b"PING :ok")]


def test_long_line_reported_once_however_long() -> None:
    framer = LineFramer(64)
    events: list[FrameEvent] = []
    for _ in range(100):
        events += framer.receive_data(b"z" * 100)
    assert events == [LineTooLong()]
    assert framer.buffered == 0
    assert framer.receive_data(b"still discarding\r\nfresh\r\n") == [Line(b"fresh")]


def test_unterminated_long_line_is_reported_before_its_lf() -> None:
    # The framer may not hold max_line bytes, so it must decide before the LF arrives.
    framer = LineFramer(64)
    assert framer.receive_data(b"q" * 63) == []
    assert framer.buffered == 63
    assert framer.receive_data(b"q") == [LineTooLong()]
    assert framer.buffered <= 63


@pytest.mark.parametrize("max_line", [64, 512])
@pytest.mark.parametrize(
    "pattern",
    [
        b"x",  # no LF at all
        b"xxxxxxxxx\r",  # CRs that never become an ending
        b"abc\ndef\n" + b"g" * 700,  # lines, then an endless one
        b"\n",
        b"\r\n" + b"h" * 63 + b"\n",
    ],
)
def test_buffer_never_exceeds_max_line_minus_one(max_line: int, pattern: bytes) -> None:
    data = pattern * (3 * max_line // len(pattern) + 1)
    feed_bytewise(LineFramer(max_line), data)


def test_buffer_bound_with_large_pieces() -> None:
    framer = LineFramer(MAX)
    for size in (MAX - 1, 1, MAX, 2 * MAX, 10 * MAX):
        framer.receive_data(b"w" * size)
        assert framer.buffered <= MAX - 1


def test_many_lines_in_one_packet_are_all_returned_in_order() -> None:
    data = b"".join(b"PRIVMSG #a :%d\r\n" % i for i in range(1000))
    events = LineFramer(MAX).receive_data(data)
    assert events == [Line(b"PRIVMSG #a :%d" % i) for i in range(1000)]


def test_bytes_are_passed_through_otherwise_unchanged() -> None:
    raw = bytes(b for b in range(256) if b not in (0x0A, 0x0D, 0x00))
    assert LineFramer(MAX).receive_data(raw + b"\r\n") == [Line(raw)]

"""Line framing for the chat service: bytes in, complete lines out, with a hard length limit.

Anchored on h2's ``H2Connection.receive_data``, which takes bytes and returns
the events they complete (h11 instead buffers the bytes and hands out events one
``next_event()`` call at a time). The framer owns a small buffer and never more
than ``max_line`` bytes of it, however the input is cut into packets. An
over-long line is reported once (``LineTooLong``) and then discarded up to its
LF, so no part of it is ever executed.
"""

from __future__ import annotations

from dataclasses import dataclass

# One CR right before the LF is the line ending; any other CR or NUL would let
# a client smuggle a line break or a string terminator to other clients.
_CONTROL_TO_SPACE = bytes.maketrans(b"\r\0", b"  ")


@dataclass(frozen=True, slots=True)
class Line:
    """A complete line without its ending, CR and NUL already made safe."""

    data: bytes


@dataclass(frozen=True, slots=True)
class LineTooLong:
    """A line that exceeded ``max_line`` bytes (counting its CR LF) was dropped."""


FrameEvent = Line | LineTooLong


class LineFramer:
    """Splits a byte stream into lines of at most ``max_line`` bytes including the ending."""

    def __init__(self, max_line: int) -> None:
        self.max_line = max_line
        self._partial = bytearray()
        # True between reporting LineTooLong for a line and seeing that line's LF.
        self._discarding = False

    @property
    def buffered(self) -> int:
        """Bytes held for an incomplete line: never more than ``max_line - 1``."""
        return len(self._partial)

    def receive_data(self, data: bytes) -> list[FrameEvent]:
        """Feed bytes as they come off the socket; return the events they complete."""
        events: list[FrameEvent] = []
        start = 0
        while True:
            end = data.find(b"\n", start)
            if end < 0:
                self._keep_partial(data[start:], events)
                return events
            self._finish_line(data[start:end], events)
            start = end + 1

    def _keep_partial(self, piece: bytes, events: list[FrameEvent]) -> None:
        if self._discarding or not piece:
            return
        # A line may hold max_line - 1 bytes before its LF.
        if len(self._partial) + len(piece) >= self.max_line:
            events.append(LineTooLong())
            self._partial.clear()
            self._discarding = True
        else:
            self._partial += piece

    def _finish_line(self, piece: bytes, events: list[FrameEvent]) -> None:
        if self._discarding:
            # The LF that ends a line already reported as too long.
            self._discarding = False
            return
        if len(self._partial) + len(piece) + 1 > self.max_line:
            events.append(LineTooLong())
        else:
            line = bytes(self._partial) + piece
            if line.endswith(b"\r"):
                line = line[:-1]
            events.append(Line(line.translate(_CONTROL_TO_SPACE)))
        self._partial.clear()

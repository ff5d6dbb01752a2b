"""Coverage-guided fuzz target for ``LineFramer`` (run it with ``make fuzz``; see fuzz/README.md).

The input's first bytes choose ``max_line`` and where the rest is cut into
packets (see ``test_one_input``); the rest is the byte stream. Checked on every input:

- fed whole, the framer gives exactly the events of the **Lines** paragraph of
  docs/protocol.md, written out as ``reference_frames`` in tests/core/core_helpers.py,
  which the property tests use too (so a line of at most
  ``max_line`` bytes including its ending comes out, a longer one is reported
  once as ``LineTooLong``, one CR before the LF is dropped, other CR and NUL
  become spaces);
- fed in pieces, it gives the same events, never buffers more than
  ``max_line - 1`` bytes between pieces, and ends up holding exactly the
  unterminated tail (or nothing, if that tail is already too long);
- no ``Line`` holds CR, LF or NUL, or more than ``max_line - 1`` bytes.
"""

from __future__ import annotations

import sys
from pathlib import Path

import atheris

# The reference the property tests check against, so the two cannot drift apart.
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "core"))
from core_helpers import reference_frames, split_at

with atheris.instrument_imports(include=["echochat"]):
    from echochat.core.framing import FrameEvent, Line, LineFramer

# Small limits reach the boundaries with short inputs; LineFramer itself
# accepts any positive limit, Limits only enforces >= 64 for the chat service.
MAX_LINE_LIMIT = 80
MAX_CUTS = 16


def pieces_of(data: bytes, cut_bytes: bytes) -> list[bytes]:
    """``data`` cut at the positions that ``cut_bytes`` pick (empty pieces included)."""
    return split_at(data, [byte * len(data) // 255 for byte in cut_bytes])


def test_one_input(raw: bytes) -> None:
    # Layout: max_line byte, cut count byte, that many cut bytes, then the stream.
    # Plain bytes rather than a FuzzedDataProvider, so seeds can be written by hand.
    if len(raw) < 2:
        return
    max_line = 1 + raw[0] % MAX_LINE_LIMIT
    cut_count = raw[1] % (MAX_CUTS + 1)
    cut_bytes = raw[2 : 2 + cut_count]
    data = raw[2 + cut_count :]

    framer = LineFramer(max_line)
    whole = framer.receive_data(data)
    assert whole == reference_frames(data, max_line), (max_line, data, whole)
    # What follows the last LF is held, unless it is already known to be too long.
    tail = data.rpartition(b"\n")[2]
    held = len(tail) if len(tail) < max_line else 0
    assert framer.buffered == held, (max_line, data, framer.buffered)

    framer = LineFramer(max_line)
    piecewise: list[FrameEvent] = []
    for piece in pieces_of(data, cut_bytes):
        piecewise += framer.receive_data(piece)
        assert 0 <= framer.buffered <= max_line - 1, (max_line, framer.buffered)
    assert piecewise == whole, (max_line, pieces_of(data, cut_bytes), piecewise, whole)
    assert framer.buffered == held, (max_line, pieces_of(data, cut_bytes), framer.buffered)

    for event in whole:
        if isinstance(event, Line):
            assert len(event.data) <= max_line - 1, (max_line, event)
            assert not any(byte in event.data for byte in b"\r\n\0"), event


def main() -> None:
    atheris.Setup(sys.argv, test_one_input)
    atheris.Fuzz()


if __name__ == "__main__":
    main()

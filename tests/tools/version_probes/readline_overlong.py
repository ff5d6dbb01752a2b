"""What ``StreamReader.readline()`` does with a line longer than the reader's limit.

``readline()`` turns ``LimitOverrunError`` into ``ValueError``, and what it
discards depends on whether the line's LF had arrived (``StreamReader.readline``
and ``readuntil`` in Lib/asyncio/streams.py):

- LF not yet buffered ("Separator is not found, and chunk exceed the limit"):
  it clears the whole buffer, so the rest of the long line, when it arrives,
  reads as a line of its own;
- LF already buffered ("Separator is found, but chunk is longer than limit"):
  it deletes the line through its LF and keeps what follows, so the whole
  line is gone and the next line reads normally.

echochat's asyncio adapter reads with ``read()`` and lets the core's
LineFramer discard over-long lines up to their LF, however they arrive.

Prints one JSON object; its "outcome" is a cell of docs/design/version_matrix.json.
"""

from __future__ import annotations

import asyncio
import json

LONG_LINE_HEAD = b"PRIVMSG #c :" + b"x" * 40


async def overlong(first_chunk: bytes, second_chunk: bytes) -> tuple[str, bytes]:
    """Feed ``first_chunk``, read a line (too long for the limit), feed the rest, read again."""
    reader = asyncio.StreamReader(limit=16)
    reader.feed_data(first_chunk)
    try:
        first = repr(await reader.readline())
    except ValueError as error:
        first = f"ValueError: {error}"
    reader.feed_data(second_chunk)
    reader.feed_eof()
    return first, await reader.readline()


def describe(first: str, second: bytes, tail: bytes, next_line: bytes) -> str:
    if not first.startswith("ValueError"):
        return "no error"
    if second == tail:
        return "the tail as a line"
    if second == next_line:
        return "line discarded"
    return f"then {second!r}"


async def main() -> dict[str, object]:
    # The LF arrives after readline() has given up: the tail comes back.
    tail = b" QUIT :injected\n"
    waiting = await overlong(LONG_LINE_HEAD, tail)
    # The LF is already buffered: the line goes, through its LF.
    next_line = b"NICK ok\n"
    buffered = await overlong(LONG_LINE_HEAD + tail + next_line, b"")
    lf_later = describe(*waiting, tail, next_line)
    lf_buffered = describe(*buffered, tail, next_line)
    return {
        "outcome": f"ValueError; LF not yet read: {lf_later}; LF buffered: {lf_buffered}",
        "lf_later": {"first": waiting[0], "second": repr(waiting[1])},
        "lf_buffered": {"first": buffered[0], "second": repr(buffered[1])},
    }


if __name__ == "__main__":
    print(json.dumps(asyncio.run(main())))

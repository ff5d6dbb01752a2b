"""What ``StreamReader.readline()`` does with a line longer than the reader's limit.

``readline()`` turns ``LimitOverrunError`` into ``ValueError`` and, when no
separator is buffered yet, clears its buffer (``StreamReader.readline`` in
Lib/asyncio/streams.py), so the rest of the long line later reads as a line
of its own. echochat's asyncio adapter reads with ``read()`` and lets the
core's LineFramer discard over-long lines up to their LF.

Prints one JSON object; its "outcome" is a cell of docs/design/version_matrix.json.
"""

from __future__ import annotations

import asyncio
import json


async def main() -> dict[str, object]:
    reader = asyncio.StreamReader(limit=16)
    reader.feed_data(b"PRIVMSG #c :" + b"x" * 40)
    try:
        first = repr(await reader.readline())
    except ValueError as error:
        first = f"ValueError: {error}"
    reader.feed_data(b" QUIT :injected\n")
    second = await reader.readline()
    if first.startswith("ValueError") and second == b" QUIT :injected\n":
        outcome = "ValueError, then the tail as a line"
    elif first.startswith("ValueError"):
        outcome = "ValueError, tail discarded"
    else:
        outcome = "no error"
    return {"outcome": outcome, "first": first, "second": repr(second)}


if __name__ == "__main__":
    print(json.dumps(asyncio.run(main())))

"""Does ``drain()`` below the high-water mark let other tasks run?

``StreamWriter.drain()`` awaits ``FlowControlMixin._drain_helper()``, which
returns at once unless writing is paused (Lib/asyncio/streams.py), so a
``write()`` + ``drain()`` loop to a fast reader is not a scheduling point
(gh-75279). echochat's writer task awaits its queue between writes, which
does yield.

Prints one JSON object; its "outcome" is a cell of docs/design/version_matrix.json.
"""

from __future__ import annotations

import asyncio
import json

ROUNDS = 2000


async def main() -> dict[str, object]:
    other_task_ran = 0

    async def count() -> None:
        nonlocal other_task_ran
        while True:
            other_task_ran += 1
            await asyncio.sleep(0)

    finished = asyncio.Event()

    async def discard(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while await reader.read(65536):
            pass
        writer.close()
        finished.set()

    server = await asyncio.start_server(discard, "127.0.0.1", 0)
    _, writer = await asyncio.open_connection("127.0.0.1", server.sockets[0].getsockname()[1])
    counter = asyncio.ensure_future(count())
    await asyncio.sleep(0)  # The counter has run once.
    before = other_task_ran
    for _ in range(ROUNDS):
        writer.write(b"x" * 100)  # Far below the 64 KiB high-water mark.
        await writer.drain()
    ran = other_task_ran - before
    counter.cancel()
    writer.close()
    await writer.wait_closed()
    await finished.wait()
    server.close()
    await server.wait_closed()
    return {"outcome": "never yields" if ran == 0 else "yields", "other_task_ran": ran}


if __name__ == "__main__":
    print(json.dumps(asyncio.run(main())))

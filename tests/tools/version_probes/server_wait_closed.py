"""When does ``Server.wait_closed()`` return?

Two cases (``Server.wait_closed`` in Lib/asyncio/base_events.py, whose
docstring tells the history):

- closed with a connection still open: 3.11 returns at once once the server
  is closed; from 3.12.0 (gh-79033, PR #98582) it waits until every
  connection is dropped. ``close()`` itself never closes the connections.
- still open, with no connection: 3.11 waits (for ``close()``); 3.12.0
  returned at once, the case PR #111336 fixed in 3.12.1, which waits again.

echochat's asyncio adapter relies on neither: its TaskGroup waits for every
handler (impls/echochat/asyncio_impl/server.py).

Prints one JSON object; its "outcome" is a cell of docs/design/version_matrix.json.
"""

from __future__ import annotations

import asyncio
import json


async def returns_at_once(server: asyncio.Server) -> tuple[bool, asyncio.Future[None]]:
    waiting = asyncio.ensure_future(server.wait_closed())
    # One turn of the loop: enough for a wait_closed() that does not wait to finish.
    await asyncio.sleep(0)
    return waiting.done(), waiting


async def closed_with_a_connection() -> bool:
    finished = asyncio.Event()

    async def until_eof(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read()
        writer.close()
        finished.set()

    server = await asyncio.start_server(until_eof, "127.0.0.1", 0)
    _, client = await asyncio.open_connection("127.0.0.1", server.sockets[0].getsockname()[1])
    server.close()
    at_once, waiting = await returns_at_once(server)
    client.close()
    await client.wait_closed()
    await finished.wait()
    await asyncio.wait_for(waiting, 10)
    return at_once


async def open_without_connections() -> bool:
    async def unused(_: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.close()

    server = await asyncio.start_server(unused, "127.0.0.1", 0)
    at_once, waiting = await returns_at_once(server)
    server.close()
    await asyncio.wait_for(waiting, 10)
    return at_once


async def main() -> dict[str, object]:
    closed = "returns at once" if await closed_with_a_connection() else "waits for connections"
    idle = "returns at once" if await open_without_connections() else "waits for close()"
    return {"outcome": f"closed: {closed}; open, idle: {idle}"}


if __name__ == "__main__":
    print(json.dumps(asyncio.run(main())))

"""Does ``Server.wait_closed()`` wait for open connections after ``close()``?

On 3.11 it returns at once once the server is closed (``Server.wait_closed``
in Lib/asyncio/base_events.py); from 3.12.0 (gh-79033, PR #98582) it waits
until every connection is dropped (3.12.1 fixed the case of a server that is
still open). ``close()`` itself never closes the connections. echochat's
asyncio adapter does not rely on either: its TaskGroup waits for every
handler (impls/echochat/asyncio_impl/server.py).

Prints one JSON object; its "outcome" is a cell of docs/design/version_matrix.json.
"""

from __future__ import annotations

import asyncio
import json


async def main() -> dict[str, object]:
    finished = asyncio.Event()

    async def until_eof(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read()
        writer.close()
        finished.set()

    server = await asyncio.start_server(until_eof, "127.0.0.1", 0)
    _, client = await asyncio.open_connection("127.0.0.1", server.sockets[0].getsockname()[1])
    server.close()
    waiting = asyncio.ensure_future(server.wait_closed())
    # One turn of the loop: enough for a wait_closed() that does not wait to finish.
    await asyncio.sleep(0)
    returned_with_connection_open = waiting.done()
    client.close()
    await client.wait_closed()
    await finished.wait()
    await asyncio.wait_for(waiting, 10)
    if returned_with_connection_open:
        return {"outcome": "returns at once"}
    return {"outcome": "waits for connections"}


if __name__ == "__main__":
    print(json.dumps(asyncio.run(main())))

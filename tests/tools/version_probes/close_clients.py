"""``Server.close_clients()`` and ``abort_clients()`` (added in 3.13, gh-113538).

They close (or abort) every connection the server accepted, which
``Server.close()`` leaves open. Before 3.13 the server has no list of its
connections you can use, so echochat keeps its own (``EchoService.connections``
and the chat hub in impls/echochat/asyncio_impl/) and runs the handlers in a
TaskGroup.

Prints one JSON object; its "outcome" is a cell of docs/design/version_matrix.json.
"""

from __future__ import annotations

import asyncio
import contextlib
import json


async def main() -> dict[str, object]:
    if not hasattr(asyncio.Server, "close_clients"):
        return {"outcome": "absent", "abort_clients": hasattr(asyncio.Server, "abort_clients")}
    started = asyncio.Event()
    finished = asyncio.Event()

    async def until_eof(reader: asyncio.StreamReader, _: asyncio.StreamWriter) -> None:
        started.set()
        with contextlib.suppress(ConnectionError):
            await reader.read()
        finished.set()

    server = await asyncio.start_server(until_eof, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    seen: dict[str, str] = {}
    for method in ("close_clients", "abort_clients"):
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        await started.wait()
        getattr(server, method)()
        try:
            seen[method] = "EOF" if await asyncio.wait_for(reader.read(), 10) == b"" else "data"
        except ConnectionError as error:
            seen[method] = type(error).__name__
        writer.close()
        await finished.wait()
        started.clear()
        finished.clear()
    server.close()
    await asyncio.wait_for(server.wait_closed(), 10)
    closed = all(result in ("EOF", "ConnectionResetError") for result in seen.values())
    return {"outcome": "both end every connection" if closed else "left open", "seen": seen}


if __name__ == "__main__":
    print(json.dumps(asyncio.run(main())))

"""What ``start_server`` does when a connection handler raises.

Since gh-110894 (3.11.7, 3.12.1) the done callback that
``StreamReaderProtocol.connection_made`` adds to the handler's task
(Lib/asyncio/streams.py) passes the exception to the loop's exception
handler ("Unhandled exception in client_connected_cb") and closes the
transport; before, the exception was only logged if and when the task was
garbage-collected, and the connection stayed open. echochat's asyncio
adapter catches and logs every handler exception itself
(``handle_connection`` in impls/echochat/asyncio_impl/server.py).

Prints one JSON object; its "outcome" is a cell of docs/design/version_matrix.json.
"""

from __future__ import annotations

import asyncio
import json


async def main() -> dict[str, object]:
    reports: list[dict[str, object]] = []
    asyncio.get_running_loop().set_exception_handler(lambda _, context: reports.append(context))
    handlers: list[asyncio.Task[object]] = []
    writers: list[asyncio.StreamWriter] = []
    started = asyncio.Event()

    async def fail(_: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        handlers.append(task)
        writers.append(writer)
        started.set()
        raise RuntimeError("boom")

    server = await asyncio.start_server(fail, "127.0.0.1", 0)
    _, client = await asyncio.open_connection("127.0.0.1", server.sockets[0].getsockname()[1])
    await started.wait()
    # Done callbacks run in the order they were added: start_server's runs first.
    await asyncio.wait(handlers)
    closed = writers[0].transport.is_closing()
    messages = [str(report.get("message")) for report in reports]
    client.close()
    await client.wait_closed()
    if not closed:
        writers[0].transport.abort()
    server.close()
    await server.wait_closed()
    reported = messages == ["Unhandled exception in client_connected_cb"]
    if reported and closed:
        outcome = "reported, connection closed"
    elif not messages and not closed:
        outcome = "silent, connection left open"
    else:
        outcome = f"reports {messages}, closed={closed}"
    return {"outcome": outcome, "messages": messages, "closed": closed}


if __name__ == "__main__":
    print(json.dumps(asyncio.run(main())))

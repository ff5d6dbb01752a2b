"""What ``start_server`` does when a connection handler's task is cancelled.

The done callback that ``StreamReaderProtocol.connection_made`` adds to the
handler's task (Lib/asyncio/streams.py) called ``task.exception()``, which
raises ``CancelledError`` for a cancelled task: the loop reports "Exception in
callback" and the transport is left open. That callback came with gh-110894
(3.11.7, 3.12.1; before it nothing watched the task) and was fixed by
gh-113538 (PR #113690) in 3.11.8, 3.12.2 and 3.13.0: the transport is closed
and nothing is reported. echochat's asyncio adapter never cancels a start_server task: it
spawns each handler into its own TaskGroup (impls/echochat/asyncio_impl/server.py).

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

    async def wait_for_eof(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        handlers.append(task)
        writers.append(writer)
        started.set()
        await reader.read()

    server = await asyncio.start_server(wait_for_eof, "127.0.0.1", 0)
    _, client = await asyncio.open_connection("127.0.0.1", server.sockets[0].getsockname()[1])
    await started.wait()
    handlers[0].cancel()
    # Done callbacks run in the order they were added: start_server's runs first.
    await asyncio.wait(handlers)
    closed = writers[0].transport.is_closing()
    messages = [str(report.get("message")).split(" ")[:3] for report in reports]
    errors = [type(report.get("exception")).__name__ for report in reports]
    client.close()
    await client.wait_closed()
    if not closed:
        writers[0].transport.abort()
    server.close()
    await server.wait_closed()
    if closed and not reports:
        outcome = "closed silently"
    elif not closed and errors == ["CancelledError"]:
        outcome = '"Exception in callback", connection left open'
    elif not closed and not reports:
        outcome = "silent, connection left open"
    else:
        outcome = f"reports {errors}, closed={closed}"
    return {"outcome": outcome, "messages": messages, "errors": errors, "closed": closed}


if __name__ == "__main__":
    print(json.dumps(asyncio.run(main())))

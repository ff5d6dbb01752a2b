"""A framework's own server, run out of descriptors with one client queued: what it does.

Usage: python accept_emfile.py KIND, KIND one of asyncio, uvloop, trio,
anyio-asyncio, anyio-trio. Prints one JSON object. The server is the
framework's stock one (asyncio.start_server, trio.serve_tcp, anyio's
Listener.serve) echoing one line. Under a soft limit of 64 files the probe
fills every free descriptor, then a client thread (its socket made before)
connects and sends a line (in a worker thread); 0.5 s later it frees the descriptors and waits up
to 2 s for the echo. "asyncio" imports only the standard library, so it runs
under any Python with -I.
"""

from __future__ import annotations

import json
import logging
import os
import resource
import socket
import sys
import time
from typing import Any

KIND = sys.argv[1]
EXHAUSTED_FOR = 0.5
result: dict[str, Any] = {"kind": KIND, "python": sys.version.split()[0], "reports": 0}
fillers: list[int] = []


def fill() -> None:
    while True:
        try:
            fillers.append(os.open(os.devnull, os.O_RDONLY))
        except OSError:
            return


def client(port: int, sock: socket.socket) -> None:
    """Connect while no descriptor is free, free them after a while, wait for the echo."""
    sock.settimeout(2)
    sock.connect(("127.0.0.1", port))
    sock.sendall(b"hi\n")
    time.sleep(EXHAUSTED_FOR)
    result["reports_while_exhausted"] = result["reports"]
    result["filled"] = len(fillers)
    while fillers:
        os.close(fillers.pop())
    try:
        result["reply"] = sock.recv(100).decode()
    except OSError as error:
        result["reply"] = repr(error)
    sock.close()


def client_socket() -> socket.socket:
    """The client's socket; then every descriptor left is taken."""
    sock = socket.socket()
    fill()
    return sock


class CountRecords(logging.Handler):
    def emit(self, record: logging.LogRecord) -> None:
        result["reports"] += 1
        result["traceback_logged"] = record.exc_info is not None


resource.setrlimit(resource.RLIMIT_NOFILE, (64, resource.getrlimit(resource.RLIMIT_NOFILE)[1]))

if KIND in ("asyncio", "uvloop"):
    import asyncio
    import concurrent.futures.thread  # noqa: F401  (to_thread imports it; no file to spare later)

    async def echo_line(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(await reader.readline())
        await writer.drain()
        writer.close()

    async def main_asyncio() -> None:
        loop = asyncio.get_running_loop()

        def count(_: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
            if "out of system resource" in context.get("message", ""):
                result["reports"] += 1
            else:
                result.setdefault("other_errors", []).append(context.get("message"))

        loop.set_exception_handler(count)
        server = await asyncio.start_server(echo_line, "127.0.0.1", 0)
        sock = client_socket()
        await asyncio.to_thread(client, server.sockets[0].getsockname()[1], sock)
        server.close()

    if KIND == "uvloop":
        import uvloop

        uvloop.run(main_asyncio())
    else:
        asyncio.run(main_asyncio())
elif KIND == "trio":
    from functools import partial

    import trio

    logging.getLogger("trio.serve_listeners").addHandler(CountRecords())
    logging.getLogger("trio.serve_listeners").propagate = False

    async def echo_some(stream: trio.SocketStream) -> None:
        await stream.send_all(await stream.receive_some(100))

    async def main_trio() -> None:
        async with trio.open_nursery() as nursery:
            listeners = await nursery.start(partial(trio.serve_tcp, echo_some, 0, host="127.0.0.1"))
            sock = client_socket()
            await trio.to_thread.run_sync(client, listeners[0].socket.getsockname()[1], sock)
            nursery.cancel_scope.cancel()

    trio.run(main_trio)
else:
    import anyio
    from anyio.abc import SocketAttribute, SocketStream

    async def echo_received(stream: SocketStream) -> None:
        async with stream:
            await stream.send(await stream.receive())

    async def main_anyio() -> None:
        async with anyio.create_task_group() as tasks:
            listener = await anyio.create_tcp_listener(local_host="127.0.0.1")

            async def serve() -> None:
                try:
                    await listener.serve(echo_received)
                except Exception as error:
                    while isinstance(error, ExceptionGroup) and len(error.exceptions) == 1:
                        error = error.exceptions[0]  # serve()'s own task group wraps it
                    result["serve_raised"] = f"{error!r} from {error.__cause__!r}"

            tasks.start_soon(serve)
            sock = client_socket()
            await anyio.to_thread.run_sync(client, listener.extra(SocketAttribute.local_port), sock)
            tasks.cancel_scope.cancel()

    anyio.run(main_anyio, backend=KIND.split("-", 1)[1])

print(json.dumps(result))

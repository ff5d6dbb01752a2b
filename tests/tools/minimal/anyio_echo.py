"""A minimal anyio echo server, to show a framework trap apart from echochat's own code.

Usage: python anyio_echo.py BACKEND [--pause]. Prints 'listening on HOST:PORT'.
With --pause it applies echochat's workaround to each accepted stream.
"""

from __future__ import annotations

import contextlib
import sys

import anyio
from anyio.abc import SocketAttribute, SocketStream

from echochat.anyio_impl.server import pause_reading_until_received


async def handle(stream: SocketStream) -> None:
    if "--pause" in sys.argv:
        pause_reading_until_received(stream)
    async with stream:
        # Work before the first receive (a greeting, a lookup): the client's
        # bytes arrive meanwhile, so that receive() does not have to wait.
        await anyio.sleep(0.1)
        try:
            async for chunk in stream:
                await stream.send(chunk)
        except anyio.BrokenResourceError:
            pass


async def main() -> None:
    listener = await anyio.create_tcp_listener(local_host="127.0.0.1", local_port=0)
    address = listener.extra(SocketAttribute.local_address)
    assert isinstance(address, tuple)  # An IP socket, not a UNIX one.
    print(f"listening on {address[0]}:{address[1]}", flush=True)
    await listener.serve(handle)


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        anyio.run(main, backend=sys.argv[1])

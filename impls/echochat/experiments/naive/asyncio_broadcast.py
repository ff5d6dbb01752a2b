"""A naive asyncio chat server: a broadcast does ``write(); await drain()`` for every member.

A teaching variant for the slow-member experiment, not part of echochat.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal

from echochat.experiments.naive.room import Room


async def handle(
    room: Room[asyncio.StreamWriter], reader: asyncio.StreamReader, writer: asyncio.StreamWriter
) -> None:
    peer = writer.get_extra_info("peername")
    if peer is None:
        return  # Gone before we got to it.
    room.connect(writer, peer[0])
    try:
        # readline() is enough here: no limits, only the flaw under study.
        while line := await reader.readline():
            for member, out in room.receive(writer, line):
                # The naive broadcast. drain() waits once the member's transport
                # buffer has passed 64 KiB, so a member that does not read stops
                # this loop, and with it this sender's reads and every delivery.
                await send(member, out)
    except ConnectionError:
        pass  # Reset by the peer: forget it like a clean close.
    finally:
        room.disconnect(writer)
        writer.close()


async def send(member: asyncio.StreamWriter, data: bytes) -> None:
    if member.is_closing():
        return  # Gone: its own handler forgets it.
    member.write(data)
    with contextlib.suppress(ConnectionError):
        await member.drain()


async def main() -> None:
    room: Room[asyncio.StreamWriter] = Room()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    # Handlers run in our TaskGroup, not as start_server's own tasks, so that
    # leaving it waits for them instead of asyncio.run cancelling them (which
    # Python 3.11 and 3.12 log as "Exception in callback").
    async with asyncio.TaskGroup() as handlers:
        server = await asyncio.start_server(
            lambda reader, writer: handlers.create_task(handle(room, reader, writer)),
            "127.0.0.1",
            0,
        )
        host, port = server.sockets[0].getsockname()[:2]
        print(f"listening on {host}:{port}", flush=True)
        await stop.wait()
        server.close()
        # Handlers stuck in drain() would never return by themselves; aborting
        # every transport makes drain() raise and readline() end.
        for writer in list(room.prefixes):
            writer.transport.abort()


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(main())

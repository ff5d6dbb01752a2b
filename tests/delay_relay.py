"""A TCP relay that holds every byte for a fixed time in each direction: latency on a link.

The network tests (tests/netns.py) add latency with this where the kernel has
no netem qdisc (its ``delay``), as on the machine these tests were written on:
a host runs ``delay_relay.py LISTEN_ADDRESS LISTEN_PORT TARGET_ADDRESS
TARGET_PORT SECONDS``, which prints ``listening on ADDRESS:PORT`` once it
accepts, and clients connect to it instead of the target.

Each chunk read is forwarded ``SECONDS`` after it arrived, in order, so the
delay adds to the round trip without limiting the throughput; at most
``QUEUED_CHUNKS`` chunks wait per direction, beyond which it stops reading and
TCP's flow control reaches the sender, as on a real link with that much in
flight.
"""

from __future__ import annotations

import asyncio
import sys
from functools import partial

READ_SIZE = 65536
QUEUED_CHUNKS = 16


async def carry(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, delay: float) -> None:
    """Forward what ``reader`` gets to ``writer``, each chunk ``delay`` seconds after it came."""
    loop = asyncio.get_running_loop()
    # An empty chunk is the end of the stream, forwarded as a half close.
    waiting: asyncio.Queue[tuple[float, bytes]] = asyncio.Queue(QUEUED_CHUNKS)

    async def forward() -> None:
        while True:
            due, data = await waiting.get()
            await asyncio.sleep(due - loop.time())
            if not data:
                writer.write_eof()
                return
            writer.write(data)
            await writer.drain()

    async with asyncio.TaskGroup() as group:
        group.create_task(forward())
        while True:
            data = await reader.read(READ_SIZE)
            await waiting.put((loop.time() + delay, data))
            if not data:
                return


async def relay(
    target: tuple[str, int],
    delay: float,
    client_reader: asyncio.StreamReader,
    client_writer: asyncio.StreamWriter,
) -> None:
    try:
        target_reader, target_writer = await asyncio.open_connection(*target)
    except OSError:
        client_writer.close()
        return
    try:
        async with asyncio.TaskGroup() as group:
            group.create_task(carry(client_reader, target_writer, delay))
            group.create_task(carry(target_reader, client_writer, delay))
    except* OSError:
        pass  # A reset on either side ends the pair; the other side is closed below.
    finally:
        client_writer.close()
        target_writer.close()


async def main(listen: tuple[str, int], target: tuple[str, int], delay: float) -> None:
    server = await asyncio.start_server(partial(relay, target, delay), *listen)
    address, port = server.sockets[0].getsockname()[:2]
    print(f"listening on {address}:{port}", flush=True)
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    listen_address, listen_port, target_address, target_port, seconds = sys.argv[1:]
    asyncio.run(
        main(
            (listen_address, int(listen_port)),
            (target_address, int(target_port)),
            float(seconds),
        )
    )

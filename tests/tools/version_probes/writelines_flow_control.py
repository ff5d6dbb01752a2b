"""Does ``writelines()`` pause the protocol past the high-water mark, as ``write()`` does?

On 3.12.0-3.12.8 and 3.13.0-3.13.1 ``_SelectorSocketTransport.writelines``
(Lib/asyncio/selector_events.py) buffered everything without calling
``_maybe_pause_protocol()``, so ``drain()`` returned at once however much was
buffered (gh-127655, PSF-2024-14, fixed by PR #127656 in 3.12.9 and 3.13.2).
3.11 has no writelines of its own: ``WriteTransport.writelines`` joins the
chunks and calls ``write()``. echochat joins queued lines itself and calls
``write()`` (``take_pending`` in impls/echochat/asyncio_impl/chat.py).

Prints one JSON object; its "outcome" is a cell of docs/design/version_matrix.json.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable

# Far more than loopback's kernel buffers take, so megabytes stay in the transport.
CHUNK = b"x" * 65536
CHUNKS = 256


async def drain_waits(port: int, send: Callable[[asyncio.StreamWriter], None]) -> dict[str, object]:
    """Send with ``send`` to a peer that never reads; does ``drain()`` then wait?"""
    _, writer = await asyncio.open_connection("127.0.0.1", port)
    send(writer)
    buffered = writer.transport.get_write_buffer_size()
    drain = asyncio.ensure_future(writer.drain())
    # drain() returns without yielding unless writing is paused, so one turn
    # of the loop tells the two apart.
    await asyncio.sleep(0)
    waited = not drain.done()
    writer.transport.abort()
    await asyncio.gather(drain, return_exceptions=True)
    return {"drain_waited": waited, "buffered": buffered}


async def main() -> dict[str, object]:
    peers: list[asyncio.StreamWriter] = []

    async def never_read(_: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        peers.append(writer)

    server = await asyncio.start_server(never_read, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    write = await drain_waits(port, lambda writer: writer.write(b"".join([CHUNK] * CHUNKS)))
    writelines = await drain_waits(port, lambda writer: writer.writelines([CHUNK] * CHUNKS))
    for peer in peers:
        peer.transport.abort()
    server.close()
    await server.wait_closed()
    if not write["drain_waited"]:
        outcome = "write() did not pause either"  # The control failed: the probe proves nothing.
    elif writelines["drain_waited"]:
        outcome = "pauses"
    else:
        outcome = "never pauses"
    return {"outcome": outcome, "write": write, "writelines": writelines}


if __name__ == "__main__":
    print(json.dumps(asyncio.run(main())))

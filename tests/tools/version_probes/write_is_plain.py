"""``StreamWriter.write()``: returns None (awaiting it is a TypeError), no ``awrite()``,
64/16 KiB watermarks.

An awaitable ``awrite()`` was added during 3.8's development (bpo-34666,
PR #9274), replaced by an awaitable ``write()`` (bpo-36802) and reverted
with the rest of the new streams API before 3.8.0 (bpo-38242). The
watermarks are ``_FlowControlMixin._set_write_buffer_limits`` in
Lib/asyncio/transports.py: high 64 KiB, low high // 4.

Prints one JSON object; its "outcome" is a cell of docs/design/version_matrix.json.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any, cast


async def main() -> dict[str, object]:
    served = asyncio.Event()

    async def close_at_once(_: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.close()
        served.set()

    server = await asyncio.start_server(close_at_once, "127.0.0.1", 0)
    _, writer = await asyncio.open_connection("127.0.0.1", server.sockets[0].getsockname()[1])
    returned = writer.write(b"x")  # type: ignore[func-returns-value]
    try:
        await cast(Any, returned)  # What `await writer.write(data)` does.
        awaitable = True
    except TypeError:
        awaitable = False
    low, high = writer.transport.get_write_buffer_limits()
    awaitables = sorted(name for name in ("awrite", "aclose") if hasattr(writer, name))
    writer.close()
    await writer.wait_closed()
    await served.wait()
    server.close()
    await server.wait_closed()
    plain = returned is None and not awaitable and not awaitables
    watermarks = f"{high // 1024}/{low // 1024} KiB"
    return {
        "outcome": f"plain, {watermarks}" if plain else f"awaitable, {watermarks}",
        "returned": repr(returned),
        "await_write": "works" if awaitable else "TypeError",
        "awaitable_methods": awaitables,
    }


if __name__ == "__main__":
    print(json.dumps(asyncio.run(main())))

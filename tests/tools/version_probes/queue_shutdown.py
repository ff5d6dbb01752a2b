"""``asyncio.Queue.shutdown()`` (3.13+): end a queue without a sentinel.

echochat's asyncio writer task reads its outbound queue until a ``None``
sentinel (``ChatConnection.close`` in impls/echochat/asyncio_impl/chat.py)
because 3.11 and 3.12 have no ``shutdown()`` (Lib/asyncio/queues.py;
gh-96471). After ``shutdown()`` a ``get()`` returns what is left and then
raises ``QueueShutDown``.

Prints one JSON object; its "outcome" is a cell of docs/design/version_matrix.json.
"""

from __future__ import annotations

import asyncio
import json


async def main() -> dict[str, object]:
    queue: asyncio.Queue[bytes] = asyncio.Queue()
    shutdown = getattr(queue, "shutdown", None)  # Typed only from 3.13 on.
    if shutdown is None:
        return {"outcome": "absent"}
    queue.put_nowait(b"last line")
    shutdown()
    got = [await queue.get()]
    try:
        got.append(await queue.get())
    except Exception as error:  # QueueShutDown exists only where shutdown() does.
        ended = type(error).__name__
    else:
        ended = "nothing"
    if got == [b"last line"] and ended == "QueueShutDown":
        outcome = "drains, then raises QueueShutDown"
    else:
        outcome = f"got {got!r}, then {ended}"
    return {"outcome": outcome}


if __name__ == "__main__":
    print(json.dumps(asyncio.run(main())))

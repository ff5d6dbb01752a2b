"""``asyncio.timeout_at()``, ``Timeout.reschedule()`` and ``expired()`` (3.11+).

The asyncio adapter waits for input only until the core's next deadline with
``asyncio.timeout_at(hub.deadline(conn))`` (``read_loop`` in
impls/echochat/asyncio_impl/chat.py). The context manager turns the
cancellation it causes into ``TimeoutError``, the builtin one since 3.11
(``asyncio.TimeoutError`` is an alias), which is a subclass of ``OSError``:
so the adapter asks ``expired()`` to tell its own deadline from a kernel
ETIMEDOUT. Lib/asyncio/timeouts.py; cpython#86579 (bpo-42413).

Prints one JSON object; its "outcome" is a cell of docs/design/version_matrix.json.
"""

from __future__ import annotations

import asyncio
import json


async def main() -> dict[str, object]:
    if not hasattr(asyncio, "timeout_at"):
        return {"outcome": "absent"}
    loop = asyncio.get_running_loop()
    started = loop.time()
    raised = "nothing"
    expired = False
    try:
        async with asyncio.timeout_at(None) as scope:
            # No deadline yet; then one that has already passed.
            scope.reschedule(loop.time())
            await asyncio.sleep(30)
    except TimeoutError as error:
        raised = type(error).__qualname__
        expired = scope.expired()
    elapsed = loop.time() - started
    builtin = asyncio.TimeoutError is TimeoutError
    oserror = issubclass(asyncio.TimeoutError, OSError)
    if raised == "TimeoutError" and expired and builtin and oserror and elapsed < 10:
        outcome = "reschedulable; raises the builtin TimeoutError, an OSError"
    else:
        outcome = f"raised {raised}, expired={expired}, builtin={builtin}, OSError={oserror}"
    return {"outcome": outcome, "elapsed": round(elapsed, 3)}


if __name__ == "__main__":
    print(json.dumps(asyncio.run(main())))

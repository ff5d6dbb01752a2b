"""``asyncio.timeout()`` and ``Timeout.reschedule()`` (3.11+).

A deadline that can move is what an idle timer needs: each line received
pushes it back. ``asyncio.timeout`` converts the cancellation it causes into
``TimeoutError`` (the builtin: ``asyncio.TimeoutError`` is an alias since
3.11). Lib/asyncio/timeouts.py; the asyncio adapter uses it for its close
grace (``close_stream`` in impls/echochat/asyncio_impl/server.py).

Prints one JSON object; its "outcome" is a cell of docs/design/version_matrix.json.
"""

from __future__ import annotations

import asyncio
import json


async def main() -> dict[str, object]:
    if not hasattr(asyncio, "timeout"):
        return {"outcome": "absent"}
    loop = asyncio.get_running_loop()
    started = loop.time()
    raised = "nothing"
    expired = False
    try:
        async with asyncio.timeout(None) as scope:
            # No deadline yet; then one that has already passed.
            scope.reschedule(loop.time())
            await asyncio.sleep(30)
    except TimeoutError as error:
        raised = type(error).__qualname__
        expired = scope.expired()
    elapsed = loop.time() - started
    builtin = asyncio.TimeoutError is TimeoutError
    if raised == "TimeoutError" and expired and builtin and elapsed < 10:
        outcome = "reschedulable; raises builtin TimeoutError"
    else:
        outcome = f"raised {raised}, expired={expired}, builtin={builtin}"
    return {"outcome": outcome, "elapsed": round(elapsed, 3)}


if __name__ == "__main__":
    print(json.dumps(asyncio.run(main())))

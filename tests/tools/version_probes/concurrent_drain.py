"""Two tasks await ``drain()`` on one paused StreamWriter: do both return?

Before the fix for gh-74116 (bpo-29930, PR #94705) the second waiter hit an
``assert`` in ``FlowControlMixin._drain_helper`` (Lib/asyncio/streams.py).
echochat's asyncio adapter has a single writer task per connection, so it
never depends on this, but any code that writes from several tasks does.

Prints one JSON object; its "outcome" is a cell of docs/design/version_matrix.json.
Standard library only, like every probe: tests/tools/test_version_matrix.py runs it
under each installed Python.
"""

from __future__ import annotations

import asyncio
import json

# Far more than loopback's kernel buffers take, so the transport is left
# holding megabytes and pauses writing at once.
PAYLOAD = 16 * 1024 * 1024


async def main() -> dict[str, object]:
    may_read = asyncio.Event()
    finished = asyncio.Event()

    async def read_when_allowed(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await may_read.wait()
        while await reader.read(1 << 20):
            pass
        writer.close()
        finished.set()

    server = await asyncio.start_server(read_when_allowed, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    _, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(b"x" * PAYLOAD)
    buffered = writer.transport.get_write_buffer_size()
    drains = [asyncio.ensure_future(writer.drain()) for _ in range(2)]
    # One turn of the loop runs each drain() up to its wait (or its assert).
    await asyncio.sleep(0)
    waiting = [not drain.done() for drain in drains]
    may_read.set()
    results = await asyncio.wait_for(asyncio.gather(*drains, return_exceptions=True), 30)
    errors = [type(result).__name__ for result in results if isinstance(result, BaseException)]
    writer.close()
    await writer.wait_closed()
    # Before 3.12.1 wait_closed() does not wait for the handler; cancelling it
    # at exit would print "Exception in callback" (see handler_cancelled.py).
    await finished.wait()
    server.close()
    await server.wait_closed()
    if "AssertionError" in errors:
        outcome = "AssertionError"
    elif errors:
        outcome = "error: " + ", ".join(errors)
    elif all(waiting):
        outcome = "both wait, then return"
    else:
        outcome = "did not wait"  # The transport never paused: the probe proves nothing.
    return {"outcome": outcome, "buffered": buffered, "waiting": waiting, "errors": errors}


if __name__ == "__main__":
    print(json.dumps(asyncio.run(main())))

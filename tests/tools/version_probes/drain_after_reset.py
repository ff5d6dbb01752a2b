"""What ``write()`` and ``drain()`` do after the peer has reset the connection.

``StreamWriter.drain()`` (Lib/asyncio/streams.py) first re-raises the
exception stored in its ``StreamReader``; only then, if the transport is
closing, does it yield once so that ``connection_lost()`` can run, and
``FlowControlMixin._drain_helper`` raises ``ConnectionResetError('Connection
lost')``. So what ``drain()`` raises depends on who met the reset first:

- the loop (``reader``): the transport's read callback got ECONNRESET and
  ``connection_lost(exc)`` stored it in the reader, so ``drain()`` raises that
  ``ConnectionResetError(104, 'Connection reset by peer')``. This is the usual
  case in a server, whose reader task waits on the socket.
- a ``write()`` (``write``): the send inside ``_SelectorSocketTransport.write``
  met the reset and scheduled ``connection_lost()``, which has not run when
  ``drain()`` looks at the reader: ``drain()`` yields, then raises
  ``ConnectionResetError('Connection lost')``.

Either way ``write()`` raises nothing and drops the data; the transport counts
lost writes from the reset on (``_conn_lost``) and logs "socket.send() raised
exception." for each once the count has reached
``constants.LOG_THRESHOLD_FOR_CONNLOST_WRITES`` (5). The reset itself counts
once, so of 20 writes 16 are logged when the loop met it and 15 when the first
write did.

Prints one JSON object; its "outcome" is a cell of docs/design/version_matrix.json.
``main()`` also runs under uvloop (test_framework_traps.py), where ``write()``
raises ``RuntimeError`` once the connection is lost.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import select
import socket
import struct

WRITES = 20
LINE = b"x" * 1023 + b"\n"


class Counter(logging.Handler):
    """Counts what asyncio logs, instead of printing it."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


def describe(error: BaseException | None) -> str:
    return "nothing" if error is None else f"{type(error).__name__}{error.args!r}"


async def after_reset(
    port: int,
    accepted: asyncio.Queue[tuple[asyncio.StreamReader, asyncio.StreamWriter]],
    met_by: str,
) -> dict[str, object]:
    peer = socket.create_connection(("127.0.0.1", port))
    reader, writer = await accepted.get()
    # SO_LINGER {on, 0}: close() sends RST instead of FIN.
    peer.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    peer.close()
    sock = writer.get_extra_info("socket")
    if met_by == "reader":
        # The loop's read callback meets the reset and stores it in the reader.
        with contextlib.suppress(ConnectionResetError):
            await asyncio.wait_for(reader.read(), 10)
        assert isinstance(reader.exception(), ConnectionResetError), "no reset reached the reader"
    else:
        # Wait outside the loop (poll() only looks), so the first write() meets it.
        poller = select.poll()
        poller.register(sock.fileno(), select.POLLERR | select.POLLHUP)
        assert poller.poll(10_000), "no RST arrived"
    counter = Counter()
    logging.getLogger("asyncio").addHandler(counter)
    write_error: BaseException | None = None
    accepted_writes = 0
    try:
        for _ in range(WRITES):
            try:
                writer.write(LINE)
            except Exception as error:  # uvloop: RuntimeError once the handle is closed.
                write_error = error
                break
            accepted_writes += 1
        try:
            await writer.drain()
            drain_error: BaseException | None = None
        except Exception as error:  # What drain() raises is the measurement.
            drain_error = error
    finally:
        logging.getLogger("asyncio").removeHandler(counter)
    writer.close()
    return {
        "drain": describe(drain_error),
        "write": describe(write_error),
        "writes_accepted": accepted_writes,
        "logged": len(counter.messages),
        "log_messages": sorted(set(counter.messages)),
    }


def summary(result: dict[str, object]) -> str:
    drain = {
        "ConnectionResetError(104, 'Connection reset by peer')": "errno 104",
        "ConnectionResetError('Connection lost',)": "'Connection lost'",
    }.get(str(result["drain"]), str(result["drain"]))
    if result["write"] != "nothing":
        failed = str(result["write"]).split("(")[0]
        return f"write() raises {failed} after {result['writes_accepted']}, drain() {drain}"
    return f"{drain}, {result['logged']}/{WRITES} logged"


async def main() -> dict[str, object]:
    accepted: asyncio.Queue[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = asyncio.Queue()

    def on_connect(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        accepted.put_nowait((reader, writer))

    server = await asyncio.start_server(on_connect, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    results = {met_by: await after_reset(port, accepted, met_by) for met_by in ("reader", "write")}
    server.close()
    await server.wait_closed()
    outcome = (
        f"loop met it: {summary(results['reader'])}; write() met it: {summary(results['write'])}"
    )
    return {"outcome": outcome, **results}


if __name__ == "__main__":
    print(json.dumps(asyncio.run(main())))

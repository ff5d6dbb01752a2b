"""Minimal echo server on asyncio Transports and Protocols: data_received() -> write();
over TLS with create_server(ssl=).
"""

from __future__ import annotations

import asyncio
import signal
import ssl
from typing import cast

from echochat.bench.minimal import parse_args, server_context
from echochat.loops import asyncio_loop_factory


class Echo(asyncio.Protocol):
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # A cast: uvloop's transports do not derive from asyncio.Transport.
        self.transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        self.transport.write(data)

    def pause_writing(self) -> None:
        # The write buffer passed its high-water mark: the client is not
        # reading, so stop reading from it too, or the buffer grows unbounded.
        self.transport.pause_reading()

    def resume_writing(self) -> None:
        self.transport.resume_reading()


async def main(port: int, tls: ssl.SSLContext | None) -> None:
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    # Before the port is announced, so a SIGTERM never finds the default action (exit -15).
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    server = await loop.create_server(Echo, "127.0.0.1", port, ssl=tls)
    print(f"listening on 127.0.0.1:{server.sockets[0].getsockname()[1]}", flush=True)
    await stop.wait()


if __name__ == "__main__":
    args = parse_args(__doc__, loop=True)
    with asyncio.Runner(loop_factory=asyncio_loop_factory(args.loop)) as runner:
        runner.run(main(args.port, server_context(args)))

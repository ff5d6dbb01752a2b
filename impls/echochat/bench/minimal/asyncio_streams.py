"""Minimal echo server on asyncio Streams: start_server, read(65536), write() + drain();
over TLS with start_server(ssl=).
"""

from __future__ import annotations

import asyncio
import signal
import ssl

from echochat.bench.minimal import parse_args, server_context
from echochat.loops import asyncio_loop_factory


async def echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    except (ConnectionError, asyncio.CancelledError):
        # Reset by the client, or cancelled at exit: returning keeps 3.11 and
        # 3.12 from logging the cancelled task as "Exception in callback".
        pass
    writer.close()


async def main(port: int, tls: ssl.SSLContext | None) -> None:
    stop = asyncio.Event()
    # Before the port is announced, so a SIGTERM never finds the default action (exit -15).
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    server = await asyncio.start_server(echo, "127.0.0.1", port, ssl=tls)
    print(f"listening on 127.0.0.1:{server.sockets[0].getsockname()[1]}", flush=True)
    await stop.wait()


if __name__ == "__main__":
    args = parse_args(__doc__, loop=True)
    with asyncio.Runner(loop_factory=asyncio_loop_factory(args.loop)) as runner:
        runner.run(main(args.port, server_context(args)))

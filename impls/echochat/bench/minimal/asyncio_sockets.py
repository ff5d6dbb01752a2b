"""Minimal echo server on asyncio's socket API: sock_accept, sock_recv_into() + sock_sendall().

No TLS: the loop's sock_*() methods refuse ssl sockets.
"""

from __future__ import annotations

import asyncio
import signal
import socket

from echochat.bench.minimal import parse_args
from echochat.loops import asyncio_loop_factory


async def echo(sock: socket.socket) -> None:
    loop = asyncio.get_running_loop()
    buffer = bytearray(65536)
    view = memoryview(buffer)
    with sock:
        # A transport sets TCP_NODELAY itself; a bare socket does not.
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        try:
            while count := await loop.sock_recv_into(sock, buffer):
                await loop.sock_sendall(sock, view[:count])
        except ConnectionError:
            pass  # Reset by the client.


async def serve(listener: socket.socket) -> None:
    loop = asyncio.get_running_loop()
    handlers = set()
    while True:
        sock, _ = await loop.sock_accept(listener)  # Non-blocking already.
        handler = asyncio.create_task(echo(sock))
        handlers.add(handler)  # The loop keeps only a weak reference to a task.
        handler.add_done_callback(handlers.discard)


async def main(port: int) -> None:
    stop = asyncio.Event()
    # Before the port is announced, so a SIGTERM never finds the default action (exit -15).
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    with socket.create_server(("127.0.0.1", port)) as listener:
        listener.setblocking(False)
        print(f"listening on 127.0.0.1:{listener.getsockname()[1]}", flush=True)
        accepting = asyncio.create_task(serve(listener))
        await stop.wait()
        accepting.cancel()


if __name__ == "__main__":
    args = parse_args(__doc__, loop=True, tls=False)
    with asyncio.Runner(loop_factory=asyncio_loop_factory(args.loop)) as runner:
        runner.run(main(args.port))

"""Minimal echo server on anyio: create_tcp_listener + serve, receive() + send(); over TLS
with TLSListener.
"""

from __future__ import annotations

import signal
import ssl

import anyio
from anyio.abc import ByteStream, Listener, SocketAttribute
from anyio.streams.tls import TLSListener

from echochat.bench.minimal import parse_args, server_context


async def echo(stream: ByteStream) -> None:
    async with stream:
        try:
            async for data in stream:
                await stream.send(data)
        except anyio.BrokenResourceError:
            pass  # Reset by the client.


async def main(port: int, tls: ssl.SSLContext | None) -> None:
    # Opened before the port is announced: on trio, SIGTERM is fatal unless it is received.
    with anyio.open_signal_receiver(signal.SIGTERM) as signals:
        listener: Listener[ByteStream] = await anyio.create_tcp_listener(
            local_host="127.0.0.1", local_port=port
        )
        port = listener.extra(SocketAttribute.local_port)
        if tls is not None:
            # standard_compatible=False: a client that closes without close_notify
            # ends the stream (EndOfStream), and closing does not wait for one.
            listener = TLSListener(listener, tls, standard_compatible=False)
        async with anyio.create_task_group() as group:
            group.start_soon(listener.serve, echo)
            print(f"listening on 127.0.0.1:{port}", flush=True)
            async for _ in signals:
                break
            group.cancel_scope.cancel()


if __name__ == "__main__":
    args = parse_args(__doc__, loop=True, backend=True)
    uvloop = {"use_uvloop": True} if args.loop == "uvloop" else None
    anyio.run(main, args.port, server_context(args), backend=args.backend, backend_options=uvloop)

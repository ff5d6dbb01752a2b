"""Minimal echo server on anyio: create_tcp_listener + serve, receive() + send()."""

from __future__ import annotations

import signal

import anyio
from anyio.abc import SocketAttribute, SocketStream

from echochat.bench.minimal import parse_args


async def echo(stream: SocketStream) -> None:
    async with stream:
        try:
            async for data in stream:
                await stream.send(data)
        except anyio.BrokenResourceError:
            pass  # Reset by the client.


async def main(port: int) -> None:
    # Opened before the port is announced: on trio, SIGTERM is fatal unless it is received.
    with anyio.open_signal_receiver(signal.SIGTERM) as signals:
        listener = await anyio.create_tcp_listener(local_host="127.0.0.1", local_port=port)
        async with anyio.create_task_group() as group:
            group.start_soon(listener.serve, echo)
            print(
                f"listening on 127.0.0.1:{listener.extra(SocketAttribute.local_port)}", flush=True
            )
            async for _ in signals:
                break
            group.cancel_scope.cancel()


if __name__ == "__main__":
    args = parse_args(__doc__, loop=True, backend=True)
    uvloop = {"use_uvloop": True} if args.loop == "uvloop" else None
    anyio.run(main, args.port, backend=args.backend, backend_options=uvloop)

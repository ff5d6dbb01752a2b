"""Minimal echo server on trio: serve_tcp, receive_some() + send_all()."""

from __future__ import annotations

import signal
from functools import partial

import trio

from echochat.bench.minimal import parse_args


async def echo(stream: trio.SocketStream) -> None:
    try:
        while data := await stream.receive_some(65536):
            await stream.send_all(data)
    except trio.BrokenResourceError:
        pass  # Reset by the client.


async def main(port: int) -> None:
    # Opened before the port is announced: trio leaves SIGTERM fatal unless it is received.
    with trio.open_signal_receiver(signal.SIGTERM) as signals:
        async with trio.open_nursery() as nursery:
            listeners = await nursery.start(partial(trio.serve_tcp, echo, port, host="127.0.0.1"))
            print(f"listening on 127.0.0.1:{listeners[0].socket.getsockname()[1]}", flush=True)
            async for _ in signals:
                break
            nursery.cancel_scope.cancel()


if __name__ == "__main__":
    trio.run(main, parse_args(__doc__).port)

"""Minimal echo server on trio: serve_tcp, receive_some() + send_all(); over TLS with
serve_ssl_over_tcp.
"""

from __future__ import annotations

import signal
import ssl
from functools import partial

import trio

from echochat.bench.minimal import parse_args, server_context


async def echo(stream: trio.abc.Stream) -> None:
    try:
        while data := await stream.receive_some(65536):
            await stream.send_all(data)
    except trio.BrokenResourceError:
        pass  # Reset by the client, or (over TLS) closed without close_notify.


async def main(port: int, tls: ssl.SSLContext | None) -> None:
    # Opened before the port is announced: trio leaves SIGTERM fatal unless it is received.
    with trio.open_signal_receiver(signal.SIGTERM) as signals:
        async with trio.open_nursery() as nursery:
            if tls is None:
                listeners = await nursery.start(
                    partial(trio.serve_tcp, echo, port, host="127.0.0.1")
                )
                sock = listeners[0].socket
            else:
                # Each SSLStream does its handshake in its first receive_some().
                serve = partial(trio.serve_ssl_over_tcp, echo, port, tls, host="127.0.0.1")
                tls_listeners = await nursery.start(serve)
                sock = tls_listeners[0].transport_listener.socket
            print(f"listening on 127.0.0.1:{sock.getsockname()[1]}", flush=True)
            async for _ in signals:
                break
            nursery.cancel_scope.cancel()


if __name__ == "__main__":
    args = parse_args(__doc__)
    trio.run(main, args.port, server_context(args))

"""Listening, signals and shutdown with trio."""

from __future__ import annotations

import logging
import signal
from functools import partial

import trio

from echochat.options import ServerOptions, announce_listening
from echochat.trio_impl.chat import ChatService
from echochat.trio_impl.echo import EchoService

log = logging.getLogger(__name__)


def run(options: ServerOptions) -> None:
    trio.run(serve, options)


async def serve(options: ServerOptions) -> None:
    service = ChatService(options) if options.service == "chat" else EchoService(options)
    # trio leaves SIGTERM fatal by default (trio#134); receive both signals
    # before announcing, so none is missed, and until the very end, so a
    # second one during shutdown is ignored rather than fatal.
    with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        # Every connection's task lives in this nursery, so leaving it
        # waits for all of them: no connection outlives the server.
        async with trio.open_nursery() as handlers:
            async with trio.open_nursery() as accepting:
                listeners = await accepting.start(
                    partial(
                        trio.serve_tcp,
                        partial(handle_connection, service),
                        options.port,
                        host=options.host,
                        handler_nursery=handlers,
                    )
                )
                announce_listening(listeners[0].socket.getsockname())
                async for signum in signals:
                    log.info("%s: shutting down", signal.Signals(signum).name)
                    break
                accepting.cancel_scope.cancel()  # Stop accepting; connections go on.
            service.shutdown()


async def handle_connection(service: ChatService | EchoService, stream: trio.SocketStream) -> None:
    """One connection's task; serve_tcp closes the stream when it returns."""
    try:
        await service.handle_client(stream)
    except Exception:
        # Without this, one connection's bug would crash the whole server.
        log.exception("connection failed")

"""Listening, signals and shutdown on asyncio Transports and Protocols (a teaching variant)."""

from __future__ import annotations

import asyncio
import logging
import signal
from collections.abc import Collection

from echochat.asyncio_protocol_impl.chat import ChatConnection, ChatService
from echochat.asyncio_protocol_impl.echo import EchoConnection, EchoService
from echochat.loops import asyncio_loop_factory
from echochat.options import ServerOptions, announce_listening

log = logging.getLogger(__name__)


def run(options: ServerOptions) -> None:
    with asyncio.Runner(loop_factory=asyncio_loop_factory(options.loop)) as runner:
        runner.run(serve(options))


async def serve(options: ServerOptions) -> None:
    service = ChatService(options) if options.service == "chat" else EchoService(options)
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop_on_signal, signum, stop)
    # No handler tasks: the loop calls each connection's Protocol methods
    # itself. If one raises, the transport logs it and closes that
    # connection (connection_lost() still runs); the server goes on.
    server = await loop.create_server(service.protocol_factory, options.host, options.port)
    announce_listening(server.sockets[0].getsockname())
    await stop.wait()
    server.close()  # Stop accepting; connections stay open (3.13 adds close_clients()).
    service.shutdown()
    await wait_closed(service.connections)
    await server.wait_closed()


def stop_on_signal(signum: int, stop: asyncio.Event) -> None:
    log.info("%s: shutting down", signal.Signals(signum).name)
    stop.set()


async def wait_closed(connections: Collection[ChatConnection | EchoConnection]) -> None:
    """Until connection_lost() has run for every connection: nobody waits for them otherwise.

    It ends: shutdown() closes each one, and every close is cut short by an
    abort() after CLOSE_GRACE. A connection accepted meanwhile is refused.
    """
    while connections:
        await asyncio.wait([connection.closed for connection in connections])

"""Listening, signals and shutdown with asyncio."""

from __future__ import annotations

import asyncio
import logging
import signal

from echochat.asyncio_impl.chat import ChatService
from echochat.asyncio_impl.echo import EchoService
from echochat.core import CLOSE_GRACE
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
    # start_server would run each handler as a loose task that nothing waits
    # for (it does keep a reference to it, cpython PR #96323); spawning them
    # into a TaskGroup gives what trio's handler nursery gives: leaving it
    # waits for every handler.
    async with asyncio.TaskGroup() as handlers:

        def on_connect(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            handlers.create_task(handle_connection(service, reader, writer))

        server = await asyncio.start_server(on_connect, options.host, options.port)
        announce_listening(server.sockets[0].getsockname())
        await stop.wait()
        server.close()  # Stop accepting; connections stay open (3.13 adds close_clients()).
        service.shutdown()
    await server.wait_closed()


def stop_on_signal(signum: int, stop: asyncio.Event) -> None:
    log.info("%s: shutting down", signal.Signals(signum).name)
    stop.set()


async def handle_connection(
    service: ChatService | EchoService, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
) -> None:
    """One connection's task; unlike trio's serve_tcp, nothing closes the stream for us."""
    try:
        await service.handle_client(reader, writer)
    except Exception:
        # Without this, one connection's bug would crash the whole server.
        log.exception("connection failed")
    finally:
        await close_stream(writer)


async def close_stream(writer: asyncio.StreamWriter) -> None:
    writer.close()
    try:
        async with asyncio.timeout(CLOSE_GRACE):
            await writer.wait_closed()
    except (TimeoutError, OSError):
        # close() waits for the peer to take what is still buffered; a peer
        # that does not read is cut off instead of holding the socket open.
        writer.transport.abort()

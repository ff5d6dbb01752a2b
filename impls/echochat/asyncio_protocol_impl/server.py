"""Listening, signals and shutdown on asyncio Transports and Protocols (a teaching variant)."""

from __future__ import annotations

import asyncio
import logging
import signal
import socket
from collections.abc import Callable, Collection

from echochat.asyncio_protocol_impl.chat import ChatConnection, ChatService
from echochat.asyncio_protocol_impl.echo import EchoConnection, EchoService
from echochat.core import AcceptPacer
from echochat.loops import asyncio_loop_factory, listening_socket
from echochat.options import ServerOptions, announce_listening, queue_empty

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
    with listening_socket(options.host, options.port, options.backlog) as listener:
        announce_listening(listener.getsockname())
        accepting = asyncio.create_task(accept_loop(listener, service.protocol_factory))
        await stop.wait()
        accepting.cancel()  # Stop accepting; connections stay open.
        await asyncio.wait([accepting])
    service.shutdown()
    await wait_closed(service.connections)


async def accept_loop(
    listener: socket.socket, protocol_factory: Callable[[], asyncio.Protocol]
) -> None:
    """Accept connections until cancelled, pausing while the process is out of descriptors.

    asyncio_impl/server.py's accept_loop, which says why it is not the loop's own,
    except that each socket is put under a Protocol here, with the public
    connect_accepted_socket(), instead of getting a task.
    """
    loop = asyncio.get_running_loop()
    pacer = AcceptPacer()
    while True:
        try:
            sock, _ = await loop.sock_accept(listener)
        except OSError as error:
            if (retry := pacer.failed(error.errno, loop.time())) is None:
                raise
            if retry.warning is not None:
                log.warning(retry.warning)
            await asyncio.sleep(retry.pause)
            continue
        if pacer.pausing and (warning := pacer.accepted(loop.time(), queue_empty(listener))):
            log.warning(warning)
        try:
            await loop.connect_accepted_socket(protocol_factory, sock)
        except OSError:
            sock.close()  # Reset before it could be wrapped: nothing to serve.


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

"""Listening, signals and shutdown on asyncio's socket API (a teaching variant)."""

from __future__ import annotations

import asyncio
import logging
import signal
import socket
from collections.abc import Callable

from echochat.asyncio_sockets_impl.chat import ChatService
from echochat.asyncio_sockets_impl.echo import EchoService
from echochat.asyncio_sockets_impl.link import link_loop
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
    # Leaving the TaskGroup waits for every connection's task, as trio's
    # handler nursery does.
    async with asyncio.TaskGroup() as handlers:
        linking = None
        if isinstance(service, ChatService) and options.redis is not None:
            # The link to the network lives beside the connections until shutdown.
            linking = handlers.create_task(link_loop(service.hub))

        def on_accept(sock: socket.socket) -> None:
            handlers.create_task(handle_connection(service, sock))

        with listening_socket(options.host, options.port, options.backlog) as listener:
            announce_listening(listener.getsockname())
            accepting = handlers.create_task(accept_loop(listener, on_accept))
            await stop.wait()
            accepting.cancel()  # Stop accepting; connections stay open.
            await asyncio.wait([accepting])
        service.shutdown()  # On a network, this queues the server's SPLIT for Redis.
        if linking is not None:
            linking.cancel()  # It still has CLOSE_GRACE to send it.


async def accept_loop(listener: socket.socket, on_accept: Callable[[socket.socket], None]) -> None:
    """Accept connections until cancelled, pausing while the process is out of descriptors.

    asyncio_impl/server.py's accept_loop, which says why it is not the loop's
    own: the Streams adapter already accepts with this layer's sock_accept().
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
        on_accept(sock)
        # sock_accept() does not suspend when a connection is waiting, so
        # without this the loop would accept the whole queue before any
        # client got a turn.
        await asyncio.sleep(0)


def stop_on_signal(signum: int, stop: asyncio.Event) -> None:
    log.info("%s: shutting down", signal.Signals(signum).name)
    stop.set()


async def handle_connection(service: ChatService | EchoService, sock: socket.socket) -> None:
    """One connection's task; it closes the socket when done, as trio's serve_tcp does."""
    with sock:
        try:
            # A transport would do both for us (Lib/asyncio/selector_events.py,
            # _SelectorSocketTransport.__init__ sets TCP_NODELAY; sock_accept()
            # returns the socket non-blocking already); a bare socket gets only
            # the second. Without NODELAY, Nagle holds back a reply's tail.
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            await service.handle_client(sock)
        except Exception:
            # Without this, one connection's bug would crash the whole server.
            log.exception("connection failed")

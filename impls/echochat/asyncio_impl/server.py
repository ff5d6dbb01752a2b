"""Listening, signals and shutdown with asyncio."""

from __future__ import annotations

import asyncio
import logging
import signal
import socket
import ssl
from collections.abc import Callable
from functools import partial

from echochat.asyncio_impl.chat import ChatService
from echochat.asyncio_impl.echo import EchoService
from echochat.asyncio_impl.link import link_loop
from echochat.core import AcceptPacer
from echochat.loops import asyncio_loop_factory, close_stream, like_plain_tcp, listening_sockets
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
    # start_server would run each handler as a loose task that nothing waits
    # for (it does keep a reference to it, cpython PR #96323); spawning them
    # into a TaskGroup gives what trio's handler nursery gives: leaving it
    # waits for every handler.
    # Connections still in their TLS handshake are not the service's yet:
    # cancelled here at shutdown, else the TaskGroup would wait out their timeout.
    handshakes: set[asyncio.Task[None]] = set()
    async with asyncio.TaskGroup() as handlers:
        linking = None
        if isinstance(service, ChatService) and options.redis is not None:
            # The link to the network lives beside the connections until shutdown.
            linking = handlers.create_task(link_loop(service.hub))

        def on_accept(tls: ssl.SSLContext | None, sock: socket.socket) -> None:
            connect = handle_connection(service, sock, tls, options.handshake_timeout, handshakes)
            handlers.create_task(connect)

        ports = options.listening_ports()
        with listening_sockets(options.host, ports, options.backlog) as listeners:
            announce_listening(*(listener.getsockname() for listener, _ in listeners))
            accepting = [
                handlers.create_task(accept_loop(listener, partial(on_accept, tls)))
                for listener, tls in listeners
            ]
            await stop.wait()
            for task in accepting:
                task.cancel()  # Stop accepting; connections stay open.
            await asyncio.wait(accepting)
        for task in handshakes:
            task.cancel()
        service.shutdown()  # On a network, this queues the server's SPLIT for Redis.
        if linking is not None:
            linking.cancel()  # Its transports still have CLOSE_GRACE to send it.


async def accept_loop(listener: socket.socket, on_accept: Callable[[socket.socket], None]) -> None:
    """Accept connections until cancelled, pausing while the process is out of descriptors.

    Not start_server's accept loop: on EMFILE, BaseSelectorEventLoop._accept_connection
    (Lib/asyncio/selector_events.py, 3.11-3.13) reports the error with a traceback and
    schedules a retry 1 s later, but does not return, so it does both up to 100 times
    (its backlog) per wake-up (cpython#151615, fixed by PR #151616); uvloop instead
    accepts and closes the queued connections (libuv's uv__emfile_trick).
    test_framework_traps.py pins both down.
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
        # sock_accept() does not suspend when a connection is waiting (its
        # future is done at once), so without this the loop would accept the
        # whole queue, up to the backlog, before any client got a turn. trio's
        # and anyio's accept() are checkpoints themselves.
        await asyncio.sleep(0)


def stop_on_signal(signum: int, stop: asyncio.Event) -> None:
    log.info("%s: shutting down", signal.Signals(signum).name)
    stop.set()


async def handle_connection(
    service: ChatService | EchoService,
    sock: socket.socket,
    tls: ssl.SSLContext | None,
    handshake_timeout: float,
    handshakes: set[asyncio.Task[None]],
) -> None:
    """One connection's task; unlike trio's serve_tcp, nothing closes the stream for us."""
    task = asyncio.current_task()
    assert task is not None  # A coroutine run by a task.
    handshakes.add(task)
    try:
        reader, writer = await open_accepted_connection(sock, tls, handshake_timeout)
    except OSError as error:
        # Reset before it could be wrapped, or a failed TLS handshake: a
        # plain-text client (SSLError), a reset, one that stalled past the
        # timeout (ConnectionAbortedError). Nothing to serve.
        log.debug("connection failed before it was served: %r", error)
        sock.close()
        return
    finally:
        handshakes.discard(task)
    try:
        await service.handle_client(reader, writer)
    except Exception:
        # Without this, one connection's bug would crash the whole server.
        log.exception("connection failed")
    finally:
        await close_stream(writer)


async def open_accepted_connection(
    sock: socket.socket, tls: ssl.SSLContext | None, handshake_timeout: float
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """The Streams pair of an accepted socket, plain or TLS.

    open_connection(sock=...) cannot serve TLS: it makes the client side
    (create_connection). Its docstring invites copying its code, which is what
    the TLS path is, with connect_accepted_socket(), the server side. With
    ``tls`` it returns after the handshake, which ``ssl_handshake_timeout``
    bounds (ConnectionAbortedError); on failure the loop has closed the transport.
    """
    if tls is None:
        # Plain TCP keeps open_connection(): the same four lines through
        # connect_accepted_socket() measured 1.5 to 2 times the server CPU per
        # 100 KiB echo here (bench echo, same run), though both make the same
        # transport; why is not yet understood.
        return await asyncio.open_connection(sock=sock)
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader(loop=loop)
    protocol = asyncio.StreamReaderProtocol(reader, loop=loop)
    transport, _ = await loop.connect_accepted_socket(
        lambda: protocol,
        sock,
        ssl=tls,
        ssl_handshake_timeout=None if tls is None else handshake_timeout,
    )
    if tls is not None:
        like_plain_tcp(transport)
    return reader, asyncio.StreamWriter(transport, protocol, reader, loop)

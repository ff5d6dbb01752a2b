"""Listening, signals and shutdown with asyncio."""

from __future__ import annotations

import asyncio
import logging
import signal
import socket
from collections.abc import Callable

from echochat.asyncio_impl.chat import ChatService
from echochat.asyncio_impl.echo import EchoService
from echochat.core import CLOSE_GRACE, AcceptPacer
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
    # start_server would run each handler as a loose task that nothing waits
    # for (it does keep a reference to it, cpython PR #96323); spawning them
    # into a TaskGroup gives what trio's handler nursery gives: leaving it
    # waits for every handler.
    async with asyncio.TaskGroup() as handlers:

        def on_accept(sock: socket.socket) -> None:
            handlers.create_task(handle_connection(service, sock))

        with listening_socket(options.host, options.port, options.backlog) as listener:
            announce_listening(listener.getsockname())
            accepting = handlers.create_task(accept_loop(listener, on_accept))
            await stop.wait()
            accepting.cancel()  # Stop accepting; connections stay open.
            await asyncio.wait([accepting])
        service.shutdown()


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


async def handle_connection(service: ChatService | EchoService, sock: socket.socket) -> None:
    """One connection's task; unlike trio's serve_tcp, nothing closes the stream for us."""
    try:
        reader, writer = await asyncio.open_connection(sock=sock)
    except OSError:
        sock.close()  # Reset before it could be wrapped: nothing to serve.
        return
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

"""Listening, signals and shutdown with anyio."""

from __future__ import annotations

import logging
import signal
import ssl
from collections.abc import Callable, Coroutine
from contextlib import suppress
from functools import partial
from typing import Any

import anyio
from anyio.abc import SocketAttribute, SocketListener, SocketStream, TaskGroup
from anyio.streams.tls import TLSStream

from echochat.anyio_impl.chat import ChatService
from echochat.anyio_impl.echo import EchoService
from echochat.anyio_impl.link import link_loop
from echochat.core import CLOSE_GRACE, AcceptPacer
from echochat.options import ServerOptions, announce_listening, queue_empty

log = logging.getLogger(__name__)


def run(options: ServerOptions) -> None:
    # The CLI allows uvloop only with the asyncio backend.
    backend_options = {"use_uvloop": True} if options.loop == "uvloop" else None
    anyio.run(serve, options, backend=options.backend, backend_options=backend_options)


async def serve(options: ServerOptions) -> None:
    service = ChatService(options) if options.service == "chat" else EchoService(options)
    # anyio leaves SIGTERM fatal by default (trio#134); receive both signals
    # before announcing, so none is missed, and until the very end. A signal
    # still pending when the receiver closes is raised again under the handler
    # from before it opened (trio/_signals.py, _redeliver_remaining): ignoring
    # both until the receiver opens, a moment later, makes a second signal
    # during shutdown ignored rather than fatal.
    for ignored in (signal.SIGINT, signal.SIGTERM):
        signal.signal(ignored, signal.SIG_IGN)
    with anyio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        # Every connection's task lives in this task group, so leaving it
        # waits for all of them: no connection outlives the server.
        async with anyio.create_task_group() as handlers:
            linking = None
            if isinstance(service, ChatService) and options.redis is not None:
                if options.backend == "asyncio":
                    tolerate_unix_socket_race()
                # The link to the network lives beside the connections until shutdown.
                linking = await handlers.start(link_loop, service.hub)
            handshakes = Handshakes(options.handshake_timeout)
            addresses = []
            async with anyio.create_task_group() as accepting:
                for port, tls in options.listening_ports():
                    listeners = await anyio.create_tcp_listener(
                        local_host=options.host, local_port=port, backlog=options.backlog
                    )
                    handler = partial(handle_connection, service, tls, handshakes)
                    for listener in listeners.listeners:
                        assert isinstance(listener, SocketListener)  # A TCP listener's parts are.
                        accepting.start_soon(accept_loop, listener, handlers, handler)
                    address = listeners.extra(SocketAttribute.local_address)
                    assert isinstance(address, tuple)  # An IP socket, not a UNIX one.
                    addresses.append(address)
                announce_listening(*addresses)
                async for signum in signals:
                    log.info("%s: shutting down", signal.Signals(signum).name)
                    break
                accepting.cancel_scope.cancel()  # Stop accepting; connections go on.
            handshakes.cancel()
            service.shutdown()  # On a network, this queues the server's SPLIT for Redis.
            if linking is not None:
                linking.cancel()  # Its writers still have CLOSE_GRACE to send it.


async def accept_loop(
    listener: SocketListener,
    handlers: TaskGroup,
    # anyio's start_soon() takes coroutine functions only, where trio's takes any awaitable.
    handler: Callable[[SocketStream], Coroutine[Any, Any, None]],
) -> None:
    """Accept connections until cancelled, pausing while the process is out of descriptors.

    Not Listener.serve(), which is ``while True: task_group.start_soon(handler, await
    self.accept())`` (anyio/abc/_sockets.py, anyio 4.16): the first EMFILE ends it and
    the server with it. On the asyncio backend accept() raises the OSError itself;
    on the trio backend a BrokenResourceError raised from it (_convert_socket_error,
    anyio/_backends/_trio.py). test_framework_traps.py pins both down.
    """
    pacer = AcceptPacer()
    listening_socket = listener.extra(SocketAttribute.raw_socket)
    async with listener:
        while True:
            try:
                stream = await listener.accept()
            except (OSError, anyio.BrokenResourceError) as error:
                # The trio backend raises BrokenResourceError from the OSError.
                cause = error if isinstance(error, OSError) else error.__cause__
                code = cause.errno if isinstance(cause, OSError) else None
                if (retry := pacer.failed(code, anyio.current_time())) is None:
                    raise
                if retry.warning is not None:
                    log.warning(retry.warning)
                await anyio.sleep(retry.pause)
                continue
            if pacer.pausing and (
                warning := pacer.accepted(anyio.current_time(), queue_empty(listening_socket))
            ):
                log.warning(warning)
            handlers.start_soon(handler, stream)


async def handle_connection(
    service: ChatService | EchoService,
    tls: ssl.SSLContext | None,
    handshakes: Handshakes,
    stream: SocketStream,
) -> None:
    """One connection's task; it closes the stream when done."""
    pause_reading_until_received(stream)
    connection = stream if tls is None else await handshakes.secure(stream, tls)
    if connection is None:
        await anyio.aclose_forcefully(stream)
        return
    try:
        await service.handle_client(connection)
    except Exception:
        # Without this, one connection's bug would crash the whole server.
        log.exception("connection failed")
    finally:
        # Closing TLS may send close_notify, which a client that does not
        # read never takes: bounded, and a cancelled aclose() closes at once.
        # anyio's also waits for the client's close_notify (unwrap()), and
        # raises if the client closed without one.
        with anyio.move_on_after(CLOSE_GRACE), suppress(ssl.SSLError, anyio.BrokenResourceError):
            await connection.aclose()


class Handshakes:
    """The TLS handshakes under way, each bounded in time, all cancelled at shutdown.

    A connection in its handshake is not the service's yet, so the service's
    shutdown does not reach it; without this the handler task group would wait
    for it until its timeout.
    """

    def __init__(self, timeout: float) -> None:
        self.timeout = timeout
        self.scopes: set[anyio.CancelScope] = set()

    async def secure(self, stream: SocketStream, tls: ssl.SSLContext) -> TLSStream | None:
        """The server's side of the handshake; None if it failed, timed out or was cancelled."""
        with anyio.CancelScope() as scope:
            self.scopes.add(scope)
            try:
                # TLSStream.wrap() does the handshake before it returns, with
                # no bound of its own; this bounds it.
                with anyio.fail_after(self.timeout):
                    connection = await TLSStream.wrap(stream, server_side=True, ssl_context=tls)
            except (OSError, anyio.BrokenResourceError, anyio.EndOfStream) as error:
                # A plain-text client (ssl.SSLError), a reset, EOF, a stall (TimeoutError).
                log.debug("TLS handshake failed: %r", error.__cause__ or error)
            else:
                return connection
            finally:
                self.scopes.discard(scope)
        return None

    def cancel(self) -> None:
        for scope in self.scopes:
            scope.cancel()


def tolerate_unix_socket_race() -> None:
    """Keep a race of anyio's UNIX sockets on asyncio (anyio <= 4.16) out of the log.

    A UNIX stream waits for its socket with ``loop.add_reader(sock, f.set_result,
    None)`` (anyio/_backends/_asyncio.py, ``_RawSocketMixin._wait_until_readable``).
    When the socket becomes readable in the loop iteration in which the waiting
    task is cancelled (the link's reader, when its other connection ended: a
    Redis that stops closes both at once), the future is cancelled before the
    queued ``set_result`` runs, which raises InvalidStateError, and asyncio logs
    "Exception in callback Future.set_result(None)" at ERROR. asyncio's own
    ``sock_recv()`` checks ``fut.done()`` first. Nothing is lost: the read was
    cancelled anyway. So that case (InvalidStateError from a callback that sets a
    future's result) is logged at debug level; every other error goes to the
    handler that was there before. On the trio backend there is nothing to do.
    """
    import asyncio  # noqa: PLC0415  (only on the asyncio backend)

    loop = asyncio.get_running_loop()
    previous = loop.get_exception_handler()

    def handle(loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
        # asyncio's Handle keeps the callback, uvloop's does not show it: its
        # message names it ("Exception in callback ... set_result ...").
        message = str(context.get("message"))
        if isinstance(context.get("exception"), asyncio.InvalidStateError) and (
            "set_result" in message
        ):
            log.debug("anyio's UNIX socket race, harmless: %s", context.get("message"))
        elif previous is not None:
            previous(loop, context)
        else:
            loop.default_exception_handler(context)

    loop.set_exception_handler(handle)


def pause_reading_until_received(stream: SocketStream) -> None:
    """Restore backpressure on sockets accepted by anyio's asyncio backend (anyio <= 4.16).

    That backend stops reading a socket only at the end of a ``receive()``
    that had to wait, and ``connect_tcp()`` pauses the streams it creates, but
    ``TCPSocketListener.accept()`` does not. Bytes that arrive before the
    first ``receive()`` start a read loop that nothing pauses while the
    handler is busy sending, so a client that writes without reading grows
    the server without bound (docs/design.md, item 5). Pausing
    here, as ``connect_tcp()`` does, fixes it; ``receive()`` resumes reading
    whenever it waits. ``_transport`` is private: on the trio backend, or if
    anyio changes it, there is nothing to pause and this does nothing.
    """
    transport: Any = getattr(stream, "_transport", None)
    if transport is not None:
        transport.pause_reading()

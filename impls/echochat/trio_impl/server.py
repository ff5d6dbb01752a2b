"""Listening, signals and shutdown with trio."""

from __future__ import annotations

import logging
import signal
import ssl
from collections.abc import Awaitable, Callable
from functools import partial

import trio

from echochat.core import CLOSE_GRACE, AcceptPacer
from echochat.options import ServerOptions, announce_listening, queue_empty
from echochat.trio_impl.chat import ChatService
from echochat.trio_impl.echo import EchoService
from echochat.trio_impl.link import link_loop

log = logging.getLogger(__name__)


def run(options: ServerOptions) -> None:
    trio.run(serve, options)


async def serve(options: ServerOptions) -> None:
    service = ChatService(options) if options.service == "chat" else EchoService(options)
    # trio leaves SIGTERM fatal by default (trio#134); receive both signals
    # before announcing, so none is missed, and until the very end. A signal
    # still pending when the receiver closes is raised again under the handler
    # from before it opened (trio/_signals.py, _redeliver_remaining): ignoring
    # both until the receiver opens, a moment later, makes a second signal
    # during shutdown ignored rather than fatal.
    for ignored in (signal.SIGINT, signal.SIGTERM):
        signal.signal(ignored, signal.SIG_IGN)
    with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        # Every connection's task lives in this nursery, so leaving it
        # waits for all of them: no connection outlives the server.
        async with trio.open_nursery() as handlers:
            linking = None
            if isinstance(service, ChatService) and options.redis is not None:
                # The link to the network lives beside the connections until shutdown.
                linking = await handlers.start(link_loop, service.hub)
            handshakes = Handshakes(options.handshake_timeout)
            addresses = []
            async with trio.open_nursery() as accepting:
                for port, tls in options.listening_ports():
                    listeners = await trio.open_tcp_listeners(
                        port, host=options.host, backlog=options.backlog
                    )
                    handler = partial(handle_connection, service, tls, handshakes)
                    for listener in listeners:
                        accepting.start_soon(accept_loop, listener, handlers, handler)
                    addresses.append(listeners[0].socket.getsockname())
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
    listener: trio.SocketListener,
    handlers: trio.Nursery,
    handler: Callable[[trio.SocketStream], Awaitable[None]],
) -> None:
    """Accept connections until cancelled, pausing while the process is out of descriptors.

    What trio's serve_listeners does (trio/_highlevel_serve_listeners.py,
    _serve_one_listener: sleep 100 ms on EMFILE, ENFILE, ENOMEM, ENOBUFS), except
    that it logs an ERROR with a traceback on every retry, ten a second for as
    long as descriptors stay short; test_framework_traps.py pins that down.
    """
    pacer = AcceptPacer()
    listening_socket = listener.socket
    async with listener:
        while True:
            try:
                stream = await listener.accept()
            except OSError as error:
                if (retry := pacer.failed(error.errno, trio.current_time())) is None:
                    raise
                if retry.warning is not None:
                    log.warning(retry.warning)
                await trio.sleep(retry.pause)
                continue
            if pacer.pausing and (
                warning := pacer.accepted(trio.current_time(), queue_empty(listening_socket))
            ):
                log.warning(warning)
            handlers.start_soon(handler, stream)


async def handle_connection(
    service: ChatService | EchoService,
    tls: ssl.SSLContext | None,
    handshakes: Handshakes,
    stream: trio.SocketStream,
) -> None:
    """One connection's task; it closes the stream when done."""
    connection = stream if tls is None else await handshakes.secure(stream, tls)
    if connection is None:
        await trio.aclose_forcefully(stream)
        return
    try:
        await service.handle_client(connection)
    except Exception:
        # Without this, one connection's bug would crash the whole server.
        log.exception("connection failed")
    finally:
        # Closing TLS may send close_notify, which a client that does not
        # read never takes: bounded, and a cancelled aclose() closes at once.
        with trio.move_on_after(CLOSE_GRACE):
            await connection.aclose()


class Handshakes:
    """The TLS handshakes under way, each bounded in time, all cancelled at shutdown.

    A connection in its handshake is not the service's yet, so the service's
    shutdown does not reach it; without this the handler nursery would wait
    for it until its timeout.
    """

    def __init__(self, timeout: float) -> None:
        self.timeout = timeout
        self.scopes: set[trio.CancelScope] = set()

    async def secure(
        self, stream: trio.SocketStream, tls: ssl.SSLContext
    ) -> trio.SSLStream[trio.SocketStream] | None:
        """The server's side of the handshake; None if it failed, timed out or was cancelled."""
        with trio.CancelScope() as scope:
            self.scopes.add(scope)
            try:
                # SSLStream would do the handshake at the first send or
                # receive, with no bound of its own; doing it here bounds it.
                with trio.fail_after(self.timeout):
                    connection = trio.SSLStream(stream, tls, server_side=True)
                    await connection.do_handshake()
            except (trio.TooSlowError, trio.BrokenResourceError) as error:
                # A plain-text client (the cause is an SSLError), a reset, a stall.
                log.debug("TLS handshake failed: %r", error.__cause__ or error)
            else:
                return connection
            finally:
                self.scopes.discard(scope)
        return None

    def cancel(self) -> None:
        for scope in self.scopes:
            scope.cancel()
